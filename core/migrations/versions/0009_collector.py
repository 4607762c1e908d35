"""collector: the collector's report of itself (collector_status)

Revision ID: 0009_collector
Revises: 0001_foundation
Create Date: 2026-11-30 09:00:00

Its own branch off 0001_foundation (see core.db.upgrade, which goes to every head).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_collector"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("collector",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collector_status",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("broker", sa.String(length=512), nullable=False),
        sa.Column("broker_connected", sa.Boolean(), nullable=False),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("queue_max", sa.Integer(), nullable=False),
        sa.Column("messages_in", sa.BigInteger(), nullable=False),
        sa.Column("stored", sa.BigInteger(), nullable=False),
        sa.Column("duplicates", sa.BigInteger(), nullable=False),
        sa.Column("dead_letters", sa.JSON(), nullable=False),
        sa.Column("spool_backlog", sa.BigInteger(), nullable=True),
        sa.Column("last_message_ms", sa.BigInteger(), nullable=True),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_collector_status")),
    )


def downgrade() -> None:
    op.drop_table("collector_status")

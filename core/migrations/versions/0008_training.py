"""training: the safety-training register, stored compliance reports, the report job's runs

Revision ID: 0008_training
Revises: 0001_foundation
Create Date: 2026-11-29 09:00:00

Its own branch off 0001_foundation (see core.db.upgrade, which goes to every head).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_training"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("training",)
depends_on: str | Sequence[str] | None = None

AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "training_sessions",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("trainer", sa.String(length=100), nullable=False),
        sa.Column("attendees", sa.JSON(), nullable=False),
        sa.Column("attendee_count", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_sessions")),
    )
    with op.batch_alter_table("training_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_training_sessions_site_held", ["site_id", "held_on"], unique=False
        )
    op.create_table(
        "stored_reports",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("lang", sa.String(length=4), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("as_of_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_reports")),
    )
    with op.batch_alter_table("stored_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stored_reports_created_ms"), ["created_ms"], unique=False
        )
        batch_op.create_index(
            "ix_stored_reports_period", ["period", "lang", "format"], unique=False
        )
    op.create_table(
        "report_runs",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_ms", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("report_ids", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_runs")),
    )
    with op.batch_alter_table("report_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_runs_started_ms"), ["started_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("report_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_runs_started_ms"))
    op.drop_table("report_runs")
    with op.batch_alter_table("stored_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_stored_reports_period")
        batch_op.drop_index(batch_op.f("ix_stored_reports_created_ms"))
    op.drop_table("stored_reports")
    with op.batch_alter_table("training_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_training_sessions_site_held")
    op.drop_table("training_sessions")

"""spool: the InfluxDB backend's readings spool and the devices' MQTT credentials

Revision ID: 0005_spool
Revises: 0001_foundation
Create Date: 2026-11-27 07:30:00

Its own branch off 0001_foundation (see core.db.upgrade, which goes to every head).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_spool"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("spool",)
depends_on: str | Sequence[str] | None = None

AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "readings_spool",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("message", sa.String(length=128), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("spooled_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readings_spool")),
    )
    op.create_index(op.f("ix_readings_spool_message"), "readings_spool", ["message"])
    op.create_table(
        "mqtt_credentials",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("issued_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_mqtt_credentials")),
    )


def downgrade() -> None:
    op.drop_table("mqtt_credentials")
    op.drop_index(op.f("ix_readings_spool_message"), table_name="readings_spool")
    op.drop_table("readings_spool")

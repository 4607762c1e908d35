"""compliance: condition spans, out-of-service records, compliance marks

Revision ID: 0004_compliance
Revises: 0001_foundation
Create Date: 2026-11-28 08:00:00

Its own branch off 0001_foundation (see core.db.upgrade, which goes to every head). The mark
``conditions`` (the last device event turned into condition spans) starts at 0, so the first
catch-up reads every stored event once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_compliance"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("compliance",)
depends_on: str | Sequence[str] | None = None

AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "condition_spans",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("open_key", sa.String(length=200), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("start_detail", sa.JSON(), nullable=False),
        sa.Column("end_detail", sa.JSON(), nullable=True),
        sa.Column("opened_ms", sa.BigInteger(), nullable=False),
        sa.Column("closed_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_condition_spans")),
        sa.UniqueConstraint("open_key", name=op.f("uq_condition_spans_open_key")),
    )
    with op.batch_alter_table("condition_spans", schema=None) as batch_op:
        batch_op.create_index(
            "ix_condition_spans_device_start", ["device_id", "start_ms"], unique=False
        )
        batch_op.create_index("ix_condition_spans_end", ["end_ms"], unique=False)
        batch_op.create_index("ix_condition_spans_start", ["start_ms"], unique=False)
    op.create_table(
        "out_of_service",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("open_key", sa.String(length=64), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("taken_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("expected_back_ms", sa.BigInteger(), nullable=True),
        sa.Column("until_ms", sa.BigInteger(), nullable=True),
        sa.Column("returned_by", sa.String(length=64), nullable=True),
        sa.Column("return_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_out_of_service")),
        sa.UniqueConstraint("open_key", name=op.f("uq_out_of_service_open_key")),
    )
    with op.batch_alter_table("out_of_service", schema=None) as batch_op:
        batch_op.create_index(
            "ix_out_of_service_device_since", ["device_id", "since_ms"], unique=False
        )
    marks = op.create_table(
        "compliance_marks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_compliance_marks")),
    )
    op.bulk_insert(marks, [{"name": "conditions", "value": 0, "updated_ms": 0}])


def downgrade() -> None:
    op.drop_table("compliance_marks")
    with op.batch_alter_table("out_of_service", schema=None) as batch_op:
        batch_op.drop_index("ix_out_of_service_device_since")
    op.drop_table("out_of_service")
    with op.batch_alter_table("condition_spans", schema=None) as batch_op:
        batch_op.drop_index("ix_condition_spans_start")
        batch_op.drop_index("ix_condition_spans_end")
        batch_op.drop_index("ix_condition_spans_device_start")
    op.drop_table("condition_spans")

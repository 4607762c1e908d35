"""maintenance: inspection tasks, photos, work orders, watermarks, leases, scheduler jobs

Revision ID: 0003_maintenance
Revises: 0001_foundation
Create Date: 2026-11-27 08:00:00

Its own branch off 0001_foundation (see core.db.upgrade, which goes to every head).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_maintenance"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("maintenance",)
depends_on: str | Sequence[str] | None = None

AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inspection_photos",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("path", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_photos")),
    )
    op.create_table(
        "inspection_tasks",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("device_type", sa.String(length=32), nullable=True),
        sa.Column("zone_id", sa.String(length=64), nullable=True),
        sa.Column("subject_label", sa.String(length=200), nullable=False),
        sa.Column("title_zh", sa.String(length=200), nullable=False),
        sa.Column("title_en", sa.String(length=200), nullable=False),
        sa.Column("frequency", sa.String(length=120), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assignee_role", sa.String(length=64), nullable=True),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("checklist", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.String(length=64), nullable=True),
        sa.Column("result", sa.String(length=8), nullable=True),
        sa.Column("answers", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("photo_id", AUTO_ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["photo_id"],
            ["inspection_photos.id"],
            name=op.f("fk_inspection_tasks_photo_id_inspection_photos"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_tasks")),
        sa.UniqueConstraint("plan_id", "subject", "period_start", name="uq_inspection_tasks_key"),
    )
    with op.batch_alter_table("inspection_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_inspection_tasks_state_due", ["state", "due_at"], unique=False)
        batch_op.create_index(
            "ix_inspection_tasks_device_due", ["device_id", "due_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_inspection_tasks_site_id"), ["site_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_inspection_tasks_device_type"), ["device_type"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_inspection_tasks_zone_id"), ["zone_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_inspection_tasks_assignee"), ["assignee"], unique=False
        )

    op.create_table(
        "work_orders",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("zone_id", sa.String(length=64), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=True),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("related", sa.JSON(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("fix", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_orders")),
        sa.UniqueConstraint("source", "source_ref", name="uq_work_orders_source"),
    )
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.create_index("ix_work_orders_state_device", ["state", "device_id"], unique=False)

    op.create_table(
        "maintenance_watermarks",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_maintenance_watermarks")),
    )
    op.create_table(
        "maintenance_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_maintenance_leases")),
    )
    op.create_table(
        "maintenance_scheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_scheduler_jobs")),
    )
    with op.batch_alter_table("maintenance_scheduler_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_maintenance_scheduler_jobs_next_run_time"),
            ["next_run_time"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("maintenance_scheduler_jobs")
    op.drop_table("maintenance_leases")
    op.drop_table("maintenance_watermarks")
    op.drop_table("work_orders")
    op.drop_table("inspection_tasks")
    op.drop_table("inspection_photos")

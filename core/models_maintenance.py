"""Tables of the maintenance domain: inspection tasks, photos, work orders, scheduler bookkeeping.

Times here are instants, stored as timezone-aware UTC (`UtcDateTime`); local dates are shown at
the edges. Device and zone ids are plain indexed columns, not foreign keys, so that re-importing
the device register never fails on, or silently deletes, the inspection record of a device.

A task's identity is (plan, subject, period start): the unique key `uq_inspection_tasks_key`
is what keeps two scheduler instances from ever creating the same task twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from core.models import AutoId, Base, Id

TASK_KINDS = ("inspection", "service", "scrap")
TASK_STATES = ("open", "overdue", "done")
RESULTS = ("pass", "fail")
WORK_ORDER_SOURCES = ("inspection", "alert", "manual")
WORK_ORDER_STATES = ("open", "closed")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; naive datetimes are refused, results are aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: maintenance times must be aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class InspectionTask(Base):
    """One thing to check (or service, or replace) in one period, and its result."""

    __tablename__ = "inspection_tasks"
    __table_args__ = (
        UniqueConstraint("plan_id", "subject", "period_start", name="uq_inspection_tasks_key"),
        Index("ix_inspection_tasks_state_due", "state", "due_at"),
        Index("ix_inspection_tasks_device_due", "device_id", "due_at"),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    plan_id: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[str] = mapped_column(Id, index=True)
    subject: Mapped[str] = mapped_column(String(80))
    device_id: Mapped[str | None] = mapped_column(Id)
    device_type: Mapped[str | None] = mapped_column(String(32), index=True)
    zone_id: Mapped[str | None] = mapped_column(Id, index=True)
    subject_label: Mapped[str] = mapped_column(String(200))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    frequency: Mapped[str] = mapped_column(String(120))
    period_start: Mapped[datetime] = mapped_column(UtcDateTime())
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(16), default="open")
    overdue_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    assignee_role: Mapped[str | None] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64), index=True)
    checklist: Mapped[list[Any]] = mapped_column(default=list)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    completed_by: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str | None] = mapped_column(String(8))
    answers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("inspection_photos.id"))


class InspectionPhoto(Base):
    """A photo taken at an inspection: bytes in the row, or a file in the configured folder."""

    __tablename__ = "inspection_photos"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    path: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WorkOrder(Base):
    """Something broken to fix: from a failed check, a fault alert, or opened by hand."""

    __tablename__ = "work_orders"
    __table_args__ = (
        UniqueConstraint("source", "source_ref", name="uq_work_orders_source"),
        Index("ix_work_orders_state_device", "state", "device_id"),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32), default="fault")
    site_id: Mapped[str | None] = mapped_column(Id)
    device_id: Mapped[str | None] = mapped_column(Id)
    zone_id: Mapped[str | None] = mapped_column(Id)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(8), default="open")
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    opened_by: Mapped[str | None] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64))
    related: Mapped[list[Any]] = mapped_column(default=list)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64))
    fix: Mapped[str | None] = mapped_column(Text)


class MaintenanceWatermark(Base):
    """Up to when a generator has run: missed periods after it are caught up on start-up."""

    __tablename__ = "maintenance_watermarks"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class MaintenanceLease(Base):
    """The scheduler leader's lease: one holder at a time, renewed before it expires."""

    __tablename__ = "maintenance_leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


# APScheduler's own job table (the layout SQLAlchemyJobStore creates), declared here so that the
# migration creates it and Alembic does not take it for a stranger.
scheduler_jobs = Table(
    "maintenance_scheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)

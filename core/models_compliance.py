"""Tables of the compliance domain: the condition log behind the intactness figure, and the
record of devices taken out of service on purpose. Imported at the end of core.models.

Times are integer epoch milliseconds, as the device data they are derived from. Every row keeps
two clocks: when a thing happened (``start_ms`` / ``end_ms``, ``since_ms`` / ``until_ms``) and
when ParkGuard learnt it (``opened_ms`` / ``closed_ms``), so a figure can be recomputed "as of"
a past moment and give the same answer however much has been recorded since.

One open span per (device, source, key) and one open out-of-service record per device are
database guarantees: ``open_key`` is set while open and NULL once closed, under a unique
constraint (NULLs never collide), as for alerts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models import AutoId, Base, Id

SPAN_SOURCES = ("event", "value")


class ConditionSpan(Base):
    """A stretch of time during which a device reported a condition that makes it not intact:
    from an event (``fault`` until ``fault_cleared``) or a metric outside its normal band."""

    __tablename__ = "condition_spans"
    __table_args__ = (
        Index("ix_condition_spans_device_start", "device_id", "start_ms"),
        Index("ix_condition_spans_end", "end_ms"),
        Index("ix_condition_spans_start", "start_ms"),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    open_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    """``device|source|key`` while the span is open, NULL once it has ended."""
    device_id: Mapped[str] = mapped_column(Id)
    reason: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(8))
    """``event`` or ``value``."""
    key: Mapped[str] = mapped_column(String(64))
    """The event family (``fault``, ``tamper``...) or the metric name."""
    start_ms: Mapped[int] = mapped_column(BigInteger)
    """When the condition began: the device's timestamp of the event or reading."""
    end_ms: Mapped[int | None] = mapped_column(BigInteger)
    """When it ended (the clearing event or first normal reading), NULL while it lasts."""
    start_detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    end_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    opened_ms: Mapped[int] = mapped_column(BigInteger)
    """When the start was recorded (an event's arrival, or when the recorder saw the value)."""
    closed_ms: Mapped[int | None] = mapped_column(BigInteger)
    """When the end was recorded."""


class OutOfService(Base):
    """A device taken out of service on purpose: who, why, from when, and who put it back."""

    __tablename__ = "out_of_service"
    __table_args__ = (Index("ix_out_of_service_device_since", "device_id", "since_ms"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    open_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The device id while it is out of service, NULL once it is back."""
    device_id: Mapped[str] = mapped_column(Id)
    since_ms: Mapped[int] = mapped_column(BigInteger)
    taken_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    expected_back_ms: Mapped[int | None] = mapped_column(BigInteger)
    until_ms: Mapped[int | None] = mapped_column(BigInteger)
    returned_by: Mapped[str | None] = mapped_column(String(64))
    return_note: Mapped[str | None] = mapped_column(Text)


class ComplianceMark(Base):
    """A named position of the compliance bookkeeping, e.g. the last device event turned into
    condition spans. Its row is also the lock that serialises writers of the condition log."""

    __tablename__ = "compliance_marks"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)

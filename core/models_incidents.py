"""Tables of the emergency-plan domain: incidents (a plan being carried out), their steps, the
alerts that triggered them, their append-only journal, and the alert-journal watermark of the
incident service. Imported at the end of core.models.

One open incident per (plan, zone, drill or real) is a database guarantee, as for alerts:
``open_key`` is set while the incident is open and NULL once closed, under a unique
constraint. Step deadlines are stored absolute (``due_ms``), so overdue steps are found after
a restart as on time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.models import AutoId, Base, Id

INCIDENT_STATES = ("open", "closed")
STEP_STATES = ("pending", "done", "skipped")


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_state_plan", "state", "plan_id"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    open_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    plan_id: Mapped[str] = mapped_column(String(64))
    plan_type: Mapped[str] = mapped_column(String(32))
    plan_level: Mapped[str] = mapped_column(String(16))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(8))
    site_id: Mapped[str] = mapped_column(Id)
    zone_id: Mapped[str | None] = mapped_column(Id, index=True)
    zone_name_zh: Mapped[str | None] = mapped_column(String(200))
    zone_name_en: Mapped[str | None] = mapped_column(String(200))
    drill: Mapped[bool] = mapped_column(Boolean)
    """A drill: the same steps and timers, never counted as a real incident."""
    state: Mapped[str] = mapped_column(String(8))
    trigger: Mapped[str] = mapped_column(String(8))
    """``alert`` (started by an alert rule) or ``manual`` (by a person, with a reason)."""
    reason: Mapped[str | None] = mapped_column(Text)
    activated_by: Mapped[str] = mapped_column(String(64))
    activated_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    closed_ms: Mapped[int | None] = mapped_column(BigInteger)
    summary: Mapped[str | None] = mapped_column(Text)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class IncidentStep(Base):
    """A step of the plan as it was at activation (text with the zone filled in)."""

    __tablename__ = "incident_steps"
    __table_args__ = (
        UniqueConstraint("incident_id", "step_id", name="uq_incident_steps_step"),
        Index("ix_incident_steps_state_due", "state", "due_ms"),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    position: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    text_zh: Mapped[str] = mapped_column(Text)
    text_en: Mapped[str] = mapped_column(Text)
    requires: Mapped[str] = mapped_column(String(8))
    deadline_ms: Mapped[int] = mapped_column(BigInteger)
    """The deadline after activation, as the plan gave it."""
    due_ms: Mapped[int] = mapped_column(BigInteger)
    """Activation + deadline: absolute, so it survives restarts."""
    state: Mapped[str] = mapped_column(String(8))
    overdue_ms: Mapped[int | None] = mapped_column(BigInteger)
    """When the step was found past its deadline while pending (and notified)."""
    actor: Mapped[str | None] = mapped_column(String(64))
    acted_ms: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    """The note of a done step, or the reason a step was skipped."""
    evidence: Mapped[str | None] = mapped_column(Text)


class IncidentAlert(Base):
    """An alert that started an incident or attached to it later (no foreign key: the alerts
    table lives on its own migration branch)."""

    __tablename__ = "incident_alerts"
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    alert_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(8))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[str | None] = mapped_column(Id)
    first_seen_ms: Mapped[int] = mapped_column(BigInteger)
    attached_ms: Mapped[int] = mapped_column(BigInteger)


class IncidentJournal(Base):
    """Every transition of an incident and its steps: who, when, why. Never updated or
    deleted (the migration adds triggers that refuse it)."""

    __tablename__ = "incident_journal"
    __table_args__ = (Index("ix_incident_journal_incident", "incident_id", "id"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    step_id: Mapped[str | None] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class IncidentMark(Base):
    """A named watermark; ``alerts`` is the last alert-journal id the service has handled."""

    __tablename__ = "incident_marks"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)

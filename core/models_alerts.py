"""Tables of the alerts domain: alerts, their append-only journal, persisted rule timers, and
webhook deliveries that failed after their last retry. Imported at the end of core.models.

One open alert per (rule, subject) is a database guarantee: ``open_key`` is ``rule|subject``
while the alert is open and NULL once resolved, under a unique constraint (NULLs never
collide, on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models import AutoId, Base, Id

ALERT_STATES = ("active", "acknowledged", "resolved")


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_rule_subject_resolved", "rule_id", "subject", "resolved_ms"),
        Index("ix_alerts_state_severity", "state", "severity"),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    open_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(80))
    site_id: Mapped[str] = mapped_column(Id)
    device_id: Mapped[str | None] = mapped_column(Id, index=True)
    zone_id: Mapped[str | None] = mapped_column(Id, index=True)
    severity: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer)
    first_seen_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    condition_active: Mapped[bool] = mapped_column(Boolean)
    """Whether the rule's condition holds now (it may clear underneath a shelved alert)."""
    cleared_ms: Mapped[int | None] = mapped_column(BigInteger)
    acked_by: Mapped[str | None] = mapped_column(String(64))
    acked_ms: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_ms: Mapped[int | None] = mapped_column(BigInteger)
    resolve_note: Mapped[str | None] = mapped_column(Text)
    shelved_until_ms: Mapped[int | None] = mapped_column(BigInteger, index=True)
    shelved_by: Mapped[str | None] = mapped_column(String(64))
    shelve_reason: Mapped[str | None] = mapped_column(Text)
    escalate_due_ms: Mapped[int | None] = mapped_column(BigInteger, index=True)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    flapping: Mapped[bool] = mapped_column(Boolean, default=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class AlertJournal(Base):
    """Every transition of an alert: who, when, why, from, to. Never updated or deleted (the
    migration adds triggers that refuse it)."""

    __tablename__ = "alert_journal"
    __table_args__ = (Index("ix_alert_journal_alert", "alert_id", "id"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RuleTimer(Base):
    """The one persisted clock of a (rule, subject): a ``for`` delay, a later stage, a clear
    hold, a quiet period, or a silence deadline."""

    __tablename__ = "rule_timers"
    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    due_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class WebhookDeadLetter(Base):
    """An alert notification a webhook did not take after its last retry."""

    __tablename__ = "webhook_dead_letters"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    webhook: Mapped[str] = mapped_column(String(64), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    alert_id: Mapped[int | None] = mapped_column(BigInteger)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

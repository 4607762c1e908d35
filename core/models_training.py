"""Tables of the training register (clause 5.5.1) and of the stored compliance reports.
Imported at the end of core.models; created by migration 0008_training (its own branch).

- ``training_sessions``: one safety-training session: the local day it was held, its topic, the
  trainer, the people who attended (names, possibly fewer than the count when only a head count
  was taken) and how many attended.
- ``stored_reports``: a compliance report generated and kept (its bytes in the row), one per
  (period, language, format) and generation; the monthly job and people both store them.
- ``report_runs``: each run of the monthly job: when, for which period, what it stored or why it
  failed. The record that the job ran, whatever it produced.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models import AutoId, Base, Id

REPORT_FORMATS = ("html", "pdf", "csv")
REPORT_LANGS = ("zh", "en")
RUN_OUTCOMES = ("stored", "exists", "failed")


class TrainingSession(Base):
    __tablename__ = "training_sessions"
    __table_args__ = (Index("ix_training_sessions_site_held", "site_id", "held_on"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(Id)
    held_on: Mapped[date] = mapped_column(Date)
    """The local day (park time zone) it was held."""
    topic: Mapped[str] = mapped_column(String(200))
    trainer: Mapped[str] = mapped_column(String(100))
    attendees: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Names of the people trained (may be fewer than ``attendee_count``)."""
    attendee_count: Mapped[int] = mapped_column(Integer)
    hours: Mapped[float | None] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_ms: Mapped[int] = mapped_column(BigInteger)


class StoredReport(Base):
    __tablename__ = "stored_reports"
    __table_args__ = (Index("ix_stored_reports_period", "period", "lang", "format"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(16))
    """``YYYY-MM``."""
    lang: Mapped[str] = mapped_column(String(4))
    format: Mapped[str] = mapped_column(String(8))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    as_of_ms: Mapped[int] = mapped_column(BigInteger)
    """Only what was recorded by then was used: regenerating with it gives the same figures."""
    created_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The summary page's verdicts per clause (green/red), for lists without the bytes."""


class ReportRun(Base):
    __tablename__ = "report_runs"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(16))
    started_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    finished_ms: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(8))
    """``stored`` (new reports kept), ``exists`` (already stored, nothing done), ``failed``."""
    report_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)

"""Producing and keeping compliance reports: render one, store one, and the monthly job.

``MonthlyReportJob`` is the job function: called (by APScheduler, at start-up, or by hand) it
makes sure last month's report is stored in every configured language and format. It is
idempotent: a month already stored is recorded as ``exists`` and nothing is generated again, so
a run repeated by a misfire, a second instance or a catch-up after downtime does no harm. Every
run, whatever its outcome, leaves a ``report_runs`` row; a failure is logged, counted, rolled
back and recorded, and never raised into the scheduler.

Wiring (the maintenance scheduler's leader, in-memory job store since the job is an object)::

    job = MonthlyReportJob(sessions, catalogue, config=ReportConfig.from_rules(rules, plans),
                           scrap_date=register_scrap_date)
    scheduler.add_job(job, CronTrigger(day=1, hour=1, timezone=park_zone),
                      id="compliance.monthly_report", replace_existing=True,
                      coalesce=True, misfire_grace_time=None, max_instances=1)
    scheduler.add_job(job, id="compliance.monthly_report.catch_up")   # once, on becoming leader
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from compliance.intactness import refresh
from compliance.render_csv import render_csv
from compliance.render_html import render_html
from compliance.render_pdf import render_pdf
from compliance.report import (
    ComplianceReport,
    Period,
    PeriodError,
    ReportConfig,
    build_report,
    last_month,
    park_timezone,
)
from compliance.report_layout import Lang, layout, summary_sentence
from compliance.timeline import ScrapDate, no_scrap_dates
from core.catalogue import Catalogue
from core.contract import now_ms
from core.db import SessionFactory
from core.models_training import REPORT_FORMATS, ReportRun, StoredReport

log = logging.getLogger(__name__)
JOB = "compliance.monthly_report"
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "csv": "application/zip",
}
EXTENSIONS = {"html": "html", "pdf": "pdf", "csv": "zip"}


def render(report: ComplianceReport, lang: Lang, fmt: str) -> bytes:
    """The report in ``lang`` as html, pdf or csv (a zip of CSV files)."""
    document = layout(report, lang)
    if fmt == "html":
        return render_html(document)
    if fmt == "pdf":
        return render_pdf(document)
    if fmt == "csv":
        return render_csv(document)
    raise ValueError(f"unknown format {fmt!r}: html, pdf or csv")


def filename(period: Period, lang: str, fmt: str) -> str:
    return f"parkguard-compliance-{period.label}-{lang}.{EXTENSIONS[fmt]}"


def prepare(
    session: Session,
    catalogue: Catalogue,
    period: Period,
    *,
    as_of_ms: int,
    config: ReportConfig | None = None,
    scrap_date: ScrapDate = no_scrap_dates,
    record_first: bool = True,
) -> ComplianceReport:
    """Bring the condition log up to date (unless told not to), then build the report."""
    if record_first:
        refresh(session, catalogue, as_of_ms)
    return build_report(
        session, catalogue, period, as_of_ms=as_of_ms, config=config, scrap_date=scrap_date
    )


def store(
    session: Session,
    report: ComplianceReport,
    lang: Lang,
    fmt: str,
    data: bytes,
    *,
    by: str,
    now: int,
) -> StoredReport:
    """Keep a rendered report; the caller commits."""
    row = StoredReport(
        period=report.period.label,
        lang=lang,
        format=fmt,
        start_ms=report.period.start_ms,
        end_ms=report.period.end_ms,
        as_of_ms=report.as_of_ms,
        created_ms=now,
        created_by=by,
        content_type=CONTENT_TYPES[fmt],
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        summary=summary_sentence(report),
    )
    session.add(row)
    session.flush()
    return row


@dataclass
class MonthlyReportJob:
    """Stores last month's report (park time zone) in each language and format, once."""

    sessions: SessionFactory
    catalogue: Catalogue
    config: ReportConfig = field(default_factory=ReportConfig)
    scrap_date: ScrapDate = no_scrap_dates
    langs: Sequence[Lang] = ("zh", "en")
    formats: Sequence[str] = REPORT_FORMATS
    clock: Callable[[], int] = now_ms
    actor: str = "system"
    runs: int = 0
    failures: int = 0
    """Runs that failed (logged, rolled back and recorded as ``failed``)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self) -> ReportRun | None:
        """One run; returns its record (None only if even the record could not be written)."""
        with self._lock:
            return self._run()

    def _run(self) -> ReportRun | None:
        self.runs += 1
        started = self.clock()
        label = "?"
        try:
            with self.sessions() as session:
                period = last_month(started, park_timezone(session))
                label = period.label
                stored = {
                    (str(lang), str(fmt))
                    for lang, fmt in session.execute(
                        select(StoredReport.lang, StoredReport.format).where(
                            StoredReport.period == period.label,
                            StoredReport.created_by == self.actor,
                        )
                    )
                }
                wanted = [(lang, fmt) for lang in self.langs for fmt in self.formats]
                missing = [(lang, fmt) for lang, fmt in wanted if (lang, fmt) not in stored]
                ids: list[int] = []
                if missing:
                    report = prepare(
                        session,
                        self.catalogue,
                        period,
                        as_of_ms=started,
                        config=self.config,
                        scrap_date=self.scrap_date,
                    )
                    for lang, fmt in missing:
                        data = render(report, lang, fmt)
                        ids.append(
                            store(session, report, lang, fmt, data, by=self.actor, now=started).id
                        )
                run = ReportRun(
                    job=JOB,
                    period=period.label,
                    started_ms=started,
                    finished_ms=self.clock(),
                    outcome="stored" if missing else "exists",
                    report_ids=ids,
                    error=None,
                )
                session.add(run)
                session.commit()
                log.info("%s %s: %s %s", JOB, period.label, run.outcome, ids)
                return run
        except (SQLAlchemyError, PeriodError, ValueError, OSError) as exc:
            self.failures += 1
            log.error("%s %s failed: %s", JOB, label, exc)
            return self._failed(label, started, exc)

    def _failed(self, label: str, started: int, exc: Exception) -> ReportRun | None:
        try:
            with self.sessions() as session:
                run = ReportRun(
                    job=JOB,
                    period=label,
                    started_ms=started,
                    finished_ms=self.clock(),
                    outcome="failed",
                    report_ids=[],
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                )
                session.add(run)
                session.commit()
                return run
        except SQLAlchemyError as again:
            log.error("%s: could not record the failed run either: %s", JOB, again)
            return None

"""``/api/v1/reports`` and ``/api/v1/training``: the monthly compliance report (clause by clause
of the park standard, in Chinese or English, as HTML, PDF or a zip of CSV files), the reports
kept by the monthly job or by hand, and the safety-training register (clause 5.5.1).

The report's topics (which rules are fire-lane, gas, hazmat rules) and the emergency plans come
from the running services when the wiring put them in ``ctx.extras`` (``rules``,
``incidents``), or from ``ctx.extras["report_config"]`` if given; the acting user is the same
as for the other routers (api.routers.alerts' ``UserDep``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from api.deps import CtxDep, SessionDep
from api.routers.alerts import UserDep
from api.routers.intactness import register_scrap_date
from api.schemas import ErrorPublic
from api.timefmt import parse_time, to_rfc3339
from compliance import training as register
from compliance.report import (
    Period,
    PeriodError,
    ReportConfig,
    last_month,
    month_period,
    park_timezone,
)
from compliance.scheduled import CONTENT_TYPES, filename, prepare, render, store
from core.contract import now_ms
from core.models_training import ReportRun, StoredReport, TrainingSession

router = APIRouter(tags=["reports"])
PERIOD_PATTERN = r"^[0-9]{4}-[0-9]{2}$"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic, "description": text}
    for code, text in (
        (404, "No such stored report."),
        (422, "The request is incomplete or malformed; nothing was changed."),
    )
}
PeriodQuery = Annotated[
    str | None,
    Query(
        max_length=16,
        description="The calendar month YYYY-MM in the park's time zone; default: last month.",
    ),
]
LangQuery = Annotated[Literal["zh", "en"], Query(description="zh (Chinese) or en (English).")]
FormatQuery = Annotated[
    Literal["html", "pdf", "csv"],
    Query(alias="format", description="html (a page), pdf, or csv (a zip, one CSV per table)."),
]


def report_config(ctx: CtxDep) -> ReportConfig:
    """The configuration in ``ctx.extras``, or one read from the running rules and plans."""
    given = ctx.extras.get("report_config")
    if isinstance(given, ReportConfig):
        return given
    rules = getattr(getattr(ctx.extras.get("rules"), "rules", None), "rules", None)
    plans = getattr(ctx.extras.get("incidents"), "plans", None)
    plans = getattr(plans, "plans", plans)
    if rules is None and plans is None:
        return ReportConfig()
    config = ReportConfig.from_rules(rules) if rules is not None else ReportConfig()
    if plans is not None:
        config = replace(config, plans=ReportConfig.from_rules((), plans).plans)
    return config


ConfigDep = Annotated[ReportConfig, Depends(report_config)]


def _period(session: Any, text: str | None, now: int) -> Period:
    tz = park_timezone(session)
    try:
        period = last_month(now, tz) if text is None else month_period(text, tz)
    except PeriodError as exc:
        raise HTTPException(422, str(exc)) from None
    if period.start_ms >= now:
        raise HTTPException(422, f"period {period.label} has not begun yet")
    return period


def _as_of(value: str | None, now: int) -> int:
    if value is None:
        return now
    try:
        at = parse_time(value, "as_of")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if at > now:
        raise HTTPException(422, "as_of must not be in the future")
    return at


def _disposition(name: str, fmt: str) -> dict[str, str]:
    kind = "inline" if fmt == "html" else "attachment"
    return {
        "Content-Disposition": f'{kind}; filename="{name}"',
        "X-Content-Type-Options": "nosniff",
    }


@router.get(
    "/api/v1/reports/compliance",
    summary="The compliance report of a month, clause by clause, as HTML, PDF or CSV (zip)",
    responses={
        200: {
            "content": {t: {} for t in CONTENT_TYPES.values()},
            "description": "The report (a page, a PDF, or a zip of CSV files).",
        },
        422: ERRORS[422],
    },
    response_class=Response,
)
def get_compliance_report(
    ctx: CtxDep,
    session: SessionDep,
    config: ConfigDep,
    period: PeriodQuery = None,
    lang: LangQuery = "zh",
    fmt: FormatQuery = "html",
    as_of: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Use only what was recorded by this instant (RFC 3339 or epoch ms; "
            "default now). The as_of shown in a report reproduces it.",
        ),
    ] = None,
) -> Response:
    """Every figure is computed from stored rows and names them (ids); a month still running is
    reported up to now. Gaps in the data are stated in the report's last section."""
    now = now_ms()
    chosen = _period(session, period, now)
    at = _as_of(as_of, now)
    if at <= chosen.start_ms:
        raise HTTPException(422, "as_of must be after the period's start")
    report = prepare(
        session,
        ctx.catalogue,
        chosen,
        as_of_ms=at,
        config=config,
        scrap_date=register_scrap_date,
        record_first=as_of is None,
    )
    data = render(report, lang, fmt)
    return Response(
        data,
        media_type=CONTENT_TYPES[fmt],
        headers=_disposition(filename(chosen, lang, fmt), fmt),
    )


class StoredReportPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)
    id: int
    """The stored report's id (download at /api/v1/reports/stored/{id})."""
    period: str
    """The month, YYYY-MM."""
    lang: str
    """zh or en."""
    format: str
    """html, pdf or csv."""
    as_of: str
    """Only what was recorded by then was used."""
    created: str
    """When it was stored."""
    created_by: str
    """Who stored it: ``system`` for the monthly job."""
    size: int
    """Its size in bytes."""
    sha256: str
    """Its SHA-256, hex."""
    summary: dict[str, Any]
    """Verdicts per clause (true green, false red, null no data) and headline figures."""


class StoredReportsPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)
    items: list[StoredReportPublic]
    """This page of stored reports, newest first."""
    total: int
    """How many match in all."""


class ReportRunPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)
    id: int
    """The run's id."""
    job: str
    """The job: compliance.monthly_report."""
    period: str
    """The month it reported on, YYYY-MM (``?`` if it failed before knowing)."""
    started: str
    """When it started (RFC 3339, UTC)."""
    finished: str
    """When it finished."""
    outcome: str
    """stored (reports kept), exists (already stored, nothing done) or failed."""
    report_ids: list[int]
    """The stored reports it made."""
    error: str | None
    """Why it failed."""


def _stored(row: StoredReport) -> StoredReportPublic:
    return StoredReportPublic(
        id=row.id,
        period=row.period,
        lang=row.lang,
        format=row.format,
        as_of=to_rfc3339(row.as_of_ms),
        created=to_rfc3339(row.created_ms),
        created_by=row.created_by,
        size=row.size,
        sha256=row.sha256,
        summary=row.summary or {},
    )


@router.post(
    "/api/v1/reports/stored",
    response_model=StoredReportPublic,
    status_code=201,
    summary="Generate a month's report and keep it",
    responses={422: ERRORS[422]},
)
def store_report(
    ctx: CtxDep,
    session: SessionDep,
    config: ConfigDep,
    user: UserDep,
    period: PeriodQuery = None,
    lang: LangQuery = "zh",
    fmt: FormatQuery = "pdf",
) -> StoredReportPublic:
    now = now_ms()
    chosen = _period(session, period, now)
    report = prepare(
        session, ctx.catalogue, chosen, as_of_ms=now, config=config, scrap_date=register_scrap_date
    )
    row = store(session, report, lang, fmt, render(report, lang, fmt), by=str(user), now=now)
    session.commit()
    return _stored(row)


@router.get(
    "/api/v1/reports/stored",
    response_model=StoredReportsPublic,
    summary="Reports kept by the monthly job or by hand, newest first (without their bytes)",
    responses={422: ERRORS[422]},
)
def list_stored(
    session: SessionDep,
    period: Annotated[
        str | None, Query(pattern=PERIOD_PATTERN, description="Only this month (YYYY-MM).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="How many to skip.")] = 0,
) -> StoredReportsPublic:
    where = [StoredReport.period == period] if period is not None else []
    total = session.scalar(select(func.count()).select_from(StoredReport).where(*where))
    rows = session.scalars(
        select(StoredReport)
        .where(*where)
        .order_by(StoredReport.created_ms.desc(), StoredReport.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return StoredReportsPublic(items=[_stored(r) for r in rows], total=int(total or 0))


@router.get(
    "/api/v1/reports/stored/{report_id}",
    summary="Download a stored report",
    response_class=Response,
    responses={404: ERRORS[404], 422: ERRORS[422]},
)
def download_stored(
    session: SessionDep,
    report_id: Annotated[int, Path(ge=1, le=2**62, description="The stored report's id.")],
) -> Response:
    row = session.get(StoredReport, report_id)
    if row is None:
        raise HTTPException(404, f"no stored report with id {report_id}")
    extension = "zip" if row.format == "csv" else row.format
    name = f"parkguard-compliance-{row.period}-{row.lang}.{extension}"
    return Response(row.data, media_type=row.content_type, headers=_disposition(name, row.format))


@router.get(
    "/api/v1/reports/runs",
    response_model=list[ReportRunPublic],
    summary="Runs of the monthly report job, newest first: when, which month, what it stored",
)
def list_runs(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many runs.")] = 50,
) -> list[ReportRunPublic]:
    rows = session.scalars(select(ReportRun).order_by(ReportRun.id.desc()).limit(limit))
    return [
        ReportRunPublic(
            id=r.id,
            job=r.job,
            period=r.period,
            started=to_rfc3339(r.started_ms),
            finished=to_rfc3339(r.finished_ms),
            outcome=r.outcome,
            report_ids=[int(i) for i in r.report_ids or []],
            error=r.error,
        )
        for r in rows
    ]


# ---- the training register --------------------------------------------------------------------


class TrainingCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, use_attribute_docstrings=True
    )
    held_on: date
    """The day it was held (YYYY-MM-DD, park time); not in the future."""
    topic: Annotated[str, Field(min_length=1, max_length=register.TOPIC_MAX)]
    """What was taught, one line."""
    trainer: Annotated[str, Field(min_length=1, max_length=register.TRAINER_MAX)]
    """Who taught it."""
    attendee_count: Annotated[int, Field(ge=1, le=register.ATTENDEES_MAX, strict=True)]
    """How many people attended (a head count is enough)."""
    attendees: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=register.NAME_MAX)]],
        Field(max_length=register.ATTENDEES_MAX),
    ] = []
    """Their names, if taken (no more than attendee_count, each once)."""
    hours: Annotated[float, Field(gt=0, le=register.HOURS_MAX)] | None = None
    """Its length in hours."""
    note: Annotated[str, Field(max_length=register.NOTE_MAX)] | None = None
    """Anything else (materials, test results)."""
    site_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    """The site; may be left out when the park has one."""


class TrainingPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)
    id: int
    """The session's id in the register."""
    site_id: str
    """The site."""
    held_on: date
    """The day it was held (park time)."""
    topic: str
    """What was taught."""
    trainer: str
    """Who taught it."""
    attendee_count: int
    """How many attended."""
    attendees: list[str]
    """Their names, where taken."""
    hours: float | None
    """Its length in hours."""
    note: str | None
    """Anything else recorded."""
    recorded_by: str
    """Who recorded it."""
    recorded: str
    """When it was recorded (RFC 3339, UTC)."""


class TrainingListPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)
    items: list[TrainingPublic]
    """This page of sessions, oldest first."""
    total: int
    """Sessions held in the range."""
    sessions: int
    """Sessions in the range (= total)."""
    people_trained: int
    """The sum of their attendee counts."""


def _training(row: TrainingSession) -> TrainingPublic:
    return TrainingPublic(
        id=row.id,
        site_id=row.site_id,
        held_on=row.held_on,
        topic=row.topic,
        trainer=row.trainer,
        attendee_count=row.attendee_count,
        attendees=[str(a) for a in row.attendees or []],
        hours=row.hours,
        note=row.note,
        recorded_by=row.recorded_by,
        recorded=to_rfc3339(row.recorded_ms),
    )


@router.post(
    "/api/v1/training",
    response_model=TrainingPublic,
    status_code=201,
    summary="Record a safety-training session (clause 5.5.1)",
    responses={422: ERRORS[422]},
    tags=["training"],
)
def add_training(session: SessionDep, body: TrainingCreate, user: UserDep) -> TrainingPublic:
    new = register.NewSession(
        held_on=body.held_on,
        topic=body.topic,
        trainer=body.trainer,
        attendee_count=body.attendee_count,
        attendees=tuple(body.attendees),
        hours=body.hours,
        note=body.note,
        site_id=body.site_id,
    )
    try:
        row = register.record(session, new, by=str(user), now_ms=now_ms())
    except register.TrainingInputError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    return _training(row)


@router.get(
    "/api/v1/training",
    response_model=TrainingListPublic,
    summary="The training register: sessions held between two days, oldest first",
    responses={422: ERRORS[422]},
    tags=["training"],
)
def list_training(
    session: SessionDep,
    start: Annotated[
        date | None, Query(alias="from", description="First day (YYYY-MM-DD).")
    ] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day, included.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many sessions.")] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Sessions to skip.")] = 0,
) -> TrainingListPublic:
    first = start or date(2000, 1, 1)
    last = end or date(2999, 12, 31)
    if first > last:
        raise HTTPException(422, f"from ({first}) must not be after to ({last})")
    rows, total = register.sessions_between(session, first, last, limit=limit, offset=offset)
    people = session.scalar(
        select(func.coalesce(func.sum(TrainingSession.attendee_count), 0)).where(
            TrainingSession.held_on >= first, TrainingSession.held_on <= last
        )
    )
    return TrainingListPublic(
        items=[_training(r) for r in rows],
        total=total,
        sessions=total,
        people_trained=int(people or 0),
    )

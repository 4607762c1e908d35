"""``/api/v1/plans`` and ``/api/v1/incidents``: the emergency plans, starting one by hand
(or as a drill), the incidents with their steps and timeline, people completing or skipping
steps and closing incidents, the live SSE stream of every incident transition, and the
figures (real incidents and drills apart).

The router reads the incident service from ``ctx.extras["incidents"]`` (a
``rules.incident_service.IncidentService``, started by whoever runs the app, or the
``IncidentDesk`` of ``parkguard api``); without it every route answers 503. The acting user
recorded in the timeline is the signed-in caller (api.auth).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NoReturn

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import ID, CtxDep
from api.inputs import Body, clean_text, query_time
from api.routers.alerts import UserDep
from api.schemas import ErrorPublic
from api.streams import LAST_EVENT_ID, journal_stream
from rules.incident_service import IncidentDesk, IncidentService
from rules.incidents import (
    MAX_TEXT,
    IncidentChange,
    IncidentConflict,
    IncidentError,
    IncidentFilter,
    IncidentInputError,
    IncidentNotFound,
)
from rules.plans import STEP_ID, Plan, role_title
from rules.spec import RULE_ID

router = APIRouter(prefix="/api/v1", tags=["plans"])

PAGE_MAX = 500
OFFSET_MAX = 10_000_000
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic, "description": text}
    for code, text in (
        (404, "No plan, incident or step has this id."),
        (409, "The incident or step is not in a state that allows this; nothing was changed."),
        (422, "The request is incomplete or malformed; nothing was changed."),
        (503, "The incident service is not running."),
    )
}
Severity = Literal["critical", "major", "minor", "warning"]


# ---- what the API answers -------------------------------------------------------------------


class _Public(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)


class BilingualPublic(_Public):
    zh: str
    """In Chinese."""
    en: str
    """In English."""


class PlanTriggerPublic(_Public):
    rule: str
    """An alert of this rule starts the plan for the alert's zone."""
    min_severity: Severity | None
    """Only at this severity or above (null: any)."""


class PlanContactPublic(_Public):
    name: BilingualPublic
    """Who (fire brigade, police, health authority...)."""
    phone: str
    """Their number."""


class PlanStepPublic(_Public):
    id: str
    """The step's id within its plan."""
    role: str
    """Who does it: security_room, patrol, maintenance, manager or all_staff."""
    role_title: BilingualPublic
    """The role's name."""
    text: BilingualPublic
    """What to do; ``{zone}`` and ``{site}`` are filled in when the plan starts."""
    deadline_s: float
    """Seconds after activation by which it should be done."""
    requires: Literal["nothing", "note", "evidence"]
    """What a person must give to mark it done."""


class PlanPublic(_Public):
    id: str
    """The plan's id."""
    type: str
    """fire, public_health, chemical_leak, typhoon, earthquake, riot or other."""
    level: str
    """on_site, special or comprehensive (GB/T 29639); sets the legal drill frequency."""
    title: BilingualPublic
    """The plan's title."""
    risk: BilingualPublic | None
    """The risk it answers (the plan's risk description)."""
    severity: Severity
    """How loud its notifications are."""
    triggers: list[PlanTriggerPublic]
    """Alert rules that start it by themselves (none: started by people only)."""
    drill_every_s: float
    """It must be drilled at least this often (seconds)."""
    contacts: list[PlanContactPublic]
    """Numbers to call."""
    steps: list[PlanStepPublic]
    """The steps, in order."""


class PlansPublic(_Public):
    items: list[PlanPublic]
    """Every plan of the site."""
    missing_types: list[str]
    """Emergencies of clause 5.5.2 that no plan covers (empty when all are)."""


class ActorTimePublic(_Public):
    by: str
    """Who (``system`` when an alert started it)."""
    at: str
    """When (RFC 3339, UTC)."""


class IncidentClosurePublic(_Public):
    by: str | None
    """Who closed it."""
    at: str | None
    """When (RFC 3339, UTC)."""
    summary: str | None
    """What happened, in their words."""


class IncidentProgressPublic(_Public):
    total: int
    """Steps in all."""
    pending: int
    """Steps not done or skipped yet."""
    overdue: int
    """Pending steps past their deadline."""
    done: int
    """Steps done."""
    skipped: int
    """Steps skipped (with a reason)."""


class IncidentPublic(_Public):
    id: int
    """The incident's id."""
    plan: str
    """The plan being carried out."""
    type: str
    """The plan's type."""
    level: str
    """The plan's level."""
    title: BilingualPublic
    """The plan's title."""
    severity: Severity
    """The plan's severity."""
    site: str
    """The site."""
    zone: str | None
    """The zone it is for (null: the whole site)."""
    zone_name: BilingualPublic | None
    """The zone's name."""
    drill: bool
    """A drill: the same steps and timers, never counted as a real incident."""
    state: Literal["open", "closed"]
    """open until closed with a summary; a closed incident is a read-only record."""
    trigger: Literal["alert", "manual"]
    """Started by an alert rule or by a person."""
    reason: str | None
    """The person's reason, for a plan started by hand."""
    activated: ActorTimePublic
    """Who started it and when."""
    activated_ms: int
    """``activated.at`` in epoch milliseconds."""
    closed: IncidentClosurePublic | None
    """Who closed it, when, and the summary; null while open."""
    closed_ms: int | None
    """``closed.at`` in epoch milliseconds."""
    duration_s: float
    """From activation to closing (or to now, while open)."""
    progress: IncidentProgressPublic
    """How far its steps are."""
    alert_count: int
    """Alerts that started it or attached to it."""
    next_due: str | None
    """The earliest deadline of a pending step (RFC 3339, UTC)."""


class IncidentsPublic(_Public):
    items: list[IncidentPublic]
    """This page, newest first."""
    total: int
    """How many match the filters, over all pages."""
    limit: int
    """The page size asked for."""
    offset: int
    """How many matches were skipped before this page."""


class IncidentStepPublic(_Public):
    id: str
    """The step's id."""
    position: int
    """Its place in the plan, from 1."""
    role: str
    """Who does it."""
    role_title: BilingualPublic
    """The role's name."""
    text: BilingualPublic
    """What to do, with the zone's name filled in."""
    requires: Literal["nothing", "note", "evidence"]
    """What marking it done needs."""
    deadline_s: float
    """Its deadline after activation."""
    due: str
    """When it is due (RFC 3339, UTC)."""
    due_ms: int
    """``due`` in epoch milliseconds."""
    state: Literal["pending", "done", "skipped"]
    """pending → done or skipped."""
    overdue: bool
    """Pending and past its deadline now."""
    overdue_at: str | None
    """When it was found overdue and notified (RFC 3339, UTC)."""
    late: bool
    """Done or skipped after its deadline."""
    by: str | None
    """Who did or skipped it."""
    at: str | None
    """When (RFC 3339, UTC)."""
    at_ms: int | None
    """``at`` in epoch milliseconds."""
    took_s: float | None
    """From activation to done or skipped."""
    note: str | None
    """The note of a done step, or why it was skipped."""
    evidence: str | None
    """Evidence given (a reference, link or description)."""


class IncidentAlertPublic(_Public):
    id: int
    """The alert's id."""
    rule: str
    """Its rule."""
    severity: str
    """Its severity now."""
    title: BilingualPublic
    """Its rule's title."""
    device: str | None
    """Its device, for a device alert."""
    first_seen: str
    """When it was raised (RFC 3339, UTC)."""
    attached: str
    """When it started or joined the incident (RFC 3339, UTC)."""
    state: str | None
    """Its state now (active, acknowledged, resolved, shelved)."""


class IncidentEntryPublic(_Public):
    id: int
    """The entry's id; also the SSE event id of the transition."""
    at: str
    """When (RFC 3339, UTC)."""
    at_ms: int
    """``at`` in epoch milliseconds."""
    actor: str
    """``system`` or the person."""
    action: str
    """activated, alert_attached, step_done, step_skipped, step_overdue, closed."""
    step: str | None
    """The step concerned, if any."""
    from_: str | None = Field(alias="from")
    """The state before."""
    to: str
    """The state after."""
    note: str | None
    """The note, reason or summary."""
    detail: dict[str, Any] | None
    """More about it (the alert, the lateness...)."""


class IncidentDurationsPublic(_Public):
    total_s: float
    """From activation to closing (or now)."""
    first_step_s: float | None
    """From activation to the first step done."""
    last_step_s: float | None
    """From activation to the last step done."""
    on_time: int
    """Steps done by their deadline."""
    late: int
    """Steps done after their deadline."""
    punctuality: float | None
    """Steps done on time ÷ steps that fell due (done, or pending past their deadline);
    skipped steps left out. Null when none fell due."""


class IncidentDetailPublic(IncidentPublic):
    steps: list[IncidentStepPublic]
    """Every step, in order, with its times, notes and people."""
    alerts: list[IncidentAlertPublic]
    """The alerts that started it or attached later."""
    timeline: list[IncidentEntryPublic]
    """Every transition, oldest first; never edited."""
    durations: IncidentDurationsPublic
    """How long it all took."""


class StepFiguresPublic(_Public):
    total: int
    """Steps of the incidents counted."""
    done: int
    """Done."""
    done_on_time: int
    """Done by their deadline."""
    done_late: int
    """Done after their deadline."""
    skipped: int
    """Skipped."""
    pending: int
    """Not done yet."""
    overdue: int
    """Not done and past their deadline."""


class IncidentFiguresPublic(_Public):
    incidents: int
    """Incidents started in the period."""
    open: int
    """Of those, still open."""
    closed: int
    """Of those, closed."""
    by_plan: dict[str, int]
    """Incidents by plan."""
    steps: StepFiguresPublic
    """Their steps."""
    punctuality: float | None
    """Steps done on time ÷ steps that fell due (skipped left out); null when none did."""
    mean_duration_s: float | None
    """Mean time from activation to closing of the closed ones."""


class DrillItemPublic(_Public):
    id: int
    """The drill's incident id."""
    plan: str
    """The plan drilled."""
    zone: str | None
    """Where."""
    activated: str
    """When it started (RFC 3339, UTC)."""
    closed: str | None
    """When it was closed (RFC 3339, UTC)."""


class DrillFiguresPublic(IncidentFiguresPublic):
    items: list[DrillItemPublic]
    """Each drill of the period, oldest first."""


class DrillRecordPublic(_Public):
    plan: str
    """The plan."""
    type: str
    """Its type."""
    level: str
    """Its level."""
    every_s: float
    """It must be drilled at least this often."""
    last_drill: str | None
    """Its last drill before the period's end (RFC 3339, UTC), or null."""
    next_due: str | None
    """When the next drill is due (RFC 3339, UTC); null when never drilled."""
    overdue: bool
    """Never drilled, or its next drill is overdue."""


class IncidentReportPublic(_Public):
    since: str | None
    """The period's start (RFC 3339, UTC), or null for all time."""
    until: str
    """The period's end (RFC 3339, UTC)."""
    real: IncidentFiguresPublic
    """Real incidents only: drills never count here."""
    drills: DrillFiguresPublic
    """Drills only."""
    drill_record: list[DrillRecordPublic]
    """Each plan's last drill against its legal frequency."""


# ---- what people send -----------------------------------------------------------------------


RequiredText = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
OptionalText = Annotated[str, Field(max_length=MAX_TEXT)] | None


class PlanActivateBody(Body):
    reason: RequiredText
    """Why the plan is started (typhoon warning, earthquake, epidemic notice...)."""
    zone: Annotated[str, Field(pattern=ID)] | None = None
    """The zone it is for; without it, the whole site."""
    site: Annotated[str, Field(pattern=ID)] | None = None
    """The site, when there is no zone and the register holds several sites."""
    drill: bool = False
    """Start it as a drill (marked everywhere, never counted as real)."""

    _clean = field_validator("reason")(clean_text)


class StepDoneBody(Body):
    note: OptionalText = None
    """What was done (required when the step needs a note)."""
    evidence: OptionalText = None
    """Evidence: a reference, link or description (required when the step needs it)."""

    _clean = field_validator("note", "evidence")(clean_text)


class StepSkipBody(Body):
    reason: RequiredText
    """Why the step is skipped (required)."""

    _clean = field_validator("reason")(clean_text)


class IncidentCloseBody(Body):
    summary: RequiredText
    """What happened and how it ended (required)."""
    skip_pending: bool = False
    """Skip every pending step, with the summary as the reason; without it, pending steps
    refuse the closing."""

    _clean = field_validator("summary")(clean_text)


# ---- dependencies ---------------------------------------------------------------------------


def get_service(ctx: CtxDep) -> IncidentService | IncidentDesk:
    service = ctx.extras.get("incidents")
    if not isinstance(service, IncidentService | IncidentDesk):
        raise HTTPException(503, "the incident service is not running")
    return service


ServiceDep = Annotated[IncidentService | IncidentDesk, Depends(get_service)]
IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The incident's id.")]
PlanId = Annotated[str, Path(pattern=RULE_ID, description="The plan's id.")]
StepId = Annotated[str, Path(pattern=STEP_ID, description="The step's id within the plan.")]


def _fail(exc: IncidentError) -> NoReturn:
    if isinstance(exc, IncidentNotFound):
        raise HTTPException(404, str(exc)) from None
    if isinstance(exc, IncidentConflict):
        raise HTTPException(409, str(exc)) from None
    if isinstance(exc, IncidentInputError):
        raise HTTPException(422, str(exc)) from None
    raise HTTPException(400, str(exc)) from None


def _plan_public(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "type": plan.type,
        "level": plan.level,
        "title": plan.title.model_dump(),
        "risk": plan.risk.model_dump() if plan.risk is not None else None,
        "severity": plan.severity,
        "triggers": [t.model_dump() for t in plan.triggers],
        "drill_every_s": plan.drill_interval_s,
        "contacts": [c.model_dump() for c in plan.contacts],
        "steps": [
            {
                "id": s.id,
                "role": s.role,
                "role_title": role_title(s.role),
                "text": s.text.model_dump(),
                "deadline_s": s.deadline,
                "requires": s.requires,
            }
            for s in plan.steps
        ],
    }


# ---- plans ----------------------------------------------------------------------------------


@router.get("/plans", response_model=PlansPublic, summary="Emergency plans", responses=ERRORS)
def list_plans(service: ServiceDep) -> PlansPublic:
    """Every plan of the site with its triggers, contacts and steps."""
    plans = service.plans
    return PlansPublic.model_validate(
        {
            "items": [_plan_public(p) for p in plans.plans],
            "missing_types": plans.missing_types(),
        }
    )


@router.get("/plans/{plan_id}", response_model=PlanPublic, summary="One plan", responses=ERRORS)
def get_plan(service: ServiceDep, plan_id: PlanId) -> PlanPublic:
    """The plan with its triggers, contacts and steps."""
    plan = service.plans.by_id.get(plan_id)
    if plan is None:
        raise HTTPException(404, f"no plan with id {plan_id!r}")
    return PlanPublic.model_validate(_plan_public(plan))


@router.post(
    "/plans/{plan_id}/activate",
    response_model=IncidentDetailPublic,
    response_model_by_alias=True,
    status_code=201,
    summary="Start a plan by hand (or as a drill)",
    responses=ERRORS,
)
def activate(
    service: ServiceDep, user: UserDep, plan_id: PlanId, body: PlanActivateBody
) -> IncidentDetailPublic:
    """Start the plan for a zone (or the whole site) with a reason; ``drill`` starts it as a
    drill. 409 when the same plan is already open there (as a drill or for real)."""
    try:
        incident = service.store.activate(
            plan_id, user, body.reason, zone=body.zone, site=body.site, drill=body.drill
        )
    except IncidentError as exc:
        _fail(exc)
    return IncidentDetailPublic.model_validate(incident)


# ---- incidents ------------------------------------------------------------------------------


@router.get(
    "/incidents", response_model=IncidentsPublic, summary="Incidents, a page", responses=ERRORS
)
def list_incidents(
    service: ServiceDep,
    state: Annotated[Literal["open", "closed"] | None, Query(description="open or closed.")] = None,
    plan: Annotated[str | None, Query(pattern=RULE_ID, description="Only this plan.")] = None,
    zone: Annotated[str | None, Query(pattern=ID, description="Only this zone.")] = None,
    site: Annotated[str | None, Query(pattern=ID, description="Only this site.")] = None,
    drill: Annotated[
        bool | None, Query(description="true: drills only; false: real incidents only.")
    ] = None,
    since: Annotated[
        str | None,
        Query(max_length=64, description="Open at or after this time (RFC 3339 or epoch ms)."),
    ] = None,
    until: Annotated[
        str | None,
        Query(max_length=64, description="Started before this time (RFC 3339 or epoch ms)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Incidents to skip.")] = 0,
) -> IncidentsPublic:
    """Newest first, each with its plan, zone, state and drill flag."""
    since_ms, until_ms = query_time(since, "since"), query_time(until, "until")
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise HTTPException(422, "since must be before until")
    where = IncidentFilter(state, plan, zone, site, drill, since_ms, until_ms)
    items, total = service.store.query(where, limit, offset)
    return IncidentsPublic.model_validate(
        {"items": items, "total": total, "limit": limit, "offset": offset}
    )


@router.get(
    "/incidents/figures",
    response_model=IncidentReportPublic,
    summary="Incident and drill figures",
    responses=ERRORS,
)
def figures(
    service: ServiceDep,
    since: Annotated[
        str | None,
        Query(max_length=64, description="Started at or after (RFC 3339 or epoch ms)."),
    ] = None,
    until: Annotated[
        str | None,
        Query(max_length=64, description="Started before (RFC 3339 or epoch ms); default now."),
    ] = None,
) -> IncidentReportPublic:
    """Real incidents and drills counted apart (a drill never counts as real), step
    punctuality, and each plan's drill record against its legal frequency."""
    since_ms, until_ms = query_time(since, "since"), query_time(until, "until")
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise HTTPException(422, "since must be before until")
    return IncidentReportPublic.model_validate(service.store.figures(since_ms, until_ms))


@router.get("/incidents/stream", summary="Every incident transition, live (SSE)", responses=ERRORS)
async def stream(
    service: ServiceDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=LAST_EVENT_ID,
            description="Resume: transitions journaled after this id are sent first.",
        ),
    ] = None,
) -> EventSourceResponse:
    """Server-sent ``incident`` events in commit order; each one's data is the transition
    (``seq``, ``action``, ``actor``, ``from``, ``to``, ``note``, ``drill``, the ``incident`` and
    the ``step`` concerned) and its id is ``seq``. ``resync`` tells a client that fell too far
    behind to reload."""
    return journal_stream(service.store, last_event_id, "incidents", _event)


def _event(change: IncidentChange) -> ServerSentEvent:
    data = orjson.dumps(change.to_json()).decode()
    return ServerSentEvent(data=data, event="incident", id=str(change.seq))


@router.get(
    "/incidents/{incident_id}",
    response_model=IncidentDetailPublic,
    response_model_by_alias=True,
    summary="One incident with its steps and timeline",
    responses=ERRORS,
)
def get_incident(service: ServiceDep, incident_id: IncidentId) -> IncidentDetailPublic:
    """The incident, every step with its times, notes and people, the alerts behind it, the
    timeline and the durations; a closed incident is a read-only record."""
    try:
        return IncidentDetailPublic.model_validate(service.store.get(incident_id))
    except IncidentError as exc:
        _fail(exc)


@router.post(
    "/incidents/{incident_id}/steps/{step_id}/complete",
    response_model=IncidentDetailPublic,
    response_model_by_alias=True,
    summary="Mark a step done",
    responses=ERRORS,
)
def complete_step(
    service: ServiceDep,
    user: UserDep,
    incident_id: IncidentId,
    step_id: StepId,
    body: StepDoneBody | None = None,
) -> IncidentDetailPublic:
    """A pending step becomes done by the acting user, with the ``note`` or ``evidence`` the
    plan asks for. 409 when it is already done or skipped, or the incident is closed."""
    note, evidence = (body.note, body.evidence) if body is not None else (None, None)
    try:
        incident = service.store.complete_step(incident_id, step_id, user, note, evidence)
    except IncidentError as exc:
        _fail(exc)
    return IncidentDetailPublic.model_validate(incident)


@router.post(
    "/incidents/{incident_id}/steps/{step_id}/skip",
    response_model=IncidentDetailPublic,
    response_model_by_alias=True,
    summary="Skip a step",
    responses=ERRORS,
)
def skip_step(
    service: ServiceDep,
    user: UserDep,
    incident_id: IncidentId,
    step_id: StepId,
    body: StepSkipBody,
) -> IncidentDetailPublic:
    """A pending step is skipped by the acting user, with a required ``reason``."""
    try:
        incident = service.store.skip_step(incident_id, step_id, user, body.reason)
    except IncidentError as exc:
        _fail(exc)
    return IncidentDetailPublic.model_validate(incident)


@router.post(
    "/incidents/{incident_id}/close",
    response_model=IncidentDetailPublic,
    response_model_by_alias=True,
    summary="Close an incident",
    responses=ERRORS,
)
def close(
    service: ServiceDep, user: UserDep, incident_id: IncidentId, body: IncidentCloseBody
) -> IncidentDetailPublic:
    """Close with a required ``summary``. Pending steps refuse it (409) unless
    ``skip_pending``; closing twice is a 409. The closed incident is read-only."""
    try:
        incident = service.store.close_incident(incident_id, user, body.summary, body.skip_pending)
    except IncidentError as exc:
        _fail(exc)
    return IncidentDetailPublic.model_validate(incident)

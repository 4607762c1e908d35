"""``/api/v1/alerts``: the alert list and each alert with its journal, the people's actions
(acknowledge, resolve, shelve, unshelve) and the live SSE stream of every transition.

The router reads the alert store from ``ctx.extras["alerts"]`` (a ``rules.alerts.AlertStore``,
opened by whoever runs the app, e.g. ``RulesService.store``); without it every route answers
503. The acting user recorded in the journal is the signed-in caller (api.auth).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NoReturn

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import ID, CtxDep, CurrentUserName
from api.inputs import Body, clean_text, query_time
from api.schemas import ErrorPublic
from api.streams import LAST_EVENT_ID, journal_stream
from api.timefmt import parse_duration, parse_time
from core.contract import now_ms
from rules.alerts import (
    AlertChange,
    AlertConflict,
    AlertError,
    AlertFilter,
    AlertInputError,
    AlertNotFound,
    AlertStore,
)
from rules.spec import RULE_ID

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

PAGE_MAX = 500
OFFSET_MAX = 10_000_000
NOTE_MAX = 2000
"""A client that takes no data for this long is dropped (it reconnects with Last-Event-ID)."""
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic, "description": text}
    for code, text in (
        (404, "No alert has this id."),
        (409, "The alert is not in a state that allows this; nothing was changed."),
        (422, "The request is incomplete or malformed; nothing was changed."),
        (503, "The alert service is not running."),
    )
}

State = Literal["active", "acknowledged", "resolved", "shelved", "open"]
Severity = Literal["critical", "major", "minor", "warning"]


# ---- what the API answers -------------------------------------------------------------------


class _Public(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)


class TitlePublic(_Public):
    zh: str
    """The rule's title in Chinese."""
    en: str
    """The rule's title in English."""


class AckPublic(_Public):
    by: str | None
    """Who acknowledged it."""
    at: str | None
    """When (RFC 3339, UTC)."""


class ResolutionPublic(_Public):
    by: str | None
    """``system`` when the rule's clear condition resolved it, else the person."""
    at: str | None
    """When (RFC 3339, UTC)."""
    note: str | None
    """Why."""


class ShelfPublic(_Public):
    by: str | None
    """Who shelved it."""
    until: str | None
    """When the shelf expires (RFC 3339, UTC)."""
    reason: str | None
    """Why it is shelved."""


class AlertPublic(_Public):
    id: int
    """The alert's id."""
    rule: str
    """The id of the rule that raised it."""
    kind: str
    """The rule's kind: event, threshold, state_for, rate_of_rise, absence, correlation,
    location."""
    severity: Severity
    """critical, major, minor or warning (a later stage may have raised it)."""
    state: Literal["active", "acknowledged", "resolved", "shelved"]
    """What the console shows: ``shelved`` while shelved, else the lifecycle state."""
    lifecycle: Literal["active", "acknowledged", "resolved"]
    """active → acknowledged → resolved, also while shelved."""
    title: TitlePublic
    """The rule's bilingual title."""
    site: str
    """The site id."""
    subject: str
    """What the alert is about: ``device:<id>`` or ``zone:<id>``; one open alert each."""
    device: str | None
    """The device, for a device alert."""
    zone: str | None
    """The zone the alert is in (for a location alert: where the goods were reported)."""
    count: int
    """How many times the rule fired for this alert."""
    first_seen: str
    """When it was raised (RFC 3339, UTC)."""
    last_seen: str
    """When the rule last fired for it (RFC 3339, UTC)."""
    first_seen_ms: int
    """``first_seen`` in epoch milliseconds."""
    last_seen_ms: int
    """``last_seen`` in epoch milliseconds."""
    condition_active: bool
    """Whether the rule's condition holds now (it may clear underneath a shelved or flapping
    alert, which stays open)."""
    flapping: bool
    """Raised too often within its window: held open and not notified again."""
    escalation_level: int
    """How many times it escalated unacknowledged."""
    acknowledged: AckPublic | None
    """Who acknowledged it and when, or null."""
    resolved: ResolutionPublic | None
    """Who resolved it, when and why, or null."""
    shelved: ShelfPublic | None
    """Who shelved it, until when and why, while shelved; else null."""
    detail: dict[str, Any]
    """What the rule saw (metric and value, devices of a correlation, silence...)."""


class AlertsPublic(_Public):
    items: list[AlertPublic]
    """This page, newest first."""
    total: int
    """How many match the filters, over all pages."""
    limit: int
    """The page size asked for."""
    offset: int
    """How many matches were skipped before this page."""


class JournalEntryPublic(_Public):
    id: int
    """The entry's id; also the SSE event id of the transition."""
    at: str
    """When (RFC 3339, UTC)."""
    at_ms: int
    """``at`` in epoch milliseconds."""
    actor: str
    """``system`` or the person."""
    action: str
    """raised, acknowledged, resolved, shelved, unshelved, escalated, severity, cleared,
    reactivated."""
    from_: str | None = Field(alias="from")
    """The state before (null when raised)."""
    to: str
    """The state after."""
    note: str | None
    """Why: the person's note or reason, or the rule's."""
    detail: dict[str, Any] | None
    """More about the transition (e.g. a shelf's expiry)."""


class AlertDetailPublic(AlertPublic):
    journal: list[JournalEntryPublic]
    """Every transition, oldest first; never edited."""


# ---- what people send -----------------------------------------------------------------------


class NoteBody(Body):
    note: Annotated[str, Field(max_length=NOTE_MAX)] | None = None
    """Optional words for the journal."""

    _clean = field_validator("note")(clean_text)


class ResolveBody(Body):
    note: Annotated[str, Field(min_length=1, max_length=NOTE_MAX)]
    """Why it is resolved (required)."""

    _clean = field_validator("note")(clean_text)


class ShelveBody(Body):
    reason: Annotated[str, Field(min_length=1, max_length=NOTE_MAX)]
    """Why it is shelved (required)."""
    until: Annotated[str, Field(max_length=64)] | None = None
    """When the shelf expires: RFC 3339 with an offset, or epoch milliseconds."""
    for_: Annotated[str | None, Field(alias="for", max_length=32)] = None
    """Or how long: ``30m``, ``2h``, ``1d``, or seconds."""

    _clean = field_validator("reason")(clean_text)

    @model_validator(mode="after")
    def _one_expiry(self) -> ShelveBody:
        if (self.until is None) == (self.for_ is None):
            raise ValueError("give exactly one of 'until' or 'for' (the shelf's expiry)")
        return self

    def until_ms(self) -> int:
        if self.until is not None:
            return parse_time(self.until, "until")
        assert self.for_ is not None
        return now_ms() + parse_duration(self.for_, "for")


# ---- dependencies ---------------------------------------------------------------------------


def get_store(ctx: CtxDep) -> AlertStore:
    store = ctx.extras.get("alerts")
    if not isinstance(store, AlertStore):
        raise HTTPException(503, "the alert service is not running")
    return store


StoreDep = Annotated[AlertStore, Depends(get_store)]


UserDep = CurrentUserName
"""The signed-in caller's name, recorded in the journal (api.auth)."""
AlertId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The alert's id.")]


def _fail(exc: AlertError) -> NoReturn:
    if isinstance(exc, AlertNotFound):
        raise HTTPException(404, str(exc)) from None
    if isinstance(exc, AlertConflict):
        raise HTTPException(409, str(exc)) from None
    if isinstance(exc, AlertInputError):
        raise HTTPException(422, str(exc)) from None
    raise HTTPException(400, str(exc)) from None


# ---- routes ---------------------------------------------------------------------------------


@router.get("", response_model=AlertsPublic, summary="Alerts, a page", responses=ERRORS)
def list_alerts(
    store: StoreDep,
    state: Annotated[
        State | None, Query(description="active, acknowledged, resolved, shelved, or open.")
    ] = None,
    severity: Annotated[Severity | None, Query(description="Only this severity.")] = None,
    zone: Annotated[str | None, Query(pattern=ID, description="Only this zone.")] = None,
    device: Annotated[str | None, Query(pattern=ID, description="Only this device.")] = None,
    rule: Annotated[str | None, Query(pattern=RULE_ID, description="Only this rule.")] = None,
    since: Annotated[
        str | None,
        Query(max_length=64, description="Open at or after this time (RFC 3339 or epoch ms)."),
    ] = None,
    until: Annotated[
        str | None,
        Query(max_length=64, description="Raised before this time (RFC 3339 or epoch ms)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Alerts to skip.")] = 0,
) -> AlertsPublic:
    """Newest first; ``total`` counts every match of the filters."""
    since_ms, until_ms = query_time(since, "since"), query_time(until, "until")
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise HTTPException(422, "since must be before until")
    where = AlertFilter(state, severity, zone, device, rule, since_ms, until_ms)
    items, total = store.query(where, limit, offset)
    return AlertsPublic.model_validate(
        {"items": items, "total": total, "limit": limit, "offset": offset}
    )


@router.get("/stream", summary="Every alert transition, live (SSE)", responses=ERRORS)
async def stream(
    store: StoreDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=LAST_EVENT_ID,
            description="Resume: transitions journaled after this id are sent first.",
        ),
    ] = None,
) -> EventSourceResponse:
    """Server-sent events in commit order: ``alert`` events whose data is the transition
    (``seq``, ``action``, ``actor``, ``from``, ``to``, ``note``, ``notify``, and the ``alert``
    as ``GET /api/v1/alerts/{id}`` shows it). A journaled transition's ``seq`` is the event
    id; a repeat (count up) has none. ``resync`` tells a client that fell too far behind to
    reload the list."""
    return journal_stream(store, last_event_id, "alerts", _event)


def _event(change: AlertChange) -> ServerSentEvent:
    data = orjson.dumps(change.to_json()).decode()
    return ServerSentEvent(
        data=data, event="alert", id=str(change.seq) if change.seq is not None else None
    )


@router.get(
    "/{alert_id}",
    response_model=AlertDetailPublic,
    response_model_by_alias=True,
    summary="One alert with its journal",
    responses=ERRORS,
)
def get_alert(store: StoreDep, alert_id: AlertId) -> AlertDetailPublic:
    """The alert and every transition it went through, oldest first."""
    try:
        return AlertDetailPublic.model_validate(store.get(alert_id))
    except AlertError as exc:
        _fail(exc)


@router.post("/{alert_id}/ack", response_model=AlertPublic, summary="Acknowledge", responses=ERRORS)
def acknowledge(
    store: StoreDep, user: UserDep, alert_id: AlertId, body: NoteBody | None = None
) -> AlertPublic:
    """An active alert becomes acknowledged by the acting user (an optional ``note``)."""
    try:
        return AlertPublic.model_validate(
            store.acknowledge(alert_id, user, body.note if body else None)
        )
    except AlertError as exc:
        _fail(exc)


@router.post("/{alert_id}/resolve", response_model=AlertPublic, summary="Resolve", responses=ERRORS)
def resolve(store: StoreDep, user: UserDep, alert_id: AlertId, body: ResolveBody) -> AlertPublic:
    """Resolve by hand, with a required ``note``. If the rule's condition still holds, the
    rule raises a new alert after its ``for``."""
    try:
        return AlertPublic.model_validate(store.resolve(alert_id, user, body.note))
    except AlertError as exc:
        _fail(exc)


@router.post("/{alert_id}/shelve", response_model=AlertPublic, summary="Shelve", responses=ERRORS)
def shelve(store: StoreDep, user: UserDep, alert_id: AlertId, body: ShelveBody) -> AlertPublic:
    """Silence notifications until an expiry (``until`` or ``for``), with a required
    ``reason``. What happens underneath is still recorded; when the shelf ends, an alert whose
    condition cleared meanwhile is resolved."""
    try:
        until = body.until_ms()
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        return AlertPublic.model_validate(store.shelve(alert_id, user, body.reason, until))
    except AlertError as exc:
        _fail(exc)


@router.post(
    "/{alert_id}/unshelve", response_model=AlertPublic, summary="Unshelve", responses=ERRORS
)
def unshelve(
    store: StoreDep, user: UserDep, alert_id: AlertId, body: NoteBody | None = None
) -> AlertPublic:
    """End a shelf early (an optional ``note``)."""
    try:
        return AlertPublic.model_validate(
            store.unshelve(alert_id, user, body.note if body else None)
        )
    except AlertError as exc:
        _fail(exc)

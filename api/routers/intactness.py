"""``/api/v1/intactness``: the intactness figure (clause 5.5.4: 100 % of fire facilities in use
intact) now, over a period, and for one device; and taking a device out of service and back.

The definition is compliance.intactness's (README, "Intactness"). The acting user recorded with
each out-of-service record is the signed-in caller (api.auth).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import NOT_FOUND, CtxDep, CurrentUserName, DeviceDep, SessionDep
from api.inputs import Body, query_time
from api.schemas import ErrorPublic
from api.timefmt import parse_duration, to_rfc3339
from compliance import out_of_service as oos
from compliance.history import MAX_SAMPLES, device_timeline, period_figure
from compliance.intactness import (
    REASONS,
    TARGET_PERCENT,
    Standing,
    Tally,
    current_figure,
    figure_at,
    out_of_service_at,
    percent,
    places,
    reasons_at,
    refresh,
)
from compliance.timeline import DeviceInfo, OutOfServiceStretch, ScrapDate, Stretch, gather
from core.catalogue import Catalogue
from core.contract import now_ms
from core.models_compliance import OutOfService
from maintenance.service_dates import dates_from_register

router = APIRouter(prefix="/api/v1/intactness", tags=["intactness"])

MINUTE_MS = 60_000
DAY_MS = 86_400_000
PERIOD_MAX_MS = 400 * DAY_MS
STEP_MIN_MS = MINUTE_MS
STEPS_MS = (MINUTE_MS, 5 * MINUTE_MS, 15 * MINUTE_MS, 3_600_000, 6 * 3_600_000, DAY_MS, 7 * DAY_MS)
DEFAULT_PERIOD_MS = 30 * DAY_MS
DEFAULT_DEVICE_WINDOW_MS = 7 * DAY_MS
PAGE_MAX = 20_000
TEXT_MAX = 2000
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic, "description": text}
    for code, text in (
        (404, "No device has this id."),
        (409, "The device is not in a state that allows this; nothing was changed."),
        (422, "The request is incomplete or malformed; nothing was changed."),
    )
}
DEFINITION = (
    "In scope: every device of a fire-facility category of the catalogue, from its "
    "in_service_date, unless taken out of service on purpose (listed apart with who and why). "
    "Intact at an instant when none of these holds: "
    + " ".join(f"{code}: {text}" for code, text in REASONS.items())
    + " Figure: intact / in scope; the target is 100 %. See README, 'Intactness'."
)


class _ExtinguisherScrapDates:
    """An extinguisher's scrap date by GB 50444-2008 T.5.4.3 from its register entry (raises
    ValueError when the entry cannot tell it); no other type has a scrap age."""

    types = frozenset({"extinguisher"})

    def __call__(self, attributes: dict[str, Any], /) -> date:
        return dates_from_register(attributes).scrap_date


register_scrap_date: ScrapDate = _ExtinguisherScrapDates()


# ---- what the API answers -------------------------------------------------------------------


class _Public(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)


class ReasonPublic(_Public):
    code: str
    """Why the device is not intact: offline, fault, tamper, removed, discharged, blocked,
    disabled, out_of_band, shelved, inspection_overdue, service_overdue, scrap_overdue,
    inspection_failed, work_order_open, past_scrap_date or scrap_date_unknown (README,
    'Intactness')."""
    since: str | None
    """When it began (RFC 3339, UTC); null when it began before anything was recorded (a
    device never heard from, a register that cannot tell its scrap date)."""
    since_ms: int | None
    """The same instant in epoch milliseconds."""
    source: str
    """Where the record comes from: presence, event, value, alert, maintenance or register."""
    detail: dict[str, Any]
    """The evidence: the metric and its value and band, the event, the alert, the task or work
    order, the scrap date."""


class NonIntactPublic(_Public):
    device_id: str
    """The device's id."""
    label: str
    """Its label in the register."""
    type: str
    """Its device type."""
    category: str
    """Its fire-facility category."""
    zone_id: str
    """The zone it is installed in."""
    building_id: str | None
    """The building of its zone; null outdoors."""
    since: str | None
    """Not intact since at least then: when the longest-standing of its reasons began."""
    since_ms: int | None
    """The same instant in epoch milliseconds."""
    reasons: list[ReasonPublic]
    """Every reason that holds now, longest-standing first."""


class TallyPublic(_Public):
    in_scope: int
    """Devices counted: in service and not taken out of service."""
    intact: int
    """Of those, the intact ones."""
    not_intact: int
    """Of those, the ones that are not intact."""
    ratio: float | None
    """intact / in_scope; null when nothing is in scope."""
    percent: float | None
    """100 × ratio, rounded to 4 decimals; null when nothing is in scope."""
    meets_target: bool | None
    """Whether the percentage is the 100 % target; null when nothing is in scope."""


class CategoryTallyPublic(TallyPublic):
    category: str
    """The fire-facility category code."""
    name_zh: str
    """Its Chinese name."""
    name_en: str
    """Its English name."""


class BuildingTallyPublic(TallyPublic):
    building_id: str | None
    """The building; null for devices in outdoor zones."""
    name_zh: str | None
    """Its Chinese name; null outdoors."""
    name_en: str | None
    """Its English name; null outdoors."""


class ZoneTallyPublic(TallyPublic):
    zone_id: str
    """The zone."""
    building_id: str | None
    """Its building; null outdoors."""
    name_zh: str | None
    """Its Chinese name."""
    name_en: str | None
    """Its English name."""


class OutOfServicePublic(_Public):
    id: int
    """The out-of-service record's id."""
    device_id: str
    """The device."""
    since: str
    """When it was taken out of service (RFC 3339, UTC)."""
    since_ms: int
    """The same instant in epoch milliseconds."""
    taken_by: str
    """Who took it out."""
    reason: str
    """Why."""
    expected_back: str | None
    """When it is expected back in service, if said."""
    until: str | None
    """When it was put back; null while it is out."""
    until_ms: int | None
    """The same instant in epoch milliseconds."""
    returned_by: str | None
    """Who put it back."""
    return_note: str | None
    """Their note."""


class OutOfServiceDevicePublic(OutOfServicePublic):
    label: str
    """The device's label in the register."""
    type: str
    """Its device type."""
    category: str
    """Its fire-facility category."""
    zone_id: str
    """Its zone."""


class IntactnessPublic(_Public):
    at: str
    """The instant of the figure (RFC 3339, UTC)."""
    at_ms: int
    """The same instant in epoch milliseconds."""
    definition: str
    """What the figure counts, in short (README, 'Intactness', says it in full)."""
    target_percent: int
    """The target: clause 5.5.4 asks 100 % of the fire facilities in use to be intact."""
    overall_percent: float | None
    """The park's intactness now, in percent (4 decimals); null when nothing is in scope."""
    overall: TallyPublic
    """The park as a whole."""
    by_category: list[CategoryTallyPublic]
    """Per fire-facility category, by category code."""
    by_building: list[BuildingTallyPublic]
    """Per building (null: outdoor zones), by id."""
    by_zone: list[ZoneTallyPublic]
    """Per zone, by id."""
    non_intact_total: int
    """How many devices in scope are not intact."""
    non_intact: list[NonIntactPublic]
    """This page of them, longest-standing first."""
    limit: int
    """The page size asked for."""
    offset: int
    """How many were skipped before this page."""
    out_of_service: list[OutOfServiceDevicePublic]
    """Devices taken out of service on purpose: not counted, listed with who and why."""
    not_yet_in_service: list[str]
    """Devices whose register in_service_date is still to come: not counted yet."""
    not_classified: list[str]
    """Devices whose type the catalogue does not know (no category): not counted; fix the
    register or the catalogue."""


class TimeTallyPublic(_Public):
    scope_minutes: float
    """Device-minutes in scope (in service and not taken out of service)."""
    intact_minutes: float
    """Of those, device-minutes intact."""
    not_intact_minutes: float
    """Of those, device-minutes not intact."""
    ratio: float | None
    """intact_minutes / scope_minutes; null when nothing was in scope."""
    percent: float | None
    """100 × ratio, rounded to 4 decimals; null when nothing was in scope."""
    meets_target: bool | None
    """Whether it is the 100 % target; null when nothing was in scope."""


class CategoryTimePublic(TimeTallyPublic):
    category: str
    """The fire-facility category code."""
    name_zh: str
    """Its Chinese name."""
    name_en: str
    """Its English name."""


class OnlineRatePublic(_Public):
    scope_minutes: float
    """Device-minutes in scope."""
    online_minutes: float
    """Of those, device-minutes reporting (online, or within one heartbeat window of its type
    after presence became unknown)."""
    percent: float | None
    """The IoT online rate: 100 × online / scope, rounded to 4 decimals."""


class OutagePublic(_Public):
    device_id: str
    """The device."""
    label: str
    """Its label in the register."""
    category: str
    """Its fire-facility category."""
    zone_id: str
    """Its zone."""
    start: str | None
    """When the outage (not intact, for any reason) began, possibly before the period; null
    when that was before anything was recorded."""
    start_ms: int | None
    """The same instant in epoch milliseconds."""
    end: str | None
    """When it was restored; null when not restored by the end of the period."""
    end_ms: int | None
    """The same instant in epoch milliseconds."""
    minutes_in_period: float
    """Its device-minutes inside the period (while in scope)."""
    reasons: list[str]
    """The reasons that held during it."""


class SamplePublic(_Public):
    at: str
    """The instant (RFC 3339, UTC)."""
    at_ms: int
    """The same instant in epoch milliseconds."""
    in_scope: int
    """Devices in scope at that instant."""
    intact: int
    """Of those, the intact ones."""
    percent: float | None
    """100 × intact / in_scope at that instant; null when nothing was in scope."""


class IntactnessHistoryPublic(_Public):
    start: str
    """The period's start, included (RFC 3339, UTC)."""
    start_ms: int
    """The same instant in epoch milliseconds."""
    end: str
    """The period's end, excluded: the requested end, cut to as_of."""
    end_ms: int
    """The same instant in epoch milliseconds."""
    as_of: str
    """Only what was recorded by then is used; pass it again to get the same figures."""
    as_of_ms: int
    """The same instant in epoch milliseconds."""
    step_ms: int
    """The spacing of the series' samples."""
    target_percent: int
    """The target: 100 %."""
    overall_percent: float | None
    """Time-weighted intactness: device-minutes intact / device-minutes in scope, in percent."""
    overall: TimeTallyPublic
    """The park as a whole, time-weighted."""
    by_category: list[CategoryTimePublic]
    """Per fire-facility category, time-weighted."""
    online_rate: OnlineRatePublic
    """The IoT online rate over the period."""
    devices_counted: int
    """Devices in scope at some time in the period."""
    restored_outages: int
    """Outages (a device not intact, for any reason) that ended inside the period."""
    not_restored_outages: int
    """Outages still lasting at the end of the period."""
    mean_time_to_restore_minutes: float | None
    """The mean length of the restored outages, from when each began; null when none was
    restored."""
    longest_outages: list[OutagePublic]
    """The longest outages by their time inside the period, longest first."""
    series: list[SamplePublic]
    """The point-in-time figure at start, start + step, ... (for a chart)."""


class StretchPublic(_Public):
    reason: str
    """The reason code (README, 'Intactness')."""
    source: str
    """presence, event, value, alert, maintenance or register."""
    start: str | None
    """When it began; null: before anything was recorded."""
    start_ms: int | None
    """The same instant in epoch milliseconds."""
    end: str | None
    """When it ended; null while it lasts."""
    end_ms: int | None
    """The same instant in epoch milliseconds."""
    detail: dict[str, Any]
    """The evidence."""


class IntervalPublic(_Public):
    start: str
    """Start, included (RFC 3339, UTC)."""
    start_ms: int
    """The same instant in epoch milliseconds."""
    end: str
    """End, excluded."""
    end_ms: int
    """The same instant in epoch milliseconds."""


class DeviceIntactnessPublic(_Public):
    device_id: str
    """The device."""
    label: str
    """Its label in the register."""
    type: str
    """Its device type."""
    category: str | None
    """Its fire-facility category; null when the catalogue does not know its type."""
    zone_id: str
    """Its zone."""
    at: str
    """The instant of ``status`` and ``reasons`` (now)."""
    at_ms: int
    """The same instant in epoch milliseconds."""
    status: Literal[
        "intact", "not_intact", "out_of_service", "not_yet_in_service", "not_classified"
    ]
    """Now: intact, not_intact, out_of_service (not counted), not_yet_in_service (its register
    date is to come) or not_classified (type unknown to the catalogue)."""
    reasons: list[ReasonPublic]
    """Why it is not intact now (empty when intact)."""
    out_of_service: OutOfServicePublic | None
    """Its open out-of-service record, if it is out of service."""
    start: str
    """The window shown below: start, included."""
    start_ms: int
    """The same instant in epoch milliseconds."""
    end: str
    """The window's end, excluded (at most now)."""
    end_ms: int
    """The same instant in epoch milliseconds."""
    window: TimeTallyPublic | None
    """Its time-weighted intactness in the window; null when not classified."""
    not_intact: list[IntervalPublic]
    """When it was not intact in the window (while in scope), merged."""
    stretches: list[StretchPublic]
    """Each reason with when it began and ended, for every reason that touched the window."""
    out_of_service_records: list[OutOfServicePublic]
    """Its out-of-service records, newest first (at most 100)."""


# ---- what people send -----------------------------------------------------------------------


class TakeOutBody(Body):
    reason: Annotated[str, Field(min_length=1, max_length=TEXT_MAX)]
    """Why the device is taken out of service (required; shown wherever the figure is)."""
    expected_back: Annotated[str, Field(max_length=64)] | None = None
    """When it is expected back: RFC 3339 with an offset, or epoch ms; in the future."""


class PutBackBody(Body):
    note: Annotated[str, Field(max_length=TEXT_MAX)] | None = None
    """What was done (optional)."""


# ---- dependencies ---------------------------------------------------------------------------


UserDep = CurrentUserName
"""The signed-in caller's name, recorded with each out-of-service record (api.auth)."""


def _window(
    start: str | None, end: str | None, as_of: str | None, default_span: int
) -> tuple[int, int, int]:
    now = now_ms()
    as_of_ms = query_time(as_of, "as_of")
    if as_of_ms is None:
        as_of_ms = now
    elif as_of_ms > now:
        raise HTTPException(422, "as_of must not be in the future")
    end_ms = query_time(end, "end")
    end_ms = as_of_ms if end_ms is None else min(end_ms, as_of_ms)
    start_ms = query_time(start, "start")
    if start_ms is None:
        start_ms = max(end_ms - default_span, 0)
    if start_ms >= end_ms:
        raise HTTPException(
            422,
            f"start ({to_rfc3339(start_ms)}) must be before end ({to_rfc3339(end_ms)}; "
            "an end after as_of, now by default, is cut to it)",
        )
    if end_ms - start_ms > PERIOD_MAX_MS:
        raise HTTPException(422, f"the period may be at most {PERIOD_MAX_MS // DAY_MS} days")
    return start_ms, end_ms, as_of_ms


def _step(step: str | None, start_ms: int, end_ms: int) -> int:
    span = end_ms - start_ms
    if step is None:
        return next((s for s in STEPS_MS if span / s <= 1000), STEPS_MS[-1])
    try:
        step_ms = parse_duration(step, "step")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if step_ms < STEP_MIN_MS:
        raise HTTPException(422, "step must be at least 1m")
    if step_ms > span:
        raise HTTPException(422, "step must not be longer than the period")
    if -(-span // step_ms) > MAX_SAMPLES:
        raise HTTPException(
            422,
            f"step={step[:32]} would make more than {MAX_SAMPLES} samples: choose a longer step "
            "or a shorter period",
        )
    return step_ms


def _fail(exc: oos.OutOfServiceError) -> NoReturn:
    if isinstance(exc, oos.NotFound):
        raise HTTPException(404, str(exc)) from None
    if isinstance(exc, oos.Conflict):
        raise HTTPException(409, str(exc)) from None
    raise HTTPException(422, str(exc)) from None


# ---- shaping ----------------------------------------------------------------------------------


def _iso(ms: int | None) -> str | None:
    return to_rfc3339(ms) if ms is not None else None


def _minutes(ms: int) -> float:
    return round(ms / MINUTE_MS, 3)


def _tally(tally: Tally) -> dict[str, Any]:
    return {
        "in_scope": tally.in_scope,
        "intact": tally.intact,
        "not_intact": tally.in_scope - tally.intact,
        "ratio": tally.ratio,
        "percent": tally.percent,
        "meets_target": None if not tally.in_scope else tally.intact == tally.in_scope,
    }


def _time_tally(scope_ms: int, intact_ms: int) -> dict[str, Any]:
    return {
        "scope_minutes": _minutes(scope_ms),
        "intact_minutes": _minutes(intact_ms),
        "not_intact_minutes": _minutes(scope_ms - intact_ms),
        "ratio": intact_ms / scope_ms if scope_ms else None,
        "percent": percent(intact_ms, scope_ms),
        "meets_target": None if not scope_ms else intact_ms == scope_ms,
    }


def _reasons(standing: Standing) -> list[ReasonPublic]:
    return [
        ReasonPublic(
            code=r.code,
            since=_iso(r.since_ms),
            since_ms=r.since_ms,
            source=r.source,
            detail=r.detail,
        )
        for r in standing.reasons
    ]


def _oos(record: OutOfServiceStretch | OutOfService) -> dict[str, Any]:
    return {
        "id": record.id,
        "device_id": record.device_id,
        "since": to_rfc3339(record.since_ms),
        "since_ms": record.since_ms,
        "taken_by": record.taken_by,
        "reason": record.reason,
        "expected_back": _iso(record.expected_back_ms),
        "until": _iso(record.until_ms),
        "until_ms": record.until_ms,
        "returned_by": record.returned_by,
        "return_note": record.return_note,
    }


def _device_fields(device: DeviceInfo) -> dict[str, Any]:
    return {
        "device_id": device.id,
        "label": device.label,
        "type": device.type,
        "category": device.category,
        "zone_id": device.zone_id,
    }


def _category_names(catalogue: Catalogue, code: str) -> dict[str, Any]:
    known = catalogue.categories.get(code)
    return {"name_zh": known.zh if known else code, "name_en": known.en if known else code}


# ---- routes ---------------------------------------------------------------------------------


@router.get(
    "",
    response_model=IntactnessPublic,
    summary="Intactness now: overall, per category, building and zone, and every device that "
    "is not intact with its reasons",
    responses={422: ERRORS[422]},
)
def get_intactness(
    ctx: CtxDep,
    session: SessionDep,
    limit: Annotated[
        int, Query(ge=1, le=PAGE_MAX, description="At most this many non-intact devices.")
    ] = 1000,
    offset: Annotated[
        int, Query(ge=0, le=10_000_000, description="Non-intact devices to skip.")
    ] = 0,
) -> IntactnessPublic:
    """The figure now, after bringing the condition log up to date. A device counts from its
    register in_service_date unless it is out of service; it is intact when no reason holds
    (README, 'Intactness')."""
    at = now_ms()
    figure = current_figure(session, ctx.catalogue, at, scrap_date=register_scrap_date)
    zones, buildings = places(session)
    return IntactnessPublic(
        at=to_rfc3339(at),
        at_ms=at,
        definition=DEFINITION,
        target_percent=TARGET_PERCENT,
        overall_percent=figure.overall.percent,
        overall=TallyPublic(**_tally(figure.overall)),
        by_category=[
            CategoryTallyPublic(
                category=code, **_category_names(ctx.catalogue, code), **_tally(tally)
            )
            for code, tally in sorted(figure.by_category.items())
        ],
        by_building=[
            BuildingTallyPublic(
                building_id=building,
                name_zh=buildings[building].name_zh if building in buildings else None,
                name_en=buildings[building].name_en if building in buildings else None,
                **_tally(tally),
            )
            for building, tally in sorted(figure.by_building.items(), key=lambda i: i[0] or "")
        ],
        by_zone=[
            ZoneTallyPublic(
                zone_id=zone,
                building_id=zones[zone].building_id if zone in zones else None,
                name_zh=zones[zone].name_zh if zone in zones else None,
                name_en=zones[zone].name_en if zone in zones else None,
                **_tally(tally),
            )
            for zone, tally in sorted(figure.by_zone.items())
        ],
        non_intact_total=len(figure.non_intact),
        non_intact=[
            NonIntactPublic(
                **_device_fields(s.device),
                building_id=s.device.building_id,
                since=_iso(s.since_ms),
                since_ms=s.since_ms,
                reasons=_reasons(s),
            )
            for s in figure.non_intact[offset : offset + limit]
        ],
        limit=limit,
        offset=offset,
        out_of_service=[
            OutOfServiceDevicePublic(**{**_oos(e.record), **_device_fields(e.device)})
            for e in figure.out_of_service
        ],
        not_yet_in_service=[d.id for d in figure.not_yet_in_service],
        not_classified=figure.unknown_type,
    )


@router.get(
    "/history",
    response_model=IntactnessHistoryPublic,
    summary="Intactness over a period: time-weighted, as a series, IoT online rate, mean time "
    "to restore, longest outages",
    responses={422: ERRORS[422]},
)
def get_history(
    ctx: CtxDep,
    session: SessionDep,
    start: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Period start (included): RFC 3339 with an offset, or epoch ms. "
            "Default: 30 days before end.",
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Period end (excluded): RFC 3339 with an offset, or epoch ms. Default "
            "and latest: as_of.",
        ),
    ] = None,
    step: Annotated[
        str | None,
        Query(
            max_length=32,
            description="Spacing of the series: 1m at least, e.g. 15m, 1h, 1d, or seconds; at "
            f"most {MAX_SAMPLES} samples. Default: the shortest of 1m, 5m, 15m, 1h, 6h, 1d, 7d "
            "giving at most 1000.",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Use only what was recorded by this instant (default: now). Giving the "
            "as_of of an earlier answer reproduces it exactly.",
        ),
    ] = None,
    longest: Annotated[
        int, Query(ge=0, le=1000, description="How many of the longest outages to list.")
    ] = 10,
) -> IntactnessHistoryPublic:
    """Device-minutes intact over device-minutes in scope in [start, end), computed from the
    stored record (presence changes, the condition log, alerts and their journal, inspection
    tasks, work orders, the register, out-of-service records) as it stood at ``as_of``."""
    start_ms, end_ms, as_of_ms = _window(start, end, as_of, DEFAULT_PERIOD_MS)
    step_ms = _step(step, start_ms, end_ms)
    if as_of is None:
        refresh(session, ctx.catalogue, as_of_ms)
    figure = period_figure(
        session,
        ctx.catalogue,
        start_ms,
        end_ms,
        as_of_ms,
        step_ms,
        scrap_date=register_scrap_date,
        longest=longest,
    )
    mttr = figure.mean_time_to_restore_ms
    return IntactnessHistoryPublic(
        start=to_rfc3339(start_ms),
        start_ms=start_ms,
        end=to_rfc3339(end_ms),
        end_ms=end_ms,
        as_of=to_rfc3339(as_of_ms),
        as_of_ms=as_of_ms,
        step_ms=step_ms,
        target_percent=TARGET_PERCENT,
        overall_percent=figure.overall.percent,
        overall=TimeTallyPublic(**_time_tally(figure.overall.scope_ms, figure.overall.intact_ms)),
        by_category=[
            CategoryTimePublic(
                category=code,
                **_category_names(ctx.catalogue, code),
                **_time_tally(t.scope_ms, t.intact_ms),
            )
            for code, t in sorted(figure.by_category.items())
        ],
        online_rate=OnlineRatePublic(
            scope_minutes=_minutes(figure.online.scope_ms),
            online_minutes=_minutes(figure.online.intact_ms),
            percent=figure.online.percent,
        ),
        devices_counted=figure.devices_counted,
        restored_outages=figure.restored,
        not_restored_outages=figure.not_restored,
        mean_time_to_restore_minutes=round(mttr / MINUTE_MS, 3) if mttr is not None else None,
        longest_outages=[
            OutagePublic(
                device_id=o.device.id,
                label=o.device.label,
                category=o.device.category,
                zone_id=o.device.zone_id,
                start=_iso(o.start_ms),
                start_ms=o.start_ms,
                end=_iso(o.end_ms),
                end_ms=o.end_ms,
                minutes_in_period=_minutes(o.in_period_ms),
                reasons=list(o.reasons),
            )
            for o in figure.longest
        ],
        series=[
            SamplePublic(
                at=to_rfc3339(s.at_ms),
                at_ms=s.at_ms,
                in_scope=s.in_scope,
                intact=s.intact,
                percent=s.percent,
            )
            for s in figure.series
        ],
    )


@router.get(
    "/devices/{device_id}",
    response_model=DeviceIntactnessPublic,
    summary="One device: intact now or why not, and its reasons and intervals over a window",
    responses={**NOT_FOUND, 422: ERRORS[422]},
)
def get_device(
    ctx: CtxDep,
    session: SessionDep,
    device: DeviceDep,
    start: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Window start (included): RFC 3339 with an offset, or epoch ms. "
            "Default: 7 days before end.",
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Window end (excluded): RFC 3339 or epoch ms. Default and latest: now.",
        ),
    ] = None,
) -> DeviceIntactnessPublic:
    """Its standing now, and every stretch of every reason in the window with when it began and
    ended, as the figures count them."""
    start_ms, end_ms, _as_of = _window(start, end, None, DEFAULT_DEVICE_WINDOW_MS)
    at = now_ms()
    refresh(session, ctx.catalogue, at)
    ids = [device.id]
    now_record = gather(
        session,
        ctx.catalogue,
        at,
        at + 1,
        at,
        scrap_date=register_scrap_date,
        device_ids=ids,
        live=True,
    )
    record = gather(
        session,
        ctx.catalogue,
        start_ms,
        end_ms,
        at,
        scrap_date=register_scrap_date,
        device_ids=ids,
    )
    records = [OutOfServicePublic(**_oos(r)) for r in oos.history(session, device.id)]
    common: dict[str, Any] = {
        "device_id": device.id,
        "label": device.label,
        "type": device.type,
        "zone_id": device.zone_id,
        "at": to_rfc3339(at),
        "at_ms": at,
        "start": to_rfc3339(start_ms),
        "start_ms": start_ms,
        "end": to_rfc3339(end_ms),
        "end_ms": end_ms,
        "out_of_service_records": records,
    }
    if not now_record.devices:
        return DeviceIntactnessPublic(
            **common,
            category=None,
            status="not_classified",
            reasons=[],
            out_of_service=None,
            window=None,
            not_intact=[],
            stretches=[],
        )
    info = now_record.devices[device.id]
    figure = figure_at(now_record, at)
    out = out_of_service_at(now_record, info.id, at)
    status: Literal["intact", "not_intact", "out_of_service", "not_yet_in_service"]
    reasons: list[ReasonPublic] = []
    if figure.not_yet_in_service:
        status = "not_yet_in_service"
    elif out is not None:
        status = "out_of_service"
    elif figure.non_intact:
        status = "not_intact"
        reasons = _reasons(figure.non_intact[0])
    else:
        status = "intact"
    if status != "not_intact":  # still show what holds, for a device not counted now
        held = reasons_at(now_record.stretches.get(info.id, []), at)
        reasons = _reasons(Standing(info, held))
    timeline = device_timeline(info, record)
    tally = timeline.tally
    return DeviceIntactnessPublic(
        **common,
        category=info.category,
        status=status,
        reasons=reasons,
        out_of_service=OutOfServicePublic(**_oos(out)) if out is not None else None,
        window=TimeTallyPublic(**_time_tally(tally.scope_ms, tally.intact_ms)),
        not_intact=[
            IntervalPublic(start=to_rfc3339(a), start_ms=a, end=to_rfc3339(b), end_ms=b)
            for a, b in timeline.not_intact
        ],
        stretches=[_stretch(s) for s in sorted(timeline.stretches, key=_stretch_order)],
    )


def _stretch_order(s: Stretch) -> tuple[bool, int, str]:
    return (s.start_ms is not None, s.start_ms or 0, s.reason)


def _stretch(s: Stretch) -> StretchPublic:
    return StretchPublic(
        reason=s.reason,
        source=s.source,
        start=_iso(s.start_ms),
        start_ms=s.start_ms,
        end=_iso(s.end_ms),
        end_ms=s.end_ms,
        detail=s.detail,
    )


@router.post(
    "/devices/{device_id}/out-of-service",
    response_model=OutOfServicePublic,
    status_code=201,
    summary="Take a device out of service on purpose, saying why",
    responses=ERRORS,
)
def take_out_of_service(
    session: SessionDep, device: DeviceDep, body: TakeOutBody, user: UserDep
) -> OutOfServicePublic:
    """From now the device is not counted in the intactness figure; it is listed apart with
    who took it out and why until it is put back. A device already out answers 409."""
    expected = query_time(body.expected_back, "expected_back")
    try:
        record = oos.take_out(
            session,
            device.id,
            by=user,
            reason=body.reason,
            now_ms=now_ms(),
            expected_back_ms=expected,
        )
    except oos.OutOfServiceError as exc:
        _fail(exc)
    session.commit()
    return OutOfServicePublic(**_oos(record))


@router.post(
    "/devices/{device_id}/back-in-service",
    response_model=OutOfServicePublic,
    summary="Put a device back in service",
    responses=ERRORS,
)
def put_back_in_service(
    session: SessionDep, device: DeviceDep, body: PutBackBody, user: UserDep
) -> OutOfServicePublic:
    """Close the device's out-of-service record: from now it counts again. A device that is
    not out of service answers 409."""
    try:
        record = oos.put_back(session, device.id, by=user, note=body.note, now_ms=now_ms())
    except oos.OutOfServiceError as exc:
        _fail(exc)
    session.commit()
    return OutOfServicePublic(**_oos(record))

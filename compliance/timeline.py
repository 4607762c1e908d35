"""The stored record of a window of time, read as stretches: when each device was not intact,
and why. Both figures (compliance.intactness for now, compliance.history for a period) read the
record through ``gather``, so the figure for an instant is the same whichever asks.

A stretch is one reason over ``[start_ms, end_ms)``: ``start_ms`` None means "before anything
was recorded", ``end_ms`` None "still so, as far as the record knew at ``as_of``". Every source
is filtered by when its rows were recorded (``as_of``): a figure computed as of a past moment
ignores everything recorded after it, so it comes out the same however often it is recomputed.

Sources, each read with a handful of set-based queries (no query per device):

=====================  ==========================================================================
presence_changes       ``offline`` while offline; while ``unknown`` (collector starting, broker
                       lost) a device that was online just before still counts as reporting for
                       one heartbeat window of its type, then ``offline``; never heard: offline
condition_spans        ``fault``, ``tamper``, ``removed``, ``discharged``, ``blocked``,
                       ``disabled``, ``out_of_band`` (compliance.conditions); sticky ones end at
                       the first passed task or closed work order of the device after they began
alerts + journal       ``shelved`` while an alert on the device is shelved
inspection_tasks       ``inspection_overdue`` / ``service_overdue`` / ``scrap_overdue`` from the
                       due time until the completion is recorded
work_orders            ``inspection_failed`` (opened by a failed inspection) or
                       ``work_order_open``, from opening until closing
register               ``past_scrap_date`` from the local midnight of the scrap date;
                       ``scrap_date_unknown`` when the register cannot tell it
out_of_service         not a reason: the device is out of scope, and listed apart
=====================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, aliased

from compliance.conditions import FAMILIES, sticky
from core.catalogue import Catalogue
from core.models import Device, PresenceChange, Site, Zone
from core.models_alerts import Alert, AlertJournal
from core.models_compliance import ConditionSpan, OutOfService
from core.models_maintenance import InspectionTask, WorkOrder

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_SHELF_MS = 366 * 86_400_000
"""The longest shelf the rules allow (rules.spec caps durations at 366 days): a shelf recorded
longer than this before a window cannot reach into it."""
DEFAULT_TZ = "Asia/Shanghai"
CHUNK = 5000

ScrapDate = Callable[[str, dict[str, Any]], date | None]
"""The day a device reaches its scrap age, from its type and register attributes; None when no
scrap age applies to the type. Raises ValueError when the register cannot tell (for
extinguishers: ``maintenance.service_dates.dates_from_register``, handed in by the caller so
that compliance depends on core only)."""


def no_scrap_dates(_type: str, _attributes: dict[str, Any]) -> date | None:
    return None


@dataclass(frozen=True, slots=True)
class Stretch:
    reason: str
    start_ms: int | None
    end_ms: int | None
    source: str
    detail: dict[str, Any] = field(default_factory=dict)

    def covers(self, at_ms: int) -> bool:
        return (self.start_ms is None or self.start_ms <= at_ms) and (
            self.end_ms is None or at_ms < self.end_ms
        )

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        return (self.start_ms is None or self.start_ms < end_ms) and (
            self.end_ms is None or self.end_ms > start_ms
        )


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    site_id: str
    type: str
    category: str
    zone_id: str
    building_id: str | None
    label: str
    in_service_ms: int | None
    """When it entered service (local midnight of the register's date), None if not given."""
    heartbeat_ms: int


@dataclass(frozen=True, slots=True)
class OutOfServiceStretch:
    id: int
    device_id: str
    since_ms: int
    until_ms: int | None
    taken_by: str
    reason: str
    expected_back_ms: int | None
    returned_by: str | None
    return_note: str | None


@dataclass(slots=True)
class Record:
    start_ms: int
    end_ms: int
    as_of_ms: int
    devices: list[DeviceInfo]
    unknown_type: list[str]
    """Devices whose type is not in the catalogue: no category, so not counted; listed."""
    stretches: dict[str, list[Stretch]]
    out_of_service: dict[str, list[OutOfServiceStretch]]


def gather(
    session: Session,
    catalogue: Catalogue,
    start_ms: int,
    end_ms: int,
    as_of_ms: int,
    *,
    scrap_date: ScrapDate = no_scrap_dates,
    device_ids: Sequence[str] | None = None,
) -> Record:
    """Everything recorded by ``as_of_ms`` that bears on ``[start_ms, end_ms)``."""
    if not start_ms < end_ms:
        raise ValueError("the window must start before it ends")
    ids = list(device_ids) if device_ids is not None else None
    tz = _site_zones(session)
    devices, unknown = _devices(session, catalogue, tz, ids)
    by_id = {d.id: d for d in devices}
    stretches: dict[str, list[Stretch]] = {d.id: [] for d in devices}

    def add(found: Iterable[tuple[str, Stretch]]) -> None:
        for device_id, stretch in found:
            if device_id in stretches and stretch.overlaps(start_ms, end_ms):
                stretches[device_id].append(stretch)

    add(_presence(session, by_id, start_ms, end_ms, as_of_ms, ids))
    add(_spans(session, catalogue, by_id, start_ms, end_ms, as_of_ms, ids))
    add(_shelves(session, start_ms, end_ms, as_of_ms, ids))
    add(_overdue(session, start_ms, end_ms, as_of_ms, ids))
    add(_work_orders(session, start_ms, end_ms, as_of_ms, ids))
    add(_register(session, devices, tz, scrap_date, ids))
    return Record(
        start_ms,
        end_ms,
        as_of_ms,
        devices,
        unknown,
        stretches,
        _out_of_service(session, start_ms, end_ms, as_of_ms, ids),
    )


# ---- helpers ----------------------------------------------------------------------------------


def to_dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def local_midnight_ms(day: date, tz: ZoneInfo) -> int:
    moment = datetime.combine(day, time(0), tzinfo=tz)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TZ)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TZ)


def _site_zones(session: Session) -> dict[str, ZoneInfo]:
    return {site: _zone(name) for site, name in session.execute(select(Site.id, Site.timezone))}


def _only(query: Any, column: Any, ids: list[str] | None) -> Any:
    return query if ids is None else query.where(column.in_(ids))


def _rows(session: Session, query: Any, column: Any, ids: list[str] | None) -> list[Any]:
    """Rows of ``query``, restricted to ``ids`` in chunks when given."""
    if ids is None:
        return list(session.execute(query))
    rows: list[Any] = []
    for i in range(0, len(ids), CHUNK):
        rows.extend(session.execute(query.where(column.in_(ids[i : i + CHUNK]))))
    return rows


# ---- devices ----------------------------------------------------------------------------------


def _devices(
    session: Session, catalogue: Catalogue, tz: dict[str, ZoneInfo], ids: list[str] | None
) -> tuple[list[DeviceInfo], list[str]]:
    query = (
        select(
            Device.id,
            Device.site_id,
            Device.type,
            Device.zone_id,
            Zone.building_id,
            Device.label,
            Device.in_service_date,
        )
        .outerjoin(Zone, Zone.id == Device.zone_id)
        .order_by(Device.id)
    )
    devices: list[DeviceInfo] = []
    unknown: list[str] = []
    for row in _rows(session, query, Device.id, ids):
        device_type = catalogue.device_types.get(row.type)
        if device_type is None:
            unknown.append(row.id)
            continue
        since = None
        if row.in_service_date is not None:
            since = local_midnight_ms(row.in_service_date, tz.get(row.site_id, _zone(None)))
        devices.append(
            DeviceInfo(
                row.id,
                row.site_id,
                row.type,
                device_type.category,
                row.zone_id,
                row.building_id,
                row.label,
                since,
                device_type.heartbeat_s * 1000,
            )
        )
    devices.sort(key=lambda d: d.id)
    return devices, sorted(unknown)


# ---- presence ---------------------------------------------------------------------------------


def _presence(
    session: Session,
    devices: dict[str, DeviceInfo],
    start_ms: int,
    end_ms: int,
    as_of_ms: int,
    ids: list[str] | None,
) -> Iterable[tuple[str, Stretch]]:
    at = min(start_ms, as_of_ms)
    pc = aliased(PresenceChange)
    last = (
        select(pc.id)
        .where(pc.device_id == Device.id, pc.ts_ms <= at)
        .order_by(pc.ts_ms.desc(), pc.id.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()
    )
    known = (
        select(pc.id)
        .where(pc.device_id == Device.id, pc.ts_ms <= at, pc.presence != "unknown")
        .order_by(pc.ts_ms.desc(), pc.id.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()
    )
    heads = _only(
        select(Device.id.label("device_id"), last.label("last"), known.label("known")),
        Device.id,
        ids,
    ).subquery()
    a = aliased(PresenceChange)
    b = aliased(PresenceChange)
    query = (
        select(
            heads.c.device_id,
            a.presence,
            a.ts_ms,
            a.cause,
            b.presence.label("known"),
            b.ts_ms.label("known_ms"),
        )
        .select_from(heads)
        .outerjoin(a, a.id == heads.c.last)
        .outerjoin(b, b.id == heads.c.known)
    )
    first: dict[str, tuple[str, int, str, str | None, int | None]] = {}
    for row in session.execute(query):
        if row.presence is not None:
            first[row.device_id] = (row.presence, row.ts_ms, row.cause, row.known, row.known_ms)
    changes: dict[str, list[tuple[int, str, str]]] = {}
    if end_ms - 1 > at:
        later = (
            select(
                PresenceChange.device_id,
                PresenceChange.ts_ms,
                PresenceChange.presence,
                PresenceChange.cause,
            )
            .where(
                PresenceChange.ts_ms > at,
                PresenceChange.ts_ms < end_ms,
                PresenceChange.ts_ms <= as_of_ms,
            )
            .order_by(PresenceChange.device_id, PresenceChange.ts_ms, PresenceChange.id)
        )
        for row in _rows(session, later, PresenceChange.device_id, ids):
            changes.setdefault(row.device_id, []).append((row.ts_ms, row.presence, row.cause))
    for device_id, device in devices.items():
        yield from _presence_stretches(device, first.get(device_id), changes.get(device_id, []))


def _presence_stretches(
    device: DeviceInfo,
    first: tuple[str, int, str, str | None, int | None] | None,
    changes: list[tuple[int, str, str]],
) -> Iterable[tuple[str, Stretch]]:
    """Offline stretches from the presence at the window's start and the changes within it;
    an offline stretch followed by an unknown one is one stretch (still not reporting)."""
    segments: list[tuple[int | None, str, str]] = []
    prev_known: str | None = None
    if first is None:
        segments.append((None, "unknown", "never_reported"))
    else:
        presence, ts, cause, prev_known, known_ms = first
        if presence == "unknown" and prev_known == "offline" and known_ms is not None:
            segments.append((known_ms, "offline", "before_unknown"))
        segments.append((ts, presence, cause))
    segments.extend(changes)
    found: list[Stretch] = []
    for i, (start, presence, cause) in enumerate(segments):
        end = segments[i + 1][0] if i + 1 < len(segments) else None
        if presence == "online":
            prev_known = "online"
            continue
        detail: dict[str, Any] = {"presence": presence, "cause": cause}
        if presence == "unknown" and prev_known == "online" and start is not None:
            grace_end = start + device.heartbeat_ms
            if end is not None and grace_end >= end:
                continue
            detail["silent_after_ms"] = device.heartbeat_ms
            start = grace_end
        elif presence == "offline":
            prev_known = "offline"
        if found and found[-1].end_ms is not None and found[-1].end_ms == start:
            found[-1] = Stretch("offline", found[-1].start_ms, end, "presence", found[-1].detail)
        else:
            found.append(Stretch("offline", start, end, "presence", detail))
    for stretch in found:
        yield device.id, stretch


# ---- the condition log ------------------------------------------------------------------------


def _spans(
    session: Session,
    catalogue: Catalogue,
    devices: dict[str, DeviceInfo],
    start_ms: int,
    end_ms: int,
    as_of_ms: int,
    ids: list[str] | None,
) -> Iterable[tuple[str, Stretch]]:
    query = select(
        ConditionSpan.device_id,
        ConditionSpan.reason,
        ConditionSpan.source,
        ConditionSpan.key,
        ConditionSpan.start_ms,
        ConditionSpan.end_ms,
        ConditionSpan.closed_ms,
        ConditionSpan.start_detail,
    ).where(
        ConditionSpan.start_ms < end_ms,
        ConditionSpan.opened_ms <= as_of_ms,
        or_(
            ConditionSpan.end_ms.is_(None),
            ConditionSpan.end_ms > start_ms,
            ConditionSpan.closed_ms > as_of_ms,
        ),
    )
    found: list[tuple[str, Stretch, bool]] = []
    for row in _rows(session, query, ConditionSpan.device_id, ids):
        device = devices.get(row.device_id)
        if device is None:
            continue
        known_end = row.end_ms if row.closed_ms is not None and row.closed_ms <= as_of_ms else None
        detail = dict(row.start_detail or {})
        detail["key"] = row.key
        is_sticky = (
            row.source == "event"
            and row.key in FAMILIES
            and sticky(catalogue.device_types.get(device.type), row.key)
        )
        stretch = Stretch(row.reason, row.start_ms, known_end, row.source, detail)
        found.append((row.device_id, stretch, is_sticky))
    checks = _person_checks(
        session, sorted({d for d, _s, is_sticky in found if is_sticky}), as_of_ms
    )
    for device_id, stretch, is_sticky in found:
        if is_sticky:
            stretch = _end_by_check(stretch, checks.get(device_id, []))
        yield device_id, stretch


def _person_checks(
    session: Session, device_ids: list[str], as_of_ms: int
) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Passed task completions and work-order closures per device, oldest first."""
    checks: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    if not device_ids:
        return checks
    as_of = to_dt(as_of_ms)
    tasks = select(InspectionTask.device_id, InspectionTask.id, InspectionTask.completed_at).where(
        InspectionTask.state == "done",
        InspectionTask.result == "pass",
        InspectionTask.completed_at <= as_of,
    )
    for row in _rows(session, tasks, InspectionTask.device_id, device_ids):
        at = to_ms(row.completed_at)
        assert at is not None
        checks.setdefault(row.device_id, []).append((at, {"ended_by": f"task {row.id} passed"}))
    orders = select(WorkOrder.device_id, WorkOrder.id, WorkOrder.closed_at).where(
        WorkOrder.closed_at.is_not(None), WorkOrder.closed_at <= as_of
    )
    for row in _rows(session, orders, WorkOrder.device_id, device_ids):
        at = to_ms(row.closed_at)
        assert at is not None
        checks.setdefault(row.device_id, []).append(
            (at, {"ended_by": f"work order {row.id} closed"})
        )
    for found in checks.values():
        found.sort(key=lambda c: c[0])
    return checks


def _end_by_check(stretch: Stretch, checks: list[tuple[int, dict[str, Any]]]) -> Stretch:
    assert stretch.start_ms is not None
    for at, how in checks:
        if at > stretch.start_ms:
            if stretch.end_ms is not None and stretch.end_ms <= at:
                return stretch
            return Stretch(
                stretch.reason, stretch.start_ms, at, stretch.source, {**stretch.detail, **how}
            )
    return stretch


# ---- shelved alerts ---------------------------------------------------------------------------


def _shelves(
    session: Session, start_ms: int, end_ms: int, as_of_ms: int, ids: list[str] | None
) -> Iterable[tuple[str, Stretch]]:
    shelved = (
        select(AlertJournal.alert_id)
        .where(
            AlertJournal.action == "shelved",
            AlertJournal.at_ms < end_ms,
            AlertJournal.at_ms >= start_ms - MAX_SHELF_MS,
            AlertJournal.at_ms <= as_of_ms,
        )
        .distinct()
    )
    query = (
        select(
            AlertJournal.alert_id,
            AlertJournal.at_ms,
            AlertJournal.action,
            AlertJournal.actor,
            AlertJournal.note,
            AlertJournal.detail,
            Alert.device_id,
            Alert.rule_id,
        )
        .join(Alert, Alert.id == AlertJournal.alert_id)
        .where(
            AlertJournal.alert_id.in_(shelved),
            AlertJournal.action.in_(("shelved", "unshelved", "resolved")),
            AlertJournal.at_ms <= as_of_ms,
            Alert.device_id.is_not(None),
        )
        .order_by(AlertJournal.alert_id, AlertJournal.at_ms, AlertJournal.id)
    )
    current: dict[int, tuple[int, int | None, dict[str, Any]]] = {}
    device_of: dict[int, str] = {}
    for row in _rows(session, query, Alert.device_id, ids):
        device_of[row.alert_id] = row.device_id
        held = current.pop(row.alert_id, None)
        if held is not None:
            since, until, detail = held
            stop = row.at_ms if until is None else min(until, row.at_ms)
            if stop > since:
                yield row.device_id, Stretch("shelved", since, stop, "alert", detail)
        if row.action == "shelved":
            until = (row.detail or {}).get("until_ms")
            detail = {
                "alert_id": row.alert_id,
                "rule": row.rule_id,
                "by": row.actor,
                "why": row.note,
            }
            current[row.alert_id] = (
                row.at_ms,
                until if isinstance(until, int) else None,
                detail,
            )
    for alert_id, (since, until, detail) in current.items():
        if until is not None:
            detail = {**detail, "until_ms": until}
        yield device_of[alert_id], Stretch("shelved", since, until, "alert", detail)


# ---- maintenance ------------------------------------------------------------------------------

OVERDUE_REASON = {
    "inspection": "inspection_overdue",
    "service": "service_overdue",
    "scrap": "scrap_overdue",
}


def _overdue(
    session: Session, start_ms: int, end_ms: int, as_of_ms: int, ids: list[str] | None
) -> Iterable[tuple[str, Stretch]]:
    start, end, as_of = to_dt(start_ms), to_dt(end_ms), to_dt(as_of_ms)
    query = select(
        InspectionTask.id,
        InspectionTask.device_id,
        InspectionTask.kind,
        InspectionTask.plan_id,
        InspectionTask.title_en,
        InspectionTask.due_at,
        InspectionTask.completed_at,
    ).where(
        InspectionTask.device_id.is_not(None),
        InspectionTask.due_at < end,
        InspectionTask.created_at <= as_of,
        or_(
            InspectionTask.state != "done",
            and_(
                InspectionTask.completed_at > start,
                InspectionTask.completed_at > InspectionTask.due_at,
            ),
        ),
    )
    for row in _rows(session, query, InspectionTask.device_id, ids):
        due = to_ms(row.due_at)
        done = to_ms(row.completed_at)
        if done is not None and done > as_of_ms:
            done = None
        if done is not None and due is not None and done <= due:
            continue
        detail = {"task_id": row.id, "plan": row.plan_id, "title": row.title_en}
        reason = OVERDUE_REASON.get(row.kind, "inspection_overdue")
        yield row.device_id, Stretch(reason, due, done, "maintenance", detail)


def _work_orders(
    session: Session, start_ms: int, end_ms: int, as_of_ms: int, ids: list[str] | None
) -> Iterable[tuple[str, Stretch]]:
    start, end, as_of = to_dt(start_ms), to_dt(end_ms), to_dt(as_of_ms)
    query = select(
        WorkOrder.id,
        WorkOrder.device_id,
        WorkOrder.source,
        WorkOrder.title,
        WorkOrder.opened_at,
        WorkOrder.closed_at,
    ).where(
        WorkOrder.device_id.is_not(None),
        WorkOrder.opened_at < end,
        WorkOrder.opened_at <= as_of,
        or_(WorkOrder.closed_at.is_(None), WorkOrder.closed_at > start),
    )
    for row in _rows(session, query, WorkOrder.device_id, ids):
        closed = to_ms(row.closed_at)
        if closed is not None and closed > as_of_ms:
            closed = None
        reason = "inspection_failed" if row.source == "inspection" else "work_order_open"
        detail = {"work_order_id": row.id, "title": row.title, "source": row.source}
        yield row.device_id, Stretch(reason, to_ms(row.opened_at), closed, "maintenance", detail)


# ---- the register -----------------------------------------------------------------------------


def _register(
    session: Session,
    devices: list[DeviceInfo],
    tz: dict[str, ZoneInfo],
    scrap_date: ScrapDate,
    ids: list[str] | None,
) -> Iterable[tuple[str, Stretch]]:
    if scrap_date is no_scrap_dates:
        return
    attributes = dict(_rows(session, select(Device.id, Device.attributes), Device.id, ids))
    for device in devices:
        try:
            day = scrap_date(device.type, attributes.get(device.id) or {})
        except ValueError as exc:
            yield (
                device.id,
                Stretch("scrap_date_unknown", None, None, "register", {"problem": str(exc)[:200]}),
            )
            continue
        if day is None:
            continue
        since = local_midnight_ms(day, tz.get(device.site_id, _zone(None)))
        yield (
            device.id,
            Stretch("past_scrap_date", since, None, "register", {"scrap_date": day.isoformat()}),
        )


# ---- out of service ---------------------------------------------------------------------------


def _out_of_service(
    session: Session, start_ms: int, end_ms: int, as_of_ms: int, ids: list[str] | None
) -> dict[str, list[OutOfServiceStretch]]:
    query = (
        select(OutOfService)
        .where(
            OutOfService.since_ms < end_ms,
            OutOfService.since_ms <= as_of_ms,
            or_(
                OutOfService.until_ms.is_(None),
                OutOfService.until_ms > start_ms,
                OutOfService.until_ms > as_of_ms,
            ),
        )
        .order_by(OutOfService.device_id, OutOfService.since_ms)
    )
    found: dict[str, list[OutOfServiceStretch]] = {}
    for (row,) in _rows(session, query, OutOfService.device_id, ids):
        back = row.until_ms if row.until_ms is not None and row.until_ms <= as_of_ms else None
        found.setdefault(row.device_id, []).append(
            OutOfServiceStretch(
                row.id,
                row.device_id,
                row.since_ms,
                back,
                row.taken_by,
                row.reason,
                row.expected_back_ms,
                row.returned_by if back is not None else None,
                row.return_note if back is not None else None,
            )
        )
    return found


# ---- interval arithmetic ----------------------------------------------------------------------

Span = tuple[int, int]


def union(spans: Iterable[tuple[int | None, int | None]], lo: int, hi: int) -> list[Span]:
    """The union of ``spans`` clipped to ``[lo, hi)``, as sorted disjoint intervals."""
    clipped = sorted(
        (max(a, lo) if a is not None else lo, min(b, hi) if b is not None else hi) for a, b in spans
    )
    merged: list[Span] = []
    for a, b in clipped:
        if a >= b:
            continue
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def minus(base: list[Span], cut: list[Span]) -> list[Span]:
    """``base`` without ``cut`` (both sorted and disjoint)."""
    result: list[Span] = []
    j = 0
    for a, b in base:
        start = a
        while j < len(cut) and cut[j][1] <= start:
            j += 1
        k = j
        while k < len(cut) and cut[k][0] < b:
            if cut[k][0] > start:
                result.append((start, cut[k][0]))
            start = max(start, cut[k][1])
            k += 1
        if start < b:
            result.append((start, b))
    return result


def length(spans: list[Span]) -> int:
    return sum(b - a for a, b in spans)


def scope(device: DeviceInfo, record: Record, lo: int, hi: int) -> list[Span]:
    """Where the device counts within ``[lo, hi)``: in service and not taken out of it."""
    first = lo if device.in_service_ms is None else max(lo, device.in_service_ms)
    if first >= hi:
        return []
    out = union(
        ((o.since_ms, o.until_ms) for o in record.out_of_service.get(device.id, [])), lo, hi
    )
    return minus([(first, hi)], out)

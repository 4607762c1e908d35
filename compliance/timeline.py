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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.orm import Session, aliased

from compliance.conditions import FAMILIES, sticky
from core.catalogue import Catalogue
from core.models import Device, DeviceState, PresenceChange, Site, Zone
from core.models_alerts import Alert, AlertJournal
from core.models_compliance import ConditionSpan, OutOfService
from core.models_maintenance import TASK_STATES, InspectionTask, WorkOrder

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_SHELF_MS = 366 * 86_400_000
"""The longest shelf the rules allow (rules.spec caps durations at 366 days): a shelf recorded
longer than this before a window cannot reach into it."""
DEFAULT_TZ = "Asia/Shanghai"
CHUNK = 5000


class ScrapDate(Protocol):
    """The day a device of one of ``types`` reaches its scrap age, from its register
    attributes; raises ValueError when the register cannot tell. For extinguishers the rule is
    maintenance's (GB 50444 T.5.4.3), handed in by the caller so that compliance depends on
    core only."""

    @property
    def types(self) -> frozenset[str]: ...

    def __call__(self, attributes: dict[str, Any], /) -> date: ...


class _NoScrapDates:
    types: frozenset[str] = frozenset()

    def __call__(self, attributes: dict[str, Any], /) -> date:
        raise AssertionError("no type has a scrap age here")


no_scrap_dates: ScrapDate = _NoScrapDates()


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


@dataclass(frozen=True, slots=True)
class Group:
    """Devices alike for counting: same type, zone and in-service instant."""

    type: str
    category: str
    zone_id: str
    building_id: str | None
    in_service_ms: int | None
    count: int


@dataclass(slots=True)
class Record:
    """What a figure needs: every device counted in ``groups``, and the *notable* ones (a
    reason overlapping the window, an out-of-service record, entering service inside it, or
    asked for by id) in ``devices`` with their stretches. A device that is not notable was in
    scope and intact over the whole window, so the work grows with the problems, not the park."""

    start_ms: int
    end_ms: int
    as_of_ms: int
    groups: list[Group]
    devices: dict[str, DeviceInfo]
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
    live: bool = False,
) -> Record:
    """Everything recorded by ``as_of_ms`` that bears on ``[start_ms, end_ms)``. ``live``: the
    window starts now, so device_state (kept with every presence change) tells which devices
    are online without looking at their history."""
    if not start_ms < end_ms:
        raise ValueError("the window must start before it ends")
    ids = sorted(set(device_ids)) if device_ids is not None else None
    tz = _site_zones(session)
    groups, late, unknown = _groups(session, catalogue, tz, start_ms, ids)
    stretches: dict[str, list[Stretch]] = {}

    def add(found: Iterable[tuple[str, Stretch]]) -> None:
        for device_id, stretch in found:
            if stretch.overlaps(start_ms, end_ms):
                stretches.setdefault(device_id, []).append(stretch)

    add(_presence(session, catalogue, start_ms, end_ms, as_of_ms, ids, live))
    add(_spans(session, catalogue, start_ms, end_ms, as_of_ms, ids))
    add(_shelves(session, start_ms, end_ms, as_of_ms, ids))
    add(_overdue(session, start_ms, end_ms, as_of_ms, ids))
    add(_work_orders(session, start_ms, end_ms, as_of_ms, ids))
    add(_register(session, tz, scrap_date, ids))
    out = _out_of_service(session, start_ms, end_ms, as_of_ms, ids)
    notable = set(stretches) | set(out) | late | set(ids or ())
    devices = _devices(session, catalogue, tz, sorted(notable))
    return Record(
        start_ms,
        end_ms,
        as_of_ms,
        groups,
        devices,
        unknown,
        {d: s for d, s in stretches.items() if d in devices},
        {d: o for d, o in out.items() if d in devices},
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


@lru_cache(maxsize=4096)
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
    connection = session.connection()  # Core rows: the ORM adds nothing here but time
    if ids is None:
        return list(connection.execute(query).fetchall())
    rows: list[Any] = []
    for i in range(0, len(ids), CHUNK):
        rows.extend(connection.execute(query.where(column.in_(ids[i : i + CHUNK]))).fetchall())
    return rows


# ---- devices ----------------------------------------------------------------------------------


def _groups(
    session: Session,
    catalogue: Catalogue,
    tz: dict[str, ZoneInfo],
    start_ms: int,
    ids: list[str] | None,
) -> tuple[list[Group], set[str], list[str]]:
    """Counts of devices alike; the ids of those entering service after ``start_ms``; the ids of
    those whose type the catalogue does not know."""
    types = catalogue.device_types
    query = (
        select(
            Device.type,
            Device.zone_id,
            Zone.building_id,
            Device.site_id,
            Device.in_service_date,
            func.count(),
        )
        .outerjoin(Zone, Zone.id == Device.zone_id)
        .group_by(
            Device.type, Device.zone_id, Zone.building_id, Device.site_id, Device.in_service_date
        )
    )
    counts: dict[tuple[str, str, str | None, int | None], int] = {}
    late_days: set[tuple[str, date]] = set()
    strange = False
    default_zone = _zone(None)
    for type_name, zone_id, building_id, site_id, day, count in _rows(
        session, query, Device.id, ids
    ):
        if type_name not in types:
            strange = True
            continue
        since = None
        if day is not None:
            since = local_midnight_ms(day, tz.get(site_id, default_zone))
            if since > start_ms:
                late_days.add((site_id, day))
        key = (type_name, zone_id, building_id, since)
        counts[key] = counts.get(key, 0) + count
    groups = [
        Group(t, types[t].category, zone_id, building_id, since, count)
        for (t, zone_id, building_id, since), count in sorted(
            counts.items(), key=lambda i: (i[0][0], i[0][1], i[0][3] or 0)
        )
    ]
    late: set[str] = set()
    if late_days:
        first = min(day for _site, day in late_days)
        starters = select(Device.id, Device.site_id, Device.in_service_date).where(
            Device.in_service_date >= first
        )
        late = {
            device_id
            for device_id, site_id, day in _rows(session, starters, Device.id, ids)
            if (site_id, day) in late_days
        }
    unknown: list[str] = []
    if strange:
        strangers = select(Device.id).where(Device.type.not_in(sorted(types))).order_by(Device.id)
        unknown = [device_id for (device_id,) in _rows(session, strangers, Device.id, ids)]
    return groups, late, unknown


def _devices(
    session: Session, catalogue: Catalogue, tz: dict[str, ZoneInfo], ids: list[str]
) -> dict[str, DeviceInfo]:
    """The notable devices of catalogue types, by id."""
    query = select(
        Device.id,
        Device.site_id,
        Device.type,
        Device.zone_id,
        Zone.building_id,
        Device.label,
        Device.in_service_date,
    ).outerjoin(Zone, Zone.id == Device.zone_id)
    devices: dict[str, DeviceInfo] = {}
    types = catalogue.device_types
    default_zone = _zone(None)
    for device_id, site_id, type_name, zone_id, building_id, label, day in _rows(
        session, query, Device.id, ids
    ):
        device_type = types.get(type_name)
        if device_type is None:
            continue
        since = None
        if day is not None:
            since = local_midnight_ms(day, tz.get(site_id, default_zone))
        devices[device_id] = DeviceInfo(
            device_id,
            site_id,
            type_name,
            device_type.category,
            zone_id,
            building_id,
            label,
            since,
            device_type.heartbeat_s * 1000,
        )
    return dict(sorted(devices.items()))


# ---- presence ---------------------------------------------------------------------------------


def _presence(
    session: Session,
    catalogue: Catalogue,
    start_ms: int,
    end_ms: int,
    as_of_ms: int,
    ids: list[str] | None,
    live: bool,
) -> Iterable[tuple[str, Stretch]]:
    at = min(start_ms, as_of_ms)
    targets = ids
    if live:  # device_state is the last presence change: only devices not online need a look
        not_online = (
            select(Device.id)
            .outerjoin(DeviceState, DeviceState.device_id == Device.id)
            .where(or_(DeviceState.presence.is_(None), DeviceState.presence != "online"))
        )
        targets = [device_id for (device_id,) in _rows(session, not_online, Device.id, ids)]
    heads: list[Any] = []
    if targets is None:
        heads = _rows(session, _presence_at(at, None), None, None)
    else:
        for i in range(0, len(targets), CHUNK):
            heads += _rows(session, _presence_at(at, targets[i : i + CHUNK]), None, None)
    unknown = [row[0] for row in heads if row[2] == "unknown"]
    known: dict[str, tuple[str, int, str]] = {}
    for i in range(0, len(unknown), CHUNK):
        query = _presence_at(at, unknown[i : i + CHUNK], known_only=True)
        for device_id, _type, presence, ts, cause in _rows(session, query, None, None):
            if presence is not None:
                known[device_id] = (presence, ts, cause)
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
        for device_id, ts, presence, cause in _rows(session, later, PresenceChange.device_id, ids):
            changes.setdefault(device_id, []).append((ts, presence, cause))
    types = catalogue.device_types
    for device_id, type_name, presence, ts, cause in heads:
        device_type = types.get(type_name)
        if device_type is None:
            continue
        later_changes = changes.get(device_id, [])
        if presence == "online" and not later_changes:
            continue
        first = None
        if presence is not None:
            first = (presence, ts, cause, known.get(device_id))
        yield from _presence_stretches(
            device_id, device_type.heartbeat_s * 1000, first, later_changes
        )


def _presence_at(at: int, ids: list[str] | None, *, known_only: bool = False) -> Any:
    """Per device: its type and its last presence change at or before ``at`` (``known_only``:
    the last one that was not ``unknown``); one index look-up per device, however long its
    history. The look-ups are materialised once, then joined to their rows."""
    pc = aliased(PresenceChange)
    conditions = [pc.device_id == Device.id, pc.ts_ms <= at]
    if known_only:
        conditions.append(pc.presence != "unknown")
    last = (
        select(pc.id)
        .where(*conditions)
        .order_by(pc.ts_ms.desc(), pc.id.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()
    )
    heads = (
        _only(select(Device.id, Device.type, last.label("last")), Device.id, ids)
        .cte("heads")
        .prefix_with("MATERIALIZED")
    )
    row = aliased(PresenceChange)
    return (
        select(heads.c.id, heads.c.type, row.presence, row.ts_ms, row.cause)
        .select_from(heads)
        .outerjoin(row, row.id == heads.c.last)
    )


def _presence_stretches(
    device_id: str,
    heartbeat_ms: int,
    first: tuple[str, int, str, tuple[str, int, str] | None] | None,
    changes: list[tuple[int, str, str]],
) -> Iterable[tuple[str, Stretch]]:
    """Offline stretches from the presence at the window's start and the changes within it;
    an offline stretch followed by an unknown one is one stretch (still not reporting)."""
    segments: list[tuple[int | None, str, str]] = []
    prev_known: str | None = None
    if first is None:
        segments.append((None, "unknown", "never_reported"))
    else:
        presence, ts, cause, known = first
        if known is not None:
            prev_known = known[0]
            if presence == "unknown" and prev_known == "offline":
                segments.append((known[1], "offline", known[2]))
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
            grace_end = start + heartbeat_ms
            if end is not None and grace_end >= end:
                continue
            detail["silent_after_ms"] = heartbeat_ms
            start = grace_end
        elif presence == "offline":
            prev_known = "offline"
        if found and found[-1].end_ms is not None and found[-1].end_ms == start:
            found[-1] = Stretch("offline", found[-1].start_ms, end, "presence", found[-1].detail)
        else:
            found.append(Stretch("offline", start, end, "presence", detail))
    for stretch in found:
        yield device_id, stretch


# ---- the condition log ------------------------------------------------------------------------


def _spans(
    session: Session,
    catalogue: Catalogue,
    start_ms: int,
    end_ms: int,
    as_of_ms: int,
    ids: list[str] | None,
) -> Iterable[tuple[str, Stretch]]:
    query = (
        select(
            ConditionSpan.device_id,
            Device.type,
            ConditionSpan.reason,
            ConditionSpan.source,
            ConditionSpan.key,
            ConditionSpan.start_ms,
            ConditionSpan.end_ms,
            ConditionSpan.closed_ms,
            ConditionSpan.start_detail,
        )
        .join(Device, Device.id == ConditionSpan.device_id)
        .where(
            ConditionSpan.start_ms < end_ms,
            ConditionSpan.opened_ms <= as_of_ms,
            or_(
                ConditionSpan.end_ms.is_(None),
                ConditionSpan.end_ms > start_ms,
                ConditionSpan.closed_ms > as_of_ms,
            ),
        )
    )
    found: list[tuple[str, Stretch, bool]] = []
    for row in _rows(session, query, ConditionSpan.device_id, ids):
        known_end = row.end_ms if row.closed_ms is not None and row.closed_ms <= as_of_ms else None
        detail = dict(row.start_detail or {})
        detail["key"] = row.key
        is_sticky = (
            row.source == "event"
            and row.key in FAMILIES
            and sticky(catalogue.device_types.get(row.type), row.key)
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

UNDONE = tuple(s for s in TASK_STATES if s != "done")
OVERDUE_REASON = {
    "inspection": "inspection_overdue",
    "service": "service_overdue",
    "scrap": "scrap_overdue",
}


def _overdue(
    session: Session, start_ms: int, end_ms: int, as_of_ms: int, ids: list[str] | None
) -> Iterable[tuple[str, Stretch]]:
    start, end, as_of = to_dt(start_ms), to_dt(end_ms), to_dt(as_of_ms)
    columns = select(
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
    )
    undone = columns.where(InspectionTask.state.in_(UNDONE))
    rows = _rows(session, undone, InspectionTask.device_id, ids)
    if start_ms < as_of_ms:  # completions recorded after the window began (none for "now")
        late = columns.where(
            InspectionTask.state == "done",
            InspectionTask.completed_at > start,
            InspectionTask.completed_at > InspectionTask.due_at,
        )
        rows += _rows(session, late, InspectionTask.device_id, ids)
    for row in rows:
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
    tz: dict[str, ZoneInfo],
    scrap_date: ScrapDate,
    ids: list[str] | None,
) -> Iterable[tuple[str, Stretch]]:
    """Scrap dates from the register; each distinct entry is read once (as raw JSON text)."""
    types = scrap_date.types
    if not types:
        return
    query = select(Device.id, Device.site_id, cast(Device.attributes, Text)).where(
        Device.type.in_(sorted(types))
    )
    known: dict[str | None, date | str] = {}
    default_zone = _zone(None)
    for device_id, site_id, text in _rows(session, query, Device.id, ids):
        day = known.get(text)
        if day is None:
            try:
                given = orjson.loads(text) if text else {}
                day = scrap_date(given if isinstance(given, dict) else {})
            except (ValueError, orjson.JSONDecodeError) as exc:
                day = str(exc)[:200]
            known[text] = day
        if isinstance(day, str):
            yield (
                device_id,
                Stretch("scrap_date_unknown", None, None, "register", {"problem": day}),
            )
            continue
        since = local_midnight_ms(day, tz.get(site_id, default_zone))
        yield (
            device_id,
            Stretch("past_scrap_date", since, None, "register", {"scrap_date": day.isoformat()}),
        )


# ---- out of service ---------------------------------------------------------------------------


def _out_of_service(
    session: Session, start_ms: int, end_ms: int, as_of_ms: int, ids: list[str] | None
) -> dict[str, list[OutOfServiceStretch]]:
    query = (
        select(
            OutOfService.id,
            OutOfService.device_id,
            OutOfService.since_ms,
            OutOfService.until_ms,
            OutOfService.taken_by,
            OutOfService.reason,
            OutOfService.expected_back_ms,
            OutOfService.returned_by,
            OutOfService.return_note,
        )
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
    for row in _rows(session, query, OutOfService.device_id, ids):
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

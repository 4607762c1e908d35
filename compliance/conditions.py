"""The condition log: when each device reported a condition that makes it not intact.

Two sources, both the device's own word:

- **events** come in pairs of a family: ``fault`` … ``fault_cleared``, ``tamper`` …
  ``tamper_cleared``, ``removed`` … ``returned``, ``blocked`` … ``unblocked``,
  ``obstruction_start`` … ``obstruction_end``, ``disablement`` … ``disablement_cleared``,
  ``supervisory`` … ``supervisory_cleared``; ``discharged`` and ``leak`` have no clearing event.
  A family whose clearing event the device type cannot send (``discharged``, ``leak``, or
  ``tamper`` of a hydrant monitor) is *sticky*: it ends when a person records the device checked
  (a passed inspection or service) or fixed (a work order closed) after it began. That end is
  worked out when a figure is computed (compliance.timeline), not stored here.
- **values**: a metric of the catalogue with a ``normal`` band or value, outside it. Boolean
  metrics name their condition (``fault`` → fault, ``present`` false → removed,
  ``front_blocked`` / ``obstructed`` → blocked, ``disabled_points`` above 0 → disabled); any other
  metric outside its band is ``out_of_band``.

The log is a table of spans (core.models_compliance.ConditionSpan) kept by three writers that
agree because every write takes the lock row ``compliance_marks.conditions`` first and opening
is idempotent (one open span per device, source and key):

- ``catch_up_events`` turns stored device events into spans in arrival (id) order, from the
  mark onwards: exact, and complete whatever was running when they arrived;
- ``record_values`` takes telemetry as the collector commits it (compliance.recorder wires it
  as a batch listener): exact to the reading;
- ``reconcile_values`` compares each device's last values with the open value spans and opens or
  closes what differs at the value's own timestamp: the safety net when the recorder was not
  running (an excursion that came and went unseen is then missing, and a start is as late as the
  last value seen). Run before each current figure.

A message older than what a span already records for its key is stale and changes nothing, as
in the collector's own last values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from typing import cast as typed

import orjson
from sqlalchemy import Table, Text, bindparam, cast, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.catalogue import Catalogue, DeviceType
from core.contract import MetricValue
from core.models import Device, DeviceEvent, DeviceState
from core.models_compliance import ComplianceMark, ConditionSpan

MARK = "conditions"
VALUES_MARK = "values"
LOOK_BACK_MS = 60_000
"""Devices heard from this long before the previous look are looked at again: a batch received
then may have been committed after it."""
MARK_EVERY_MS = 60_000
SPANS = typed(Table, ConditionSpan.__table__)
EVENT_BATCH = 20_000


@dataclass(frozen=True, slots=True)
class Family:
    """Events that start and clear one condition."""

    reason: str
    starts: frozenset[str]
    clears: frozenset[str]


FAMILIES: dict[str, Family] = {
    "fault": Family("fault", frozenset({"fault"}), frozenset({"fault_cleared"})),
    "tamper": Family("tamper", frozenset({"tamper"}), frozenset({"tamper_cleared"})),
    "removed": Family("removed", frozenset({"removed"}), frozenset({"returned"})),
    "discharged": Family("discharged", frozenset({"discharged"}), frozenset()),
    "blocked": Family("blocked", frozenset({"blocked"}), frozenset({"unblocked"})),
    "obstruction": Family(
        "blocked", frozenset({"obstruction_start"}), frozenset({"obstruction_end"})
    ),
    "disablement": Family(
        "disabled", frozenset({"disablement"}), frozenset({"disablement_cleared"})
    ),
    "supervisory": Family("fault", frozenset({"supervisory"}), frozenset({"supervisory_cleared"})),
    "leak": Family("fault", frozenset({"leak"}), frozenset()),
}
EVENT_ROLE: dict[str, tuple[str, bool]] = {
    name: (family, opens)
    for family, spec in FAMILIES.items()
    for names, opens in ((spec.starts, True), (spec.clears, False))
    for name in names
}
"""Event name → (family, whether it starts the condition)."""
CONDITION_EVENTS = tuple(sorted(EVENT_ROLE))

METRIC_REASONS = {
    "fault": "fault",
    "loop_fault": "fault",
    "present": "removed",
    "front_blocked": "blocked",
    "obstructed": "blocked",
    "disabled_points": "disabled",
}
"""Metrics whose abnormal value names a condition; any other abnormal metric is out_of_band."""


def metric_reason(metric: str) -> str:
    return METRIC_REASONS.get(metric, "out_of_band")


def sticky(device_type: DeviceType | None, family: str) -> bool:
    """Whether the type cannot clear this condition itself (no clearing event in its events)."""
    clears = FAMILIES[family].clears
    return device_type is None or not (clears & device_type.events)


def abnormal(device_type: DeviceType, metric: str, value: Any) -> bool | None:
    """Whether a value is outside the metric's normal band; None when the catalogue gives no
    band for it (or the value is of the wrong kind to judge)."""
    spec = device_type.metrics.get(metric)
    if spec is None or spec.normal is None:
        return None
    if isinstance(spec.normal, bool):
        if isinstance(value, bool):
            return value is not spec.normal
        if isinstance(value, int | float):  # a boolean kept as 1.0 / 0.0
            return bool(value) is not spec.normal
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return not spec.is_normal(value)


def open_key(device_id: str, source: str, key: str) -> str:
    return f"{device_id}|{source}|{key}"


# ---- the lock and the mark --------------------------------------------------------------------


def lock(session: Session, now_ms: int) -> int:
    """Take the condition log's lock (a row write, held until commit) and return the mark: the
    last device event id already turned into spans. The write is the transaction's first
    statement, so on SQLite it takes the write lock before anything is read."""
    session.execute(
        update(ComplianceMark).where(ComplianceMark.name == MARK).values(updated_ms=now_ms)
    )
    mark = session.scalar(select(ComplianceMark.value).where(ComplianceMark.name == MARK))
    if mark is None:  # a database migrated without the row (it is inserted by 0004)
        session.add(ComplianceMark(name=MARK, value=0, updated_ms=now_ms))
        session.flush()
        return 0
    return int(mark)


# ---- spans in memory, then written in one go ---------------------------------------------------


@dataclass(slots=True)
class _Open:
    """An open span, already stored (``id``) or new in this transaction (``id`` None)."""

    id: int | None
    device_id: str
    reason: str
    source: str
    key: str
    start_ms: int
    start_detail: dict[str, Any]
    opened_ms: int


class _Log:
    """Open spans of some devices, loaded once; opens and closes collected, then written."""

    def __init__(self, session: Session, source: str, device_ids: Iterable[str]) -> None:
        self.session = session
        self.source = source
        ids = sorted(set(device_ids))
        self.open: dict[tuple[str, str], _Open] = {}
        self.last_end: dict[tuple[str, str], int] = {}
        self.new: list[dict[str, Any]] = []
        self.closes: list[dict[str, Any]] = []
        for chunk in _chunks(ids, 5000):
            rows = session.execute(
                select(
                    ConditionSpan.id,
                    ConditionSpan.device_id,
                    ConditionSpan.reason,
                    ConditionSpan.key,
                    ConditionSpan.start_ms,
                    ConditionSpan.start_detail,
                    ConditionSpan.opened_ms,
                ).where(
                    ConditionSpan.device_id.in_(chunk),
                    ConditionSpan.source == source,
                    ConditionSpan.end_ms.is_(None),
                )
            )
            for row in rows:
                self.open[(row.device_id, row.key)] = _Open(
                    row.id,
                    row.device_id,
                    row.reason,
                    source,
                    row.key,
                    row.start_ms,
                    row.start_detail,
                    row.opened_ms,
                )
            ends = session.execute(
                select(ConditionSpan.device_id, ConditionSpan.key, func.max(ConditionSpan.end_ms))
                .where(
                    ConditionSpan.device_id.in_(chunk),
                    ConditionSpan.source == source,
                    ConditionSpan.end_ms.is_not(None),
                )
                .group_by(ConditionSpan.device_id, ConditionSpan.key)
            )
            for device_id, key, end in ends:
                if end is not None:
                    self.last_end[(device_id, key)] = int(end)

    def start(
        self,
        device_id: str,
        key: str,
        reason: str,
        at_ms: int,
        detail: dict[str, Any],
        known_ms: int,
    ) -> bool:
        """Open a span unless one is open or the message is older than the last recorded end."""
        slot = (device_id, key)
        if slot in self.open or at_ms < self.last_end.get(slot, at_ms):
            return False
        self.open[slot] = _Open(None, device_id, reason, self.source, key, at_ms, detail, known_ms)
        return True

    def clear(
        self, device_id: str, key: str, at_ms: int, detail: dict[str, Any], known_ms: int
    ) -> bool:
        """Close the open span, unless there is none or the message is older than its start."""
        slot = (device_id, key)
        span = self.open.get(slot)
        if span is None or at_ms < span.start_ms:
            return False
        del self.open[slot]
        self.last_end[slot] = at_ms
        if span.id is None:
            self.new.append(self._row(span, None, at_ms, detail, known_ms))
        else:
            self.closes.append(
                {"b_id": span.id, "end_ms": at_ms, "end_detail": detail, "closed_ms": known_ms}
            )
        return True

    def is_open(self, device_id: str, key: str) -> bool:
        return (device_id, key) in self.open

    def write(self) -> int:
        """Store what changed; returns how many spans were opened or closed."""
        for span in self.open.values():
            if span.id is None:
                self.new.append(
                    self._row(
                        span, open_key(span.device_id, self.source, span.key), None, None, None
                    )
                )
        changed = len(self.new) + len(self.closes)
        if self.closes:
            self.session.execute(
                update(SPANS)
                .where(SPANS.c.id == bindparam("b_id"), SPANS.c.end_ms.is_(None))
                .values(
                    end_ms=bindparam("end_ms"),
                    end_detail=bindparam("end_detail"),
                    closed_ms=bindparam("closed_ms"),
                    open_key=None,
                ),
                self.closes,
            )
        if self.new:
            name = self.session.get_bind().dialect.name
            dialect: Any = postgresql if name == "postgresql" else sqlite
            insert = dialect.insert(SPANS).on_conflict_do_nothing(index_elements=[SPANS.c.open_key])
            self.session.execute(insert, self.new)
        self.new, self.closes = [], []
        return changed

    @staticmethod
    def _row(
        span: _Open,
        key: str | None,
        end_ms: int | None,
        end_detail: dict[str, Any] | None,
        closed_ms: int | None,
    ) -> dict[str, Any]:
        return {
            "open_key": key,
            "device_id": span.device_id,
            "reason": span.reason,
            "source": span.source,
            "key": span.key,
            "start_ms": span.start_ms,
            "end_ms": end_ms,
            "start_detail": span.start_detail,
            "end_detail": end_detail,
            "opened_ms": span.opened_ms,
            "closed_ms": closed_ms,
        }


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ---- events -----------------------------------------------------------------------------------


def catch_up_events(session: Session, now_ms: int, limit: int = EVENT_BATCH) -> int:
    """Turn stored device events after the mark into spans, oldest arrival first, at most
    ``limit`` events; commits. Returns how many events were read (0: the log was up to date).
    Cheap when there is nothing new: one look at the newest event id, no lock."""
    newest = session.scalar(select(func.max(DeviceEvent.id)))
    mark = session.scalar(select(ComplianceMark.value).where(ComplianceMark.name == MARK))
    session.rollback()  # end the read, so the lock below is the transaction's first statement
    if newest is None or (mark is not None and newest <= mark):
        return 0
    mark = lock(session, now_ms)
    top = session.scalar(select(func.max(DeviceEvent.id)).where(DeviceEvent.id > mark))
    if top is None:
        session.commit()
        return 0
    events = session.execute(
        select(
            DeviceEvent.id,
            DeviceEvent.device_id,
            DeviceEvent.ts_ms,
            DeviceEvent.seq,
            DeviceEvent.event,
            DeviceEvent.received_ms,
        )
        .where(
            DeviceEvent.id > mark,
            DeviceEvent.id <= top,
            DeviceEvent.event.in_(CONDITION_EVENTS),
        )
        .order_by(DeviceEvent.id)
        .limit(limit)
    ).all()
    if len(events) == limit:
        top = events[-1].id
    log = _Log(session, "event", (e.device_id for e in events))
    for e in events:
        family, opens = EVENT_ROLE[e.event]
        detail = {"event": e.event, "seq": e.seq}
        if opens:
            log.start(e.device_id, family, FAMILIES[family].reason, e.ts_ms, detail, e.received_ms)
        else:
            log.clear(e.device_id, family, e.ts_ms, detail, e.received_ms)
    log.write()
    session.execute(update(ComplianceMark).where(ComplianceMark.name == MARK).values(value=top))
    session.commit()
    return len(events)


# ---- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueReading:
    """One message's metrics, as the collector committed them."""

    device_id: str
    ts_ms: int
    metrics: dict[str, MetricValue]


def record_values(
    session: Session, catalogue: Catalogue, readings: Sequence[ValueReading], now_ms: int
) -> int:
    """Open and close value spans for committed telemetry, oldest reading first; commits.
    Returns how many spans changed. Devices or metrics the catalogue does not know are skipped."""
    if not readings:
        return 0
    types = _types(session, {r.device_id for r in readings})
    relevant = [r for r in readings if r.device_id in types]
    if not relevant:
        return 0
    lock(session, now_ms)
    log = _Log(session, "value", (r.device_id for r in relevant))
    for reading in sorted(relevant, key=lambda r: r.ts_ms):
        device_type = catalogue.device_types.get(types[reading.device_id])
        if device_type is None:
            continue
        for metric, value in reading.metrics.items():
            _apply_value(log, device_type, reading.device_id, metric, value, reading.ts_ms, now_ms)
    changed = log.write()
    session.commit()
    return changed


def reconcile_values(
    session: Session, catalogue: Catalogue, now_ms: int, *, full: bool = False
) -> int:
    """Make the open value spans agree with the last values of the devices heard from since the
    previous look (every device when ``full`` or the first time); commits what differs, and
    moves the ``values`` mark at most once a minute. Returns how many spans changed."""
    mark = None if full else _mark(session, VALUES_MARK)
    since = mark - LOOK_BACK_MS if mark else None
    wrong = _differences(session, catalogue, since)
    session.rollback()
    if not wrong:
        if mark is None or now_ms - mark >= MARK_EVERY_MS:
            _set_mark(session, VALUES_MARK, now_ms)
            session.commit()
        return 0
    lock(session, now_ms)
    states = {
        device_id: _parse(text)
        for device_id, text in _state_rows(
            session, select(DeviceState.device_id, cast(DeviceState.last_values, Text)), wrong
        )
    }
    log = _Log(session, "value", wrong)
    for device_id, type_name in wrong.items():
        device_type = catalogue.device_types[type_name]
        for metric, (value, ts) in _values(states.get(device_id)).items():
            _apply_value(log, device_type, device_id, metric, value, ts, now_ms, coarse=True)
    changed = log.write()
    _set_mark(session, VALUES_MARK, now_ms)
    session.commit()
    return changed


def _differences(session: Session, catalogue: Catalogue, since: int | None) -> dict[str, str]:
    """Devices (heard from since ``since``, or all) whose last values disagree with their open
    value spans: device → type."""
    query = select(DeviceState.device_id, Device.type, cast(DeviceState.last_values, Text)).join(
        Device, Device.id == DeviceState.device_id
    )
    if since is not None:
        query = query.where(DeviceState.last_seen_ms >= since)
    rows = session.execute(query).all()
    spans = select(ConditionSpan.device_id, ConditionSpan.key).where(
        ConditionSpan.source == "value", ConditionSpan.end_ms.is_(None)
    )
    opened: dict[str, set[str]] = {}
    for device_id, key in _state_rows(
        session, spans, None if since is None else {row[0]: "" for row in rows}
    ):
        opened.setdefault(device_id, set()).add(key)
    wrong: dict[str, str] = {}
    for device_id, type_name, text in rows:
        device_type = catalogue.device_types.get(type_name)
        if device_type is None:
            continue
        bad = {
            metric
            for metric, (value, _ts) in _values(_parse(text)).items()
            if abnormal(device_type, metric, value)
        }
        if bad != opened.get(device_id, set()):
            wrong[device_id] = type_name
    return wrong


def _state_rows(session: Session, query: Any, ids: dict[str, str] | None) -> list[Any]:
    """Rows of a query on device state or spans (its first column is the device id), for
    ``ids`` in chunks, or all."""
    if ids is None:
        return list(session.execute(query).all())
    column = query.selected_columns[0]
    found: list[Any] = []
    for chunk in _chunks(sorted(ids), 5000):
        found.extend(session.execute(query.where(column.in_(chunk))).all())
    return found


def _parse(text: str | None) -> Any:
    """JSON text as stored (orjson: several times quicker than the column's own decoding)."""
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _mark(session: Session, name: str) -> int | None:
    value = session.scalar(select(ComplianceMark.value).where(ComplianceMark.name == name))
    return int(value) if value is not None else None


def _set_mark(session: Session, name: str, value: int) -> None:
    """Move a mark forward (never back), creating it if need be."""
    moved = session.execute(
        update(ComplianceMark)
        .where(ComplianceMark.name == name, ComplianceMark.value < value)
        .values(value=value, updated_ms=value)
    )
    if getattr(moved, "rowcount", 0):
        return
    dialect: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(ComplianceMark)
        .values(name=name, value=value, updated_ms=value)
        .on_conflict_do_nothing(index_elements=["name"])
    )


def _values(last_values: Any) -> dict[str, tuple[Any, int]]:
    """``{metric: (value, ts_ms)}`` from the collector's ``{metric: {"v", "ts"}}``."""
    found: dict[str, tuple[Any, int]] = {}
    if not isinstance(last_values, dict):
        return found
    for metric, entry in last_values.items():
        if isinstance(entry, dict) and "v" in entry and isinstance(entry.get("ts"), int):
            found[metric] = (entry["v"], entry["ts"])
    return found


def _apply_value(
    log: _Log,
    device_type: DeviceType,
    device_id: str,
    metric: str,
    value: Any,
    ts_ms: int,
    now_ms: int,
    *,
    coarse: bool = False,
) -> None:
    bad = abnormal(device_type, metric, value)
    if bad is None:
        return
    detail: dict[str, Any] = {"value": value}
    if coarse:
        detail["from"] = "last_values"
    if bad:
        spec = device_type.metrics[metric]
        band = list(spec.normal) if isinstance(spec.normal, tuple) else spec.normal
        detail["normal"] = band
        if spec.unit:
            detail["unit"] = spec.unit
        log.start(device_id, metric, metric_reason(metric), ts_ms, detail, now_ms)
    else:
        log.clear(device_id, metric, ts_ms, detail, now_ms)


def _types(session: Session, device_ids: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(device_ids), 5000):
        found.update(
            session.execute(select(Device.id, Device.type).where(Device.id.in_(chunk))).all()
        )
    return found

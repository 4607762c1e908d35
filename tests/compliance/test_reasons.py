"""Every reason makes a device not intact from the moment it begins, and clearing it restores
the device at the moment it clears: checked on the period's intervals and on the figure at
instants either side, for each reason, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.routers.intactness import register_scrap_date
from compliance.conditions import ValueReading, catch_up_events, reconcile_values, record_values
from compliance.history import device_timeline
from compliance.intactness import current_figure, figure_at
from compliance.timeline import gather
from core.catalogue import load_catalogue
from core.db import SessionFactory
from tests.compliance import builders as b
from tests.compliance.builders import DAY, HOUR, JUNE, MAY, MIN

CAT = load_catalogue()
T1 = MAY + 2 * DAY + 7 * HOUR + 13 * MIN
T2 = MAY + 4 * DAY + 1 * HOUR + 7 * MIN
DEV = "dev1"


@dataclass(frozen=True)
class Case:
    reason: str
    type: str
    make: Callable[[Engine, SessionFactory], None]
    expected: list[tuple[int, int]]
    online: bool = True


def _events(*pairs: tuple[int, str]) -> Callable[[Engine, SessionFactory], None]:
    def make(engine: Engine, sessions: SessionFactory) -> None:
        for ts, name in pairs:
            b.event(engine, DEV, ts, name)
        with sessions() as s:
            catch_up_events(s, JUNE)

    return make


def _values(*points: tuple[int, str, object]) -> Callable[[Engine, SessionFactory], None]:
    def make(engine: Engine, sessions: SessionFactory) -> None:
        with sessions() as s:
            for ts, metric, value in points:
                record_values(s, CAT, [ValueReading(DEV, ts, {metric: value})], ts)  # type: ignore[dict-item]

    return make


def _reconciled(metric: str, bad: object, good: object) -> Callable[[Engine, SessionFactory], None]:
    def make(engine: Engine, sessions: SessionFactory) -> None:
        b.last_values(engine, DEV, {metric: (bad, T1)})
        with sessions() as s:
            reconcile_values(s, CAT, T1 + MIN)
        b.last_values(engine, DEV, {metric: (good, T2)})
        with sessions() as s:
            reconcile_values(s, CAT, T2 + MIN)

    return make


def _maintenance(build: Callable[[Session], object]) -> Callable[[Engine, SessionFactory], None]:
    def make(engine: Engine, sessions: SessionFactory) -> None:
        with sessions.begin() as s:
            build(s)

    return make


def _presence(*changes: tuple[int, str, str]) -> Callable[[Engine, SessionFactory], None]:
    def make(engine: Engine, sessions: SessionFactory) -> None:
        b.presence(engine, DEV, changes)

    return make


def _discharged_then_inspected(engine: Engine, sessions: SessionFactory) -> None:
    _events((T1, "discharged"))(engine, sessions)
    with sessions.begin() as s:
        b.task(s, DEV, due=JUNE + DAY, created=MAY, completed=T2, result="pass")


def _leak_then_inspected(engine: Engine, sessions: SessionFactory) -> None:
    _events((T1, "leak"))(engine, sessions)
    with sessions.begin() as s:
        b.task(s, DEV, due=JUNE + DAY, created=MAY, completed=T1 - HOUR, result="pass")  # before
        b.task(s, DEV, due=JUNE + DAY, created=MAY, completed=T1 + HOUR, result="fail")  # failed
        b.task(s, DEV, due=JUNE + 2 * DAY, created=MAY, completed=T2, result="pass")


def _hydrant_tamper_then_fixed(engine: Engine, sessions: SessionFactory) -> None:
    _events((T1, "tamper"))(engine, sessions)
    with sessions.begin() as s:
        b.work_order(s, DEV, opened=T1 - 10 * DAY, closed=T1 - 9 * DAY)  # before: no effect
        b.work_order(s, DEV, opened=T1 + HOUR, closed=T2)


HB_SMOKE = 300_000
CASES = [
    Case(
        "offline",
        "smoke_detector",
        _presence((T1, "offline", "silence"), (T2, "online", "message")),
        [(T1, T2)],
    ),
    Case(
        "offline: unknown beyond one heartbeat",
        "smoke_detector",
        _presence((T1, "unknown", "broker_lost"), (T2, "online", "message")),
        [(T1 + HB_SMOKE, T2)],
    ),
    Case(
        "offline: never heard from",
        "smoke_detector",
        _presence((T2, "online", "message")),
        [(MAY, T2)],
        online=False,
    ),
    Case(
        "fault event", "smoke_detector", _events((T1, "fault"), (T2, "fault_cleared")), [(T1, T2)]
    ),
    Case("tamper", "extinguisher", _events((T1, "tamper"), (T2, "tamper_cleared")), [(T1, T2)]),
    Case("removed", "extinguisher", _events((T1, "removed"), (T2, "returned")), [(T1, T2)]),
    Case("blocked", "extinguisher", _events((T1, "blocked"), (T2, "unblocked")), [(T1, T2)]),
    Case(
        "fire lane obstructed",
        "fire_lane",
        _events((T1, "obstruction_start"), (T2, "obstruction_end")),
        [(T1, T2)],
    ),
    Case(
        "disabled points",
        "fire_alarm_panel",
        _events((T1, "disablement"), (T2, "disablement_cleared")),
        [(T1, T2)],
    ),
    Case("discharged, until inspected", "extinguisher", _discharged_then_inspected, [(T1, T2)]),
    Case("hydrant tamper, until fixed", "hydrant_pressure", _hydrant_tamper_then_fixed, [(T1, T2)]),
    Case(
        "pressure out of its green band",
        "extinguisher",
        _values(
            (T1 - HOUR, "pressure_mpa", 1.2), (T1, "pressure_mpa", 0.8), (T2, "pressure_mpa", 1.2)
        ),
        [(T1, T2)],
    ),
    Case(
        "fault value",
        "heat_detector",
        _values((T1, "fault", True), (T1 + HOUR, "fault", True), (T2, "fault", False)),
        [(T1, T2)],
    ),
    Case(
        "present false",
        "extinguisher",
        _values((T1, "present", False), (T2, "present", True)),
        [(T1, T2)],
    ),
    Case(
        "low battery seen only in last values",
        "smoke_detector",
        _reconciled("battery_pct", 12.0, 80.0),
        [(T1, T2)],
    ),
    Case(
        "shelved until its expiry",
        "smoke_detector",
        _maintenance(lambda s: b.shelved_alert(s, DEV, raised=T1 - HOUR, shelved=T1, until=T2)),
        [(T1, T2)],
    ),
    Case(
        "shelved, unshelved early",
        "smoke_detector",
        _maintenance(
            lambda s: b.shelved_alert(
                s, DEV, raised=T1 - HOUR, shelved=T1, until=T2 + 3 * DAY, unshelved=T2
            )
        ),
        [(T1, T2)],
    ),
    Case(
        "inspection overdue",
        "smoke_detector",
        _maintenance(lambda s: b.task(s, DEV, due=T1, completed=T2)),
        [(T1, T2)],
    ),
    Case(
        "service overdue",
        "extinguisher",
        _maintenance(lambda s: b.task(s, DEV, due=T1, completed=T2, kind="service")),
        [(T1, T2)],
    ),
    Case(
        "scrap overdue",
        "extinguisher",
        _maintenance(lambda s: b.task(s, DEV, due=T1, completed=T2, kind="scrap")),
        [(T1, T2)],
    ),
    Case(
        "panel supervisory signal",
        "fire_alarm_panel",
        _events((T1, "supervisory"), (T2, "supervisory_cleared")),
        [(T1, T2)],
    ),
    Case(
        "panel points disabled, by value",
        "fire_alarm_panel",
        _values((T1, "disabled_points", 3.0), (T2, "disabled_points", 0.0)),
        [(T1, T2)],
    ),
    Case("hydrant leak, until inspected", "hydrant_pressure", _leak_then_inspected, [(T1, T2)]),
    Case(
        "inspection failed until fixed",
        "smoke_detector",
        _maintenance(lambda s: b.work_order(s, DEV, opened=T1, closed=T2, source="inspection")),
        [(T1, T2)],
    ),
    Case(
        "work order open",
        "smoke_detector",
        _maintenance(lambda s: b.work_order(s, DEV, opened=T1, closed=T2, source="alert")),
        [(T1, T2)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_each_reason_holds_from_its_start_to_its_clearing(
    engine: Engine, sessions: SessionFactory, case: Case
) -> None:
    b.make_park(
        engine,
        {DEV: case.type, "other": case.type},
        online_from=MAY - HOUR if case.online else None,
    )
    if not case.online:
        b.presence(engine, "other", [(MAY - HOUR, "online", "message")])
    case.make(engine, sessions)
    with sessions() as s:
        record = gather(s, CAT, MAY, JUNE, JUNE, device_ids=[DEV, "other"])
    by_id = record.devices
    assert device_timeline(by_id[DEV], record).not_intact == case.expected
    assert device_timeline(by_id["other"], record).not_intact == []
    for start, end in case.expected:
        for at, intact in ((start - 1, True), (start, False), (end - 1, False), (end, True)):
            if at < MAY:
                continue
            with sessions() as s:
                figure = figure_at(gather(s, CAT, at, at + 1, JUNE, device_ids=[DEV]), at)
            assert (figure.overall.intact == 1) is intact, (at - start, figure.non_intact)


def test_the_reason_names_when_it_began(engine: Engine, sessions: SessionFactory) -> None:
    b.make_park(engine, {DEV: "extinguisher"})
    _values((T1, "pressure_mpa", 0.8))(engine, sessions)
    with sessions() as s:
        figure = current_figure(s, CAT, T1 + HOUR, record_first=False)
    [standing] = figure.non_intact
    [reason] = standing.reasons
    assert (reason.code, reason.since_ms, reason.source) == ("out_of_band", T1, "value")
    assert reason.detail == {
        "value": 0.8,
        "normal": [1.0, 1.4],
        "unit": "MPa",
        "key": "pressure_mpa",
    }
    assert standing.since_ms == T1


def test_past_scrap_date_from_the_register(engine: Engine, sessions: SessionFactory) -> None:
    # dry powder: scrapped 10 years after manufacture (GB 50444 T.5.4.3)
    made = date(2016, 5, 3)
    b.make_park(
        engine,
        {DEV: "extinguisher", "young": "extinguisher", "blank": "extinguisher"},
        attributes={
            DEV: {"agent": "dry_powder", "manufacture_date": made.isoformat()},
            "young": {"agent": "dry_powder", "manufacture_date": "2020-01-01"},
            "blank": {"agent": "dry_powder"},
        },
    )
    with sessions() as s:
        record = gather(
            s,
            CAT,
            MAY,
            JUNE,
            JUNE,
            scrap_date=register_scrap_date,
            device_ids=[DEV, "young", "blank"],
        )
    timelines = {d.id: device_timeline(d, record) for d in record.devices.values()}
    assert timelines[DEV].not_intact == [(MAY + 2 * DAY, JUNE)]  # 2026-05-03 00:00 UTC
    assert timelines["young"].not_intact == []
    assert timelines["blank"].not_intact == [(MAY, JUNE)]
    assert [s.reason for s in timelines["blank"].stretches] == ["scrap_date_unknown"]


def test_several_reasons_at_once_are_all_listed(engine: Engine, sessions: SessionFactory) -> None:
    b.make_park(engine, {DEV: "extinguisher"})
    _events((T1, "removed"))(engine, sessions)
    _values((T1 + MIN, "pressure_mpa", 0.5))(engine, sessions)
    b.outage(engine, DEV, T1 + 2 * MIN, None)
    with sessions.begin() as s:
        b.task(s, DEV, due=T1 - DAY)
    with sessions() as s:
        figure = current_figure(s, CAT, T2, record_first=False)
    [standing] = figure.non_intact
    assert [(r.code, r.since_ms) for r in standing.reasons] == [
        ("inspection_overdue", T1 - DAY),
        ("removed", T1),
        ("out_of_band", T1 + MIN),
        ("offline", T1 + 2 * MIN),
    ]
    assert standing.since_ms == T1 - DAY

"""The incident store on SQLite and PostgreSQL: activation from alerts and by hand, one open
incident per (plan, zone), steps, overdue on the clock (also after a restart), closing, the
read-only record, drills counted apart, and races between stores (as between processes)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError

from core.db import make_engine
from core.models import DeviceEvent
from rules.alerts import AlertChange, AlertStore
from rules.engine import Raise
from rules.incidents import (
    IncidentChange,
    IncidentConflict,
    IncidentFilter,
    IncidentInputError,
    IncidentNotFound,
    IncidentStore,
)
from tests.conftest import unique
from tests.plans.builders import Clock, plan, plans
from tests.rules.builders import add_park, rule, ruleset

Park = tuple[str, str, str]


@pytest.fixture
def park(db_url: str) -> Park:
    """(url, site, zone prefix) of a fresh small park of the test's own."""
    engine = make_engine(db_url)
    site = unique("s")
    add_park(engine, site, f"{site}-")
    engine.dispose()
    return db_url, site, f"{site}-"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def the_plans() -> Any:
    return plans(
        plan(id="fire", triggers=["confirmed", "prealarm"]),
        plan(
            id="leak", type="chemical_leak", triggers=[{"rule": "gas", "min_severity": "critical"}]
        ),
        plan(id="quake", type="earthquake"),
    )


def alert_rules() -> Any:
    return ruleset(
        rule(id="confirmed", kind="correlation", events=["fire_alarm"], severity="critical"),
        rule(id="prealarm", kind="event", events=["fire_alarm"]),
        rule(id="gas", kind="threshold", metric="gas_lel_pct", above=25),
    )


@pytest.fixture
def stores(park: Park, clock: Clock) -> Iterator[tuple[IncidentStore, AlertStore]]:
    url = park[0]
    incidents = IncidentStore(url, the_plans(), clock=clock)
    alerts = AlertStore(url, alert_rules(), clock=clock)
    incidents.open()
    alerts.open()
    yield incidents, alerts
    incidents.close()
    alerts.close()


def raise_alert(
    alerts: AlertStore, site: str, rule_id: str, subject: str, zone: str, **kw: Any
) -> AlertChange:
    """A real alert in the alert store; its first journaled change (as the bus carries it)."""
    seen: list[AlertChange] = []
    unsubscribe = alerts.bus.subscribe(seen.append)
    try:
        at = alerts.clock()
        device = kw.pop("device", None)
        severity = kw.pop("severity", "critical")
        alerts.apply([Raise(rule_id, subject, severity, at, site, device, zone, kw)], at)
    finally:
        unsubscribe()
    return next(c for c in seen if c.seq is not None)


def activate(incidents: IncidentStore, change: AlertChange, drill: bool = False) -> list[int]:
    return incidents.activate_for_alert(change.alert, change.at_ms, drill)


# ---- activation -----------------------------------------------------------------------------


def test_an_alert_starts_its_plan_once_per_zone_and_later_alerts_attach(
    park: Park, stores: tuple[IncidentStore, AlertStore], clock: Clock
) -> None:
    _, site, p = park
    incidents, alerts = stores
    changes: list[IncidentChange] = []
    incidents.bus.subscribe(changes.append)
    confirmed = raise_alert(alerts, site, "confirmed", f"zone:{p}w1", p + "w1")
    (first,) = activate(incidents, confirmed)
    assert activate(incidents, confirmed) == []  # the same alert again: nothing
    clock.advance(5)
    pre = raise_alert(alerts, site, "prealarm", f"device:{p}smoke1", p + "w1", device=p + "smoke1")
    assert activate(incidents, pre) == [first]
    other_zone = raise_alert(alerts, site, "confirmed", f"zone:{p}w2", p + "w2")
    (second,) = activate(incidents, other_zone)
    assert second != first
    detail = incidents.get(first)
    assert (detail["plan"], detail["zone"], detail["state"], detail["drill"]) == (
        "fire",
        p + "w1",
        "open",
        False,
    )
    assert detail["trigger"] == "alert" and detail["activated"]["by"] == "system"
    assert [a["rule"] for a in detail["alerts"]] == ["confirmed", "prealarm"]
    assert detail["alerts"][0]["state"] == "active"
    assert detail["alert_count"] == 2
    assert [s["id"] for s in detail["steps"]] == ["verify", "call", "recover"]
    verify = detail["steps"][0]
    assert verify["text"] == {"zh": "到w1核实", "en": "Verify in w1"}  # the zone's names
    assert verify["due_ms"] == confirmed.at_ms + 60_000 and verify["state"] == "pending"
    assert detail["steps"][2]["text"]["en"] == "Restore Test park facilities"
    assert [e["action"] for e in detail["timeline"]] == ["activated", "alert_attached"]
    assert [(c.action, c.incident["id"]) for c in changes] == [
        ("activated", first),
        ("alert_attached", first),
        ("activated", second),
    ]
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert changes[0].to_json()["type"] == "incident"


def test_a_plan_with_a_minimum_severity_waits_for_it(
    park: Park, stores: tuple[IncidentStore, AlertStore]
) -> None:
    _, site, p = park
    incidents, alerts = stores
    major = raise_alert(
        alerts, site, "gas", f"device:{p}env1", p + "w1", device=p + "env1", severity="major"
    )
    assert activate(incidents, major) == []
    assert incidents.query(IncidentFilter())[1] == 0


def test_drills_and_real_incidents_never_share_an_incident(
    park: Park, stores: tuple[IncidentStore, AlertStore]
) -> None:
    _, site, p = park
    incidents, alerts = stores
    drill = incidents.activate("fire", "演练员", "季度消防演练", zone=p + "w1", drill=True)
    real = raise_alert(alerts, site, "confirmed", f"zone:{p}w1", p + "w1")
    (real_id,) = activate(incidents, real)
    assert real_id != drill["id"] and drill["drill"] is True
    assert incidents.get(real_id)["drill"] is False
    drills, n = incidents.query(IncidentFilter(drill=True))
    assert n == 1 and drills[0]["id"] == drill["id"] and drills[0]["trigger"] == "manual"


def test_starting_a_plan_by_hand(park: Park, stores: tuple[IncidentStore, AlertStore]) -> None:
    _, site, p = park
    incidents, _ = stores
    with pytest.raises(IncidentInputError, match="reason is required"):
        incidents.activate("quake", "王伟", "  ")
    with pytest.raises(IncidentNotFound, match="no plan with id 'nope'"):
        incidents.activate("nope", "王伟", "why")
    with pytest.raises(IncidentInputError, match="no zone 'mars'"):
        incidents.activate("quake", "王伟", "why", zone="mars")
    with pytest.raises(IncidentInputError, match="no site 'mars'"):
        incidents.activate("quake", "王伟", "why", site="mars")
    with pytest.raises(IncidentInputError, match="is not in site"):
        incidents.activate("quake", "王伟", "why", zone=p + "w1", site="other")
    whole = incidents.activate("quake", "王伟", "四川地震局通报：震感强烈", site=site)
    assert (whole["zone"], whole["site"], whole["reason"]) == (
        None,
        site,
        "四川地震局通报：震感强烈",
    )
    assert whole["steps"][0]["text"]["en"] == "Verify in Test park"
    with pytest.raises(IncidentConflict, match=f"incident {whole['id']} of plan 'quake'"):
        incidents.activate("quake", "李娜", "again", site=site)
    zoned = incidents.activate("quake", "王伟", "why", zone=p + "w1")
    assert zoned["id"] != whole["id"] and zoned["zone_name"] == {"zh": "w1", "en": "w1"}


# ---- steps and closing ----------------------------------------------------------------------


def test_steps_need_what_their_plan_asks_and_move_once(
    park: Park, stores: tuple[IncidentStore, AlertStore], clock: Clock
) -> None:
    _, _, p = park
    incidents, _ = stores
    incident = incidents.activate("fire", "王伟", "drill", zone=p + "w1", drill=True)
    n = incident["id"]
    clock.advance(30)
    done = incidents.complete_step(n, "verify", "巡逻-张三")
    step = done["steps"][0]
    assert (step["state"], step["by"], step["took_s"], step["late"]) == (
        "done",
        "巡逻-张三",
        30,
        False,
    )
    with pytest.raises(IncidentConflict, match="already done"):
        incidents.complete_step(n, "verify", "x")
    with pytest.raises(IncidentInputError, match="needs a note"):
        incidents.complete_step(n, "call", "x", note="   ")
    with pytest.raises(IncidentInputError, match="needs evidence"):
        incidents.complete_step(n, "recover", "x", note="done")
    with pytest.raises(IncidentNotFound, match="has no step 'nope'"):
        incidents.complete_step(n, "nope", "x")
    with pytest.raises(IncidentNotFound, match="no incident with id 999999"):
        incidents.complete_step(999_999, "verify", "x")
    with pytest.raises(IncidentInputError, match="reason is required"):
        incidents.skip_step(n, "call", "x", "")
    clock.advance(100)  # 'call' was due at 2 min: done late
    late = incidents.complete_step(n, "call", "值班员", note="10:02 已拨打119")["steps"][1]
    assert late["late"] is True and late["note"] == "10:02 已拨打119"
    with pytest.raises(IncidentConflict, match="1 pending step"):
        incidents.close_incident(n, "王伟", "扑灭")
    skipped = incidents.skip_step(n, "recover", "王伟", "无设施损坏")["steps"][2]
    assert (skipped["state"], skipped["note"]) == ("skipped", "无设施损坏")
    with pytest.raises(IncidentConflict, match="already skipped"):
        incidents.skip_step(n, "recover", "王伟", "again")
    with pytest.raises(IncidentInputError, match="summary is required"):
        incidents.close_incident(n, "王伟", "")
    clock.advance(10)
    closed = incidents.close_incident(n, "王伟", "演练完成，用时2分20秒")
    assert closed["state"] == "closed" and closed["closed"]["summary"] == "演练完成，用时2分20秒"
    assert closed["durations"]["total_s"] == 140 and closed["durations"]["punctuality"] == 0.5
    assert closed["durations"]["first_step_s"] == 30
    with pytest.raises(IncidentConflict, match="already closed"):
        incidents.close_incident(n, "王伟", "again")
    # the closed record is read-only
    with pytest.raises(IncidentConflict, match="read-only"):
        incidents.skip_step(n, "verify", "x", "y")
    clock.advance(3600)
    record = incidents.get(n)
    assert record["duration_s"] == 140  # a closed incident's duration no longer grows
    assert [(e["action"], e["step"], e["actor"]) for e in record["timeline"]] == [
        ("activated", None, "王伟"),
        ("step_done", "verify", "巡逻-张三"),
        ("step_done", "call", "值班员"),
        ("step_skipped", "recover", "王伟"),
        ("closed", None, "王伟"),
    ]
    # and the (plan, zone) can be started again
    again = incidents.activate("fire", "王伟", "drill 2", zone=p + "w1", drill=True)
    assert again["id"] != n


def test_closing_with_skip_pending_skips_each_step_with_the_summary(
    park: Park, stores: tuple[IncidentStore, AlertStore]
) -> None:
    _, _, p = park
    incidents, _ = stores
    n = incidents.activate("fire", "王伟", "误报核查", zone=p + "w1")["id"]
    closed = incidents.close_incident(n, "王伟", "误报：厨房油烟", skip_pending=True)
    assert [s["state"] for s in closed["steps"]] == ["skipped"] * 3
    assert closed["steps"][0]["note"] == "not done when the incident was closed: 误报：厨房油烟"
    assert closed["progress"]["skipped"] == 3 and closed["progress"]["pending"] == 0


def test_the_journal_is_append_only(park: Park, stores: tuple[IncidentStore, AlertStore]) -> None:
    url, _, p = park
    incidents, _ = stores
    incidents.activate("fire", "王伟", "x", zone=p + "w1")
    engine = make_engine(url)
    try:
        for sql in ("UPDATE incident_journal SET actor = 'x'", "DELETE FROM incident_journal"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
                c.execute(text(sql))
    finally:
        engine.dispose()


# ---- the clock ------------------------------------------------------------------------------


def test_steps_go_overdue_on_time_once_and_after_a_restart(park: Park, clock: Clock) -> None:
    url, _, p = park
    first = IncidentStore(url, the_plans(), clock=clock)
    first.open()
    n = first.activate("fire", "王伟", "x", zone=p + "w1")["id"]
    clock.advance(59.999)
    assert first.mark_overdue() == []
    clock.advance(0.001)
    (change,) = first.mark_overdue()
    step = change.step
    assert step is not None and step["id"] == "verify" and step["overdue"] is True
    assert (change.action, change.to_state) == ("step_overdue", "overdue")
    assert change.incident["progress"]["overdue"] == 1
    assert first.mark_overdue() == []  # notified once
    first.close()
    # down across the next deadline; a new store (process) on the same database
    clock.advance(600)
    second = IncidentStore(url, the_plans(), clock=clock)
    second.open()
    try:
        later = second.mark_overdue()
        assert [c.step["id"] for c in later] == ["call", "recover"]  # type: ignore[index]
        assert [c.to_json()["step"]["due_ms"] for c in later] == [
            clock.ms - 600_000 - 60_000 + 120_000,
            clock.ms - 600_000 - 60_000 + 600_000,
        ]
        detail = second.get(n)
        assert detail["progress"]["overdue"] == 3
        assert [e["action"] for e in detail["timeline"]].count("step_overdue") == 3
        # a closed incident's pending steps are no one's business any more
        m = second.activate("quake", "王伟", "x", zone=p + "w2")["id"]
        second.close_incident(m, "王伟", "false", skip_pending=True)
        clock.advance(3600)
        assert second.mark_overdue() == []
    finally:
        second.close()


# ---- races ----------------------------------------------------------------------------------


def test_racing_alerts_in_several_processes_make_one_incident(
    park: Park, stores: tuple[IncidentStore, AlertStore], clock: Clock
) -> None:
    url, site, p = park
    _, alerts = stores
    racing = [
        raise_alert(alerts, site, "prealarm", f"device:{p}{d}", p + "w1", device=p + d)
        for d in ("smoke1", "smoke2", "heat1", "env1", "ext1", "panel1")
    ]
    others = [IncidentStore(url, the_plans(), clock=clock) for _ in racing]
    for store in others:
        store.open()
    start = threading.Barrier(len(others))

    def go(index: int) -> list[int]:
        start.wait()
        return activate(others[index], racing[index])

    try:
        with ThreadPoolExecutor(len(others)) as pool:
            results = list(pool.map(go, range(len(others))))
        assert len({r[0] for r in results}) == 1
        (incident,) = others[0].query(IncidentFilter(zone=p + "w1"))[0]
        assert incident["alert_count"] == 6
        timeline = others[0].get(incident["id"])["timeline"]
        assert [e["action"] for e in timeline] == ["activated"] + ["alert_attached"] * 5
    finally:
        for store in others:
            store.close()


# ---- figures --------------------------------------------------------------------------------


def test_a_drill_leaves_the_real_figures_untouched(
    park: Park, stores: tuple[IncidentStore, AlertStore], clock: Clock
) -> None:
    _, site, p = park
    incidents, alerts = stores
    since = clock.ms
    real = activate(incidents, raise_alert(alerts, site, "confirmed", f"zone:{p}w1", p + "w1"))[0]
    clock.advance(20)
    incidents.complete_step(real, "verify", "张三")
    before = incidents.figures(since, now=clock.ms + 1)
    drill = incidents.activate("fire", "王伟", "半年度消防演练", zone=p + "w2", drill=True)["id"]
    clock.advance(200)
    incidents.complete_step(drill, "verify", "李四")  # late
    incidents.close_incident(drill, "王伟", "演练结束", skip_pending=True)
    after = incidents.figures(since, now=clock.ms + 1)
    assert before["real"]["incidents"] == 1
    assert after["real"]["incidents"] == 1 and after["real"]["by_plan"] == {"fire": 1}
    assert after["real"]["steps"] == before["real"]["steps"] | {"overdue": 1}  # time went on
    assert after["drills"]["incidents"] == 1 and after["drills"]["closed"] == 1
    assert after["drills"]["steps"]["done_late"] == 1 and after["drills"]["punctuality"] == 0.0
    assert [d["id"] for d in after["drills"]["items"]] == [drill]
    records = {r["plan"]: r for r in after["drill_record"]}
    assert records["fire"]["last_drill"] is not None and records["fire"]["overdue"] is False
    assert records["quake"]["last_drill"] is None and records["quake"]["overdue"] is True
    assert records["fire"]["every_s"] == 182 * 86400
    # a window before everything counts nothing
    empty = incidents.figures(since - 10_000, since)
    assert empty["real"]["incidents"] == 0 and empty["real"]["punctuality"] is None
    # real punctuality: one step done on time, 'call' overdue (2 min), so 1 of 2
    assert after["real"]["punctuality"] == 0.5


# ---- drills from a simulator scenario --------------------------------------------------------


def test_an_alert_from_drill_events_is_a_drill(
    park: Park, stores: tuple[IncidentStore, AlertStore]
) -> None:
    url, site, p = park
    incidents, alerts = stores
    at = alerts.clock()
    drill = {"drill": True, "scenario": "warehouse-fire"}
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(
            insert(DeviceEvent),
            [
                {"device_id": p + d, "ts_ms": at, "seq": 1, "event": "fire_alarm", "detail": x}
                | {"received_ms": at}
                for d, x in (
                    ("smoke1", drill),
                    ("smoke2", drill),
                    ("smoke3", None),
                    ("heat1", drill),
                )
            ],
        )
    engine.dispose()

    def confirmed(zone: str, *devices: str) -> dict[str, Any]:
        return raise_alert(
            alerts,
            site,
            "confirmed",
            f"zone:{p}{zone}",
            p + zone,
            devices=[p + d for d in devices],
            event="fire_alarm",
            window_s=120,
        ).alert

    assert incidents.is_drill(confirmed("w1", "smoke1", "smoke2"), ["fire_alarm"]) is True
    assert incidents.is_drill(confirmed("w2", "smoke3", "heat1"), ["fire_alarm"]) is False
    one = raise_alert(
        alerts,
        site,
        "prealarm",
        f"device:{p}smoke1",
        p + "w1",
        device=p + "smoke1",
        seq=1,
        ts_ms=at,
    )
    assert incidents.is_drill(one.alert) is True
    said = raise_alert(
        alerts, site, "prealarm", f"device:{p}smoke2", p + "w1", device=p + "smoke2", drill=True
    )
    assert incidents.is_drill(said.alert) is True
    gas = raise_alert(alerts, site, "gas", f"device:{p}env1", p + "w1", device=p + "env1", value=60)
    assert incidents.is_drill(gas.alert) is False  # no event behind it: real


def test_an_alert_joins_a_drill_and_a_real_incident_once_each(
    park: Park, stores: tuple[IncidentStore, AlertStore]
) -> None:
    _, site, p = park
    incidents, alerts = stores
    confirmed = raise_alert(alerts, site, "confirmed", f"zone:{p}w1", p + "w1")
    (drill,) = activate(incidents, confirmed, drill=True)
    assert activate(incidents, confirmed, drill=True) == []
    (real,) = activate(incidents, confirmed, drill=False)  # real events under it later
    assert real != drill and activate(incidents, confirmed, drill=False) == []
    assert incidents.get(real)["drill"] is False and incidents.get(drill)["drill"] is True
    assert incidents.get(real)["alerts"][0]["id"] == incidents.get(drill)["alerts"][0]["id"]

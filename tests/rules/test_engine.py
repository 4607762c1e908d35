"""The engine with plain data: every rule kind, its timers, and restoring them."""

from __future__ import annotations

from rules.engine import CancelTimer, Clear, Decision, Raise, Timer
from tests.rules.builders import engine, event, only, presence, reading, rule

S = 1000  # one second in ms


def run(eng, fn, *args) -> list[Decision]:  # type: ignore[no-untyped-def]
    out: list[Decision] = []
    fn(*args, out)
    return out


# ---- event ----------------------------------------------------------------------------------


def test_event_rule_raises_each_time_and_clears_on_its_clear_event() -> None:
    r = rule(
        id="fire",
        kind="event",
        events=["fire_alarm"],
        clear_events=["alarm_cleared"],
        severity="critical",
        scope={"device_types": ["smoke_detector"]},
    )
    eng = engine(r)
    first = run(eng, eng.on_event, event("smoke1", "fire_alarm"), 10)
    assert [(d.rule_id, d.subject, d.severity, d.zone_id) for d in only(first, Raise)] == [
        ("fire", "device:smoke1", "critical", "w1")
    ]
    again = run(eng, eng.on_event, event("smoke1", "fire_alarm", seq=1), 20)
    assert len(only(again, Raise)) == 1  # the store turns this into count 2
    cleared = run(eng, eng.on_event, event("smoke1", "alarm_cleared", seq=2), 30)
    assert [(d.rule_id, d.subject) for d in only(cleared, Clear)] == [("fire", "device:smoke1")]


def test_event_rule_ignores_devices_out_of_scope_and_unknown_devices() -> None:
    eng = engine(rule(id="fire", kind="event", events=["fire_alarm"], scope={"zones": ["w2"]}))
    assert run(eng, eng.on_event, event("smoke1", "fire_alarm"), 10) == []
    assert run(eng, eng.on_event, event("nobody", "fire_alarm"), 10) == []
    assert eng.unknown_devices == 1
    assert len(run(eng, eng.on_event, event("smoke3", "fire_alarm"), 10)) == 1


def test_event_rule_clear_after_quiet_period() -> None:
    eng = engine(rule(id="tamper", kind="event", events=["tamper"], clear_after="30s"))
    out = run(eng, eng.on_event, event("smoke1", "tamper"), 0)
    timers = only(out, Timer)
    assert [(t.kind, t.due_ms) for t in timers] == [("clear_after", 30 * S)]
    assert run(eng, eng.on_tick, 29 * S) == []
    fired = run(eng, eng.on_tick, 30 * S)
    assert only(fired, Clear) and only(fired, CancelTimer)


# ---- threshold ------------------------------------------------------------------------------


def gas(**extra: object) -> object:
    return rule(
        id="gas",
        kind="threshold",
        metric="gas_lel_pct",
        above=25,
        clear=20,
        scope={"device_types": ["warehouse_env"]},
        **extra,
    )


def test_threshold_raises_at_level_and_clears_only_below_the_clear_level() -> None:
    eng = engine(gas())
    assert run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=24.9), 0) == []
    raised = only(run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=25.0), 1), Raise)
    assert raised and raised[0].detail["value"] == 25.0
    # inside the hysteresis band: nothing; still above: no second raise
    assert run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=22), 2) == []
    assert run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=40), 3) == []
    assert only(run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=19.9), 4), Clear)


def test_threshold_below() -> None:
    eng = engine(rule(id="p", kind="threshold", metric="pressure_mpa", below=1.0, clear=1.05))
    assert only(run(eng, eng.on_telemetry, reading("ext1", pressure_mpa=0.9), 0), Raise)
    assert run(eng, eng.on_telemetry, reading("ext1", pressure_mpa=1.02), 1) == []
    assert only(run(eng, eng.on_telemetry, reading("ext1", pressure_mpa=1.1), 2), Clear)


def test_threshold_for_fires_on_time_without_another_reading() -> None:
    eng = engine(gas(**{"for": "10s"}))
    out = run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=30), 0)
    assert [(t.kind, t.due_ms) for t in only(out, Timer)] == [("for", 10 * S)]
    assert run(eng, eng.on_tick, 9_999) == []
    fired = run(eng, eng.on_tick, 10 * S)
    assert only(fired, Raise)[0].severity == "major"


def test_threshold_for_is_cancelled_when_the_value_drops_back() -> None:
    eng = engine(gas(**{"for": "10s"}))
    run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=30), 0)
    out = run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=24), 5 * S)
    assert only(out, CancelTimer)
    assert run(eng, eng.on_tick, 20 * S) == []


def test_threshold_hold_delays_the_clear_and_a_relapse_keeps_it_raised() -> None:
    eng = engine(gas(hold="60s"))
    run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=30), 0)
    out = run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=10), 1 * S)
    assert [(t.kind, t.due_ms) for t in only(out, Timer)] == [("hold", 61 * S)]
    # back up before the hold is over: raised again, no new alert, hold cancelled
    relapse = run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=30), 30 * S)
    assert not only(relapse, Raise) and only(relapse, CancelTimer)
    assert run(eng, eng.on_tick, 100 * S) == []
    run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=10), 100 * S)
    assert run(eng, eng.on_tick, 159 * S) == []
    assert only(run(eng, eng.on_tick, 160 * S), Clear)


def test_threshold_ignores_values_of_the_wrong_kind() -> None:
    eng = engine(gas())
    assert run(eng, eng.on_telemetry, reading("env1", gas_lel_pct=True), 0) == []
    assert run(eng, eng.on_telemetry, reading("env1", gas_lel_pct="high"), 0) == []


# ---- state_for ------------------------------------------------------------------------------


def lane() -> object:
    return rule(
        id="lane",
        kind="state_for",
        metric="obstructed",
        equals=True,
        **{"for": "60s"},
        stages=[{"after": "5m", "severity": "critical"}],
        scope={"device_types": ["fire_lane"]},
    )


def test_state_for_fires_on_time_and_escalates_by_stage_without_messages() -> None:
    eng = engine(lane())
    run(eng, eng.on_telemetry, reading("lane1", obstructed=True), 0)
    assert run(eng, eng.on_tick, 59 * S) == []
    first = only(run(eng, eng.on_tick, 60 * S), Raise)
    assert [(r.severity, r.subject) for r in first] == [("major", "device:lane1")]
    assert run(eng, eng.on_tick, 299 * S) == []
    second = only(run(eng, eng.on_tick, 300 * S), Raise)
    assert [r.severity for r in second] == ["critical"]
    assert second[0].detail["held_s"] == 300
    assert run(eng, eng.on_tick, 10_000 * S) == []


def test_state_for_clears_when_the_value_changes() -> None:
    eng = engine(lane())
    run(eng, eng.on_telemetry, reading("lane1", obstructed=True), 0)
    run(eng, eng.on_tick, 60 * S)
    assert only(run(eng, eng.on_telemetry, reading("lane1", obstructed=False), 70 * S), Clear)
    assert run(eng, eng.on_tick, 400 * S) == []  # the stage timer went with it


def test_state_for_does_not_take_1_for_true() -> None:
    eng = engine(lane())
    assert run(eng, eng.on_telemetry, reading("lane1", obstructed=1.0), 0) == []


# ---- rate of rise ---------------------------------------------------------------------------


def ror() -> object:
    return rule(
        id="ror",
        kind="rate_of_rise",
        metric="temperature_c",
        rise=8,
        per="1m",
        window="60s",
        min_span="20s",
        clear_rise=4,
        scope={"device_types": ["heat_detector"]},
    )


def test_rate_of_rise_uses_device_time_and_needs_a_minimum_span() -> None:
    eng = engine(ror())
    assert run(eng, eng.on_telemetry, reading("heat1", ts=0, temperature_c=20), 0) == []
    # +5 °C in 10 s is 30 °C/min, but 10 s is less than min_span: no verdict yet
    assert run(eng, eng.on_telemetry, reading("heat1", ts=10 * S, temperature_c=25), 1) == []
    out = run(eng, eng.on_telemetry, reading("heat1", ts=30 * S, temperature_c=25), 2)
    raised = only(out, Raise)
    assert raised and raised[0].detail["rate"] == 10.0


def test_rate_of_rise_slow_warming_does_not_raise_and_cooling_clears() -> None:
    eng = engine(ror())
    for i in range(10):  # 1 °C per 20 s = 3 °C/min
        out = run(eng, eng.on_telemetry, reading("heat1", ts=i * 20 * S, temperature_c=20 + i), i)
        assert out == []
    eng2 = engine(ror())
    run(eng2, eng2.on_telemetry, reading("heat1", ts=0, temperature_c=20), 0)
    assert only(
        run(eng2, eng2.on_telemetry, reading("heat1", ts=30 * S, temperature_c=30), 1), Raise
    )
    out = run(eng2, eng2.on_telemetry, reading("heat1", ts=90 * S, temperature_c=30), 2)
    assert only(out, Clear)


def test_rate_of_rise_skips_out_of_order_readings() -> None:
    eng = engine(ror())
    run(eng, eng.on_telemetry, reading("heat1", ts=30 * S, temperature_c=20), 0)
    assert run(eng, eng.on_telemetry, reading("heat1", ts=0, temperature_c=90), 1) == []


# ---- absence --------------------------------------------------------------------------------


def test_absence_fires_after_the_heartbeat_window_without_messages() -> None:
    eng = engine(rule(id="silent", kind="absence", scope={"device_types": ["smoke_detector"]}))
    run(eng, eng.on_telemetry, reading("smoke1", obscuration_db_m=0.0), 0)
    out = run(eng, eng.on_tick, 299 * S)
    assert not [r for r in only(out, Raise) if r.subject == "device:smoke1"]
    out = run(eng, eng.on_tick, 300 * S)
    fired = [r for r in only(out, Raise) if r.subject == "device:smoke1"]
    assert fired and fired[0].detail["cause"] == "silence"
    assert not [
        r for r in only(run(eng, eng.on_tick, 400 * S), Raise) if r.subject == "device:smoke1"
    ]
    back = run(eng, eng.on_event, event("smoke1", "test"), 401 * S)
    assert [(c.rule_id, c.subject) for c in only(back, Clear)] == [("silent", "device:smoke1")]


def test_absence_raises_at_once_when_reported_offline_and_clears_when_online() -> None:
    eng = engine(rule(id="silent", kind="absence", after="1h", scope={"devices": ["ext1"]}))
    out = run(eng, eng.on_presence, presence("ext1", "offline"), 5)
    assert [r.detail["cause"] for r in only(out, Raise)] == ["status"]
    assert run(eng, eng.on_presence, presence("ext1", "offline", cause="silence"), 6) == []
    assert run(eng, eng.on_presence, presence("ext1", "unknown", cause="broker_lost"), 7) == []
    assert only(run(eng, eng.on_presence, presence("ext1", "online"), 8), Clear)


def test_absence_deadlines_are_persisted_now_and_then() -> None:
    eng = engine(rule(id="silent", kind="absence", after="10s", scope={"devices": ["ext1"]}))
    first = only(run(eng, eng.on_tick, 0), Timer)
    assert [(t.kind, t.due_ms) for t in first] == [("absence", 10 * S)]
    run(eng, eng.on_telemetry, reading("ext1", present=True), 4 * S)
    # moved by less than half its window: left to the collector's last_seen, not written
    assert only(run(eng, eng.on_tick, 4 * S), Timer) == []
    run(eng, eng.on_telemetry, reading("ext1", present=True), 5 * S)
    later = only(run(eng, eng.on_tick, 7 * S), Timer)
    assert [t.due_ms for t in later] == [15 * S]
    run(eng, eng.on_telemetry, reading("ext1", present=True), 8 * S)
    out: list[Decision] = []
    eng.flush_absence(out, everything=True)  # on stop: every move is written
    assert [t.due_ms for t in only(out, Timer)] == [18 * S]


# ---- correlation ----------------------------------------------------------------------------


def confirmed() -> object:
    return rule(
        id="confirmed",
        kind="correlation",
        events=["fire_alarm"],
        min_devices=2,
        window="120s",
        severity="critical",
        scope={"device_types": ["smoke_detector", "heat_detector"]},
    )


def test_correlation_needs_two_distinct_devices_in_one_zone_within_the_window() -> None:
    eng = engine(confirmed())
    assert run(eng, eng.on_event, event("smoke1", "fire_alarm"), 0) == []
    assert run(eng, eng.on_event, event("smoke1", "fire_alarm", seq=1), 1 * S) == []
    assert run(eng, eng.on_event, event("smoke3", "fire_alarm"), 2 * S) == []  # other zone
    out = only(run(eng, eng.on_event, event("heat1", "fire_alarm"), 60 * S), Raise)
    assert [(r.subject, r.zone_id, r.device_id, r.detail["devices"]) for r in out] == [
        ("zone:w1", "w1", None, ["heat1", "smoke1"])
    ]


def test_correlation_window_expires() -> None:
    eng = engine(confirmed())
    run(eng, eng.on_event, event("smoke1", "fire_alarm"), 0)
    assert run(eng, eng.on_event, event("smoke2", "fire_alarm"), 121 * S) == []


def test_single_detector_pre_alarm_and_confirmed_fire_together() -> None:
    pre = rule(id="pre", kind="event", events=["fire_alarm"], severity="major")
    eng = engine(pre, confirmed())
    one = only(run(eng, eng.on_event, event("smoke1", "fire_alarm"), 0), Raise)
    assert [r.rule_id for r in one] == ["pre"]
    two = only(run(eng, eng.on_event, event("smoke2", "fire_alarm"), 1), Raise)
    assert sorted(r.rule_id for r in two) == ["confirmed", "pre"]


# ---- location -------------------------------------------------------------------------------


def hazmat() -> object:
    return rule(id="loc", kind="location", scope={"device_types": ["asset_tag"]})


def test_location_hazardous_goods_outside_a_hazmat_zone() -> None:
    eng = engine(hazmat())
    assert run(eng, eng.on_telemetry, reading("tag1", zone="hz", hazardous=True), 0) == []
    out = only(run(eng, eng.on_telemetry, reading("tag1", zone="w1"), 1), Raise)
    assert [(r.zone_id, r.detail["zone_kind"]) for r in out] == [("w1", "warehouse")]
    # moved on to another wrong zone: the same alert again, now with the new zone
    moved = only(run(eng, eng.on_telemetry, reading("tag1", zone="w2"), 2), Raise)
    assert [r.zone_id for r in moved] == ["w2"]
    assert run(eng, eng.on_telemetry, reading("tag1", zone="w2"), 3) == []
    assert only(run(eng, eng.on_telemetry, reading("tag1", zone="hz"), 4), Clear)


def test_location_unknown_zone_raises_and_non_hazardous_goods_do_not() -> None:
    eng = engine(hazmat())
    out = only(
        run(eng, eng.on_telemetry, reading("tag1", zone="nowhere", hazardous=True), 0), Raise
    )
    assert out and out[0].detail["zone_kind"] is None and out[0].zone_id == "hz"
    eng2 = engine(hazmat())
    assert run(eng2, eng2.on_telemetry, reading("tag1", zone="w1", hazardous=False), 0) == []


# ---- forget and restore ---------------------------------------------------------------------


def test_forget_after_a_manual_resolve_rearms_a_condition_that_still_holds() -> None:
    eng = engine(lane())
    run(eng, eng.on_telemetry, reading("lane1", obstructed=True), 0)
    run(eng, eng.on_tick, 60 * S)
    out = run(eng, eng.forget, "lane", "device:lane1", 100 * S)
    assert [(t.kind, t.due_ms) for t in only(out, Timer)] == [("for", 160 * S)]
    assert only(run(eng, eng.on_tick, 160 * S), Raise)


def test_restore_takes_back_pending_timers_and_open_alerts() -> None:
    eng = engine(lane(), gas())
    persisted = only(run(eng, eng.on_telemetry, reading("lane1", obstructed=True), 0), Timer)
    fresh = engine(lane(), gas())
    fresh.restore(10 * S, open_keys=[("gas", "device:env1")], timers=persisted)
    assert run(fresh, fresh.on_tick, 59 * S) == []
    assert only(run(fresh, fresh.on_tick, 60 * S), Raise)
    # the open gas alert is known: a high reading is not a second raise, a low one clears
    assert run(fresh, fresh.on_telemetry, reading("env1", gas_lel_pct=40), 61 * S) == []
    assert only(run(fresh, fresh.on_telemetry, reading("env1", gas_lel_pct=1), 62 * S), Clear)


def test_restore_evaluates_last_values_and_cancels_timers_of_removed_rules() -> None:
    fresh = engine(hazmat())
    stale = Timer("gone", "device:x", "for", 5, {})
    out = fresh.restore(0, timers=[stale], last_values={"tag1": {"zone": "w1", "hazardous": True}})
    assert only(out, CancelTimer) == [CancelTimer("gone", "device:x")]
    assert [r.rule_id for r in only(out, Raise)] == ["loc"]


def test_restore_silence_deadline_from_last_seen() -> None:
    eng = engine(rule(id="silent", kind="absence", after="100s", scope={"devices": ["ext1"]}))
    timer = Timer("silent", "device:ext1", "absence", 50 * S, {})
    eng.restore(0, timers=[timer], last_seen_ms={"ext1": 20 * S})
    assert not only(run(eng, eng.on_tick, 119 * S), Raise)
    assert only(run(eng, eng.on_tick, 120 * S), Raise)


def test_correlation_window_restored_from_recent_events() -> None:
    eng = engine(confirmed())
    eng.restore(100 * S, recent_events=[(90 * S, "smoke1", "fire_alarm")])
    assert only(run(eng, eng.on_event, event("heat1", "fire_alarm"), 100 * S), Raise)

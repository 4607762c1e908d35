"""Each fault mode does what it says, seen from a real broker: what the device publishes (and,
for a last-will storm, what the broker publishes on its behalf)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from core.contract import (
    BAD_TOPIC,
    INVALID_FIELDS,
    NOT_JSON,
    NOT_OBJECT,
    NOT_UTF8,
    TOO_LARGE,
    ContractError,
    Event,
    Status,
    Telemetry,
    decode,
)
from simulators.faults import MALFORMED_KINDS
from simulators.fleet import Fleet
from tests.simulators.helpers import (
    Observer,
    Seen,
    demo_devices,
    observing,
    running_fleet,
    scenario,
    wait_until,
)

SMOKE, SMOKE2, HEAT = "A1-W1-SD001", "A1-W1-SD002", "A1-DOCK-HD001"
SPEED = 1500  # detectors report every 0.08 s


@contextmanager
def fleet_of(
    broker: tuple[str, int], *ids: str, **options: Any
) -> Iterator[tuple[Fleet, Observer]]:
    options.setdefault("speed", SPEED)
    with observing(broker) as observer, running_fleet(demo_devices(*ids), broker, **options) as f:
        yield f, observer


def fault(device: str | list[str], spec: Any, **more: Any) -> Any:
    devices = [device] if isinstance(device, str) else device
    return scenario({"at": 0, "devices": devices, "fault": spec, **more})


def apply(fleet: Fleet, steps: Any, speed: float | None = None) -> int:
    """Play steps that run at once and wait until they have: later messages are faulty."""
    playback = fleet.play(steps, speed=speed)
    wait_until(lambda: bool(playback.ran), what="the steps to run")
    time.sleep(0.05)  # what the device sent before has arrived by now
    return now_ms()


def telemetry_after(observer: Observer, device: str, since_ms: int, n: int) -> list[Seen]:
    def enough() -> bool:
        return len(recent()) >= n

    def recent() -> list[Seen]:
        return [s for s in observer.of(device, "telemetry") if s.at_ms >= since_ms]

    wait_until(enough, what=f"{n} messages from {device}")
    return recent()[:n]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_duplicates_repeat_the_same_seq_and_ts(sim_broker: tuple[str, int]) -> None:
    with fleet_of(sim_broker, SMOKE) as (fleet, observer):
        start = apply(fleet, fault(SMOKE, "duplicates"))
        got = [s.decoded() for s in telemetry_after(observer, SMOKE, start, 6)]
    assert all(isinstance(m, Telemetry) for m in got)
    pairs = [(m.seq, m.ts_ms) for m in got]  # type: ignore[union-attr]
    assert pairs[0::2] == pairs[1::2]  # each identity twice in a row
    assert len(set(pairs)) == 3


def test_malformed_payloads_are_each_rejected_by_the_contract(
    sim_broker: tuple[str, int],
) -> None:
    expected = {
        "not_json": NOT_JSON,
        "not_utf8": NOT_UTF8,
        "not_object": NOT_OBJECT,
        "missing_field": INVALID_FIELDS,
        "wrong_type": INVALID_FIELDS,
        "too_large": TOO_LARGE,
        "bad_topic": BAD_TOPIC,
    }
    assert set(expected) == set(MALFORMED_KINDS)
    with fleet_of(sim_broker, SMOKE) as (fleet, observer):
        start = now_ms()
        fleet.play(fault(SMOKE, "malformed"))
        wait_until(
            lambda: len(rejected(observer, start)) >= len(expected),
            what="a message of each malformed kind",
        )
        time.sleep(0.3)
    since = [s for s in observer.all() if s.at_ms >= start and s.channel != "status"]
    first_bad = next(i for i, s in enumerate(since) if reason(s))
    reasons = [reason(s) for s in since[first_bad:]]
    assert None not in reasons  # once faulty, every message is malformed
    assert sorted(map(str, reasons[: len(expected)])) == sorted(expected.values())


def reason(seen: Seen) -> str | None:
    try:
        decode(seen.topic, seen.payload)
    except ContractError as exc:
        return exc.reason
    return None


def rejected(observer: Observer, since_ms: int) -> list[Seen]:
    return [s for s in observer.all() if s.at_ms >= since_ms and reason(s)]


def test_one_malformed_kind_on_its_own(sim_broker: tuple[str, int]) -> None:
    with fleet_of(sim_broker, SMOKE) as (fleet, observer):
        start = apply(fleet, fault(SMOKE, {"mode": "malformed", "kind": "missing_field"}))
        got = telemetry_after(observer, SMOKE, start, 2)
    for seen in got:
        body = orjson.loads(seen.payload)
        assert "seq" not in body and "metrics" in body


def test_out_of_order_sends_newer_messages_before_older_ones(
    sim_broker: tuple[str, int],
) -> None:
    with fleet_of(sim_broker, SMOKE) as (fleet, observer):
        start = apply(fleet, fault(SMOKE, {"mode": "out_of_order", "depth": 3}))
        got = [s.decoded() for s in telemetry_after(observer, SMOKE, start, 6)]
    seqs = [m.seq for m in got if isinstance(m, Telemetry)]
    stamps = [m.ts_ms for m in got if isinstance(m, Telemetry)]
    assert seqs[0:3] == sorted(seqs[0:3], reverse=True)
    assert seqs[3:6] == sorted(seqs[3:6], reverse=True)
    assert seqs[3] > seqs[0]  # each batch is newer than the one before
    assert stamps[0] >= stamps[2]  # ts runs backwards within a batch


def test_clock_skew_shifts_timestamps(sim_broker: tuple[str, int]) -> None:
    with fleet_of(sim_broker, SMOKE) as (fleet, observer):
        start = apply(fleet, fault(SMOKE, {"mode": "clock_skew", "offset": "-90s"}))
        got = telemetry_after(observer, SMOKE, start, 3)
    for seen in got:
        skew = seen.decoded().ts_ms - seen.at_ms
        assert -91_000 < skew < -89_000


def test_a_stuck_sensor_keeps_its_value_while_the_device_keeps_reporting(
    sim_broker: tuple[str, int],
) -> None:
    with fleet_of(sim_broker, HEAT) as (fleet, observer):
        start = now_ms()
        before = [s.decoded() for s in telemetry_after(observer, HEAT, start, 5)]
        later = apply(fleet, fault(HEAT, {"mode": "stuck", "metric": "temperature_c"}))
        after = [s.decoded() for s in telemetry_after(observer, HEAT, later, 5)]
    assert len({m.metrics["temperature_c"] for m in before}) > 1  # type: ignore[union-attr]
    assert len({m.metrics["temperature_c"] for m in after}) == 1  # type: ignore[union-attr]
    seqs = [m.seq for m in after]  # type: ignore[union-attr]
    assert seqs == sorted(set(seqs))


def test_flapping_jumps_across_the_threshold_on_every_report(
    sim_broker: tuple[str, int],
) -> None:
    spec = {"mode": "flapping", "metric": "obscuration_db_m", "around": 0.15, "amplitude": 0.05}
    with fleet_of(sim_broker, SMOKE, speed=1) as (fleet, observer):
        start = apply(fleet, fault(SMOKE, spec | {"every": "1s"}), speed=10)  # every 0.1 s
        got = [s.decoded() for s in telemetry_after(observer, SMOKE, start, 6)]
    values = [m.metrics["obscuration_db_m"] for m in got]  # type: ignore[union-attr]
    assert set(values) == {0.1, 0.2}
    assert all(a != b for a, b in itertools.pairwise(values))


def test_silence_sends_nothing_and_leaves_no_will(sim_broker: tuple[str, int]) -> None:
    with fleet_of(sim_broker, SMOKE, SMOKE2) as (fleet, observer):
        fleet.play(fault(SMOKE, "silence", **{"for": SPEED * 1.5}))  # 1.5 real seconds
        time.sleep(0.3)
        quiet_from = now_ms()
        time.sleep(0.6)
        during = [s for s in observer.of(SMOKE) if s.at_ms >= quiet_from]
        others = [s for s in observer.of(SMOKE2) if s.at_ms >= quiet_from]
        wait_until(
            lambda: any(s.at_ms > quiet_from + 1200 for s in observer.of(SMOKE, "telemetry")),
            what="reports again after the silence",
        )
    assert during == []  # no telemetry, no status, no will: the connection stays up
    assert len(others) >= 2
    assert fleet.stats().suppressed >= 2


def test_battery_low_reads_low_and_says_so_once(sim_broker: tuple[str, int]) -> None:
    panel = "A1-ELEC-FAP001"
    with fleet_of(sim_broker, SMOKE, panel) as (fleet, observer):
        start = apply(fleet, fault([SMOKE, panel], {"mode": "battery_low", "level": 9}))
        got = [s.decoded() for s in telemetry_after(observer, SMOKE, start, 3)]
        panel_got = [s.decoded() for s in telemetry_after(observer, panel, start, 1)]
        events = [s.decoded() for s in observer.of(SMOKE, "event")]
    assert all(m.metrics["battery_pct"] == 9 for m in got)  # type: ignore[union-attr]
    assert panel_got[0].metrics["battery_ok"] is False  # type: ignore[union-attr]
    assert [(e.event, e.detail) for e in events if isinstance(e, Event)] == [
        ("battery_low", {"battery_pct": 9.0})
    ]


def test_a_last_will_storm_makes_the_broker_publish_the_wills(
    sim_broker: tuple[str, int],
) -> None:
    ids = [f"A1-W1-SD{n:03d}" for n in range(1, 6)]
    dropped = ids[:3]
    with fleet_of(sim_broker, *ids) as (fleet, observer):
        sent_statuses = fleet.stats().by_channel["status"]
        start = now_ms()
        fleet.play(scenario({"at": 0, "devices": dropped, "fault": "last_will_storm"}))
        wait_until(lambda: all(offline_since(observer, d, start) for d in dropped), what="wills")
        time.sleep(0.3)
        assert fleet.stats().by_channel["status"] == sent_statuses  # the broker sent them
        assert fleet.stats().links_up == 2
        assert not any(offline_since(observer, d, start) for d in ids[3:])
        quiet_from = now_ms()
        time.sleep(0.5)
        assert not any(s.at_ms > quiet_from for d in dropped for s in observer.of(d))
        fleet.play(scenario({"at": 0, "devices": dropped, "clear": "last_will_storm"}))
        wait_until(lambda: fleet.stats().links_up == 5, what="reconnected")
        wait_until(
            lambda: all(online_since(observer, d, quiet_from) for d in dropped), what="online"
        )


def test_a_multiplexed_fleet_sends_the_offline_statuses_itself(
    sim_broker: tuple[str, int],
) -> None:
    ids = [f"A1-W1-SD{n:03d}" for n in range(1, 6)]
    with fleet_of(sim_broker, *ids, connection="multiplexed", clients=2) as (fleet, observer):
        assert fleet.stats().links == 2
        start = now_ms()
        fleet.play(scenario({"at": 0, "devices": ids[:3], "fault": "last_will_storm"}))
        wait_until(lambda: all(offline_since(observer, d, start) for d in ids[:3]))
        assert fleet.stats().links_up == 2  # the shared connections stay up


def test_a_fault_with_a_duration_clears_itself(sim_broker: tuple[str, int]) -> None:
    with fleet_of(sim_broker, SMOKE) as (fleet, observer):
        start = apply(fleet, fault(SMOKE, {"mode": "battery_low", "level": 5}, **{"for": SPEED}))
        wait_until(lambda: battery(observer, start)[:2] == [5.0] * 2, what="low battery")
        time.sleep(1.0)  # the fault lasts a second
        later = now_ms()
        wait_until(lambda: len(battery(observer, later)) >= 2)
        assert all(value > 50 for value in battery(observer, later))


def test_stopping_abruptly_leaves_the_wills_to_the_broker(sim_broker: tuple[str, int]) -> None:
    with observing(sim_broker) as observer:
        fleet = Fleet(demo_devices(SMOKE, SMOKE2), f"mqtt://{sim_broker[0]}:{sim_broker[1]}")
        fleet.start()
        assert fleet.wait_ready(10)
        start = now_ms()
        fleet.stop(graceful=False)
        wait_until(lambda: all(offline_since(observer, d, start) for d in (SMOKE, SMOKE2)))


def test_a_step_that_fails_is_counted_and_the_fleet_carries_on(
    sim_broker: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("a bug in a step")

    with fleet_of(sim_broker, SMOKE) as (fleet, observer):
        fleet.call(broken)
        wait_until(lambda: fleet.errors == 1, what="the error counted")
        start = now_ms()
        telemetry_after(observer, SMOKE, start, 2)  # still reporting
    assert "a bug in a step" in caplog.text


def offline_since(observer: Observer, device: str, since_ms: int) -> bool:
    return any(
        s.at_ms >= since_ms and s.decoded() == Status(device, "cdpark", s.decoded().ts_ms, False)
        for s in observer.of(device, "status")
    )


def online_since(observer: Observer, device: str, since_ms: int) -> bool:
    return any(
        s.at_ms >= since_ms and getattr(s.decoded(), "online", None) is True
        for s in observer.of(device, "status")
    )


def battery(observer: Observer, since_ms: int) -> list[float]:
    return [
        float(m.metrics["battery_pct"])
        for s in observer.of(SMOKE, "telemetry")
        if s.at_ms >= since_ms and isinstance(m := s.decoded(), Telemetry)
    ]

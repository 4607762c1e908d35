"""The rules service through real parts: Mosquitto → collector → service → alerts in the
database, and restart safety (a clock started before a restart fires on time after it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from collector.client import BrokerAddress
from collector.service import Collector
from core.catalogue import load_catalogue
from core.contract import Event, Telemetry, encode_event, encode_telemetry, now_ms, topic_for
from core.db import make_engine
from core.ingest import CommittedBatch
from core.models import Device
from core.readings import SqlReadingsStore
from core.settings import Settings
from rules.alerts import AlertFilter
from rules.service import RulesService
from rules.spec import RuleFileError
from tests.collector.helpers import publish_all, wait_for
from tests.conftest import unique
from tests.rules.builders import add_park, rule, ruleset


@pytest.fixture
def park(db_url: str) -> Iterator[tuple[str, str, dict[str, str], str]]:
    """(url, site, logical name → device id, zone prefix) of a fresh park of the test's own."""
    engine = make_engine(db_url)
    site = unique("s")
    prefix = f"{site}-"
    ids = add_park(engine, site, prefix)
    engine.dispose()
    yield db_url, site, ids, prefix


@contextmanager
def running(url: str, rules: Any, **kwargs: Any) -> Iterator[RulesService]:
    service = RulesService(url, rules, tick_s=0.05, **kwargs)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@contextmanager
def collector_for(url: str, broker: tuple[str, int], service: RulesService) -> Iterator[Engine]:
    engine = make_engine(url)
    collector = Collector(
        Settings(database_url=url, mqtt_client_id=unique("col"), flush_interval_ms=50),
        engine,
        SqlReadingsStore(engine),
        load_catalogue(),
        BrokerAddress(*broker),
        listeners=[service.on_batch],
    )
    collector.start()
    wait_for(lambda: collector.status().broker_connected, what="collector connected")
    try:
        yield engine
    finally:
        collector.stop()
        engine.dispose()


def open_alerts(service: RulesService, **where: Any) -> list[dict[str, Any]]:
    return service.store.query(AlertFilter(state="open", **where), limit=100)[0]


def by_rule(service: RulesService) -> dict[str, dict[str, Any]]:
    return {a["rule"]: a for a in open_alerts(service)}


def every_kind() -> Any:
    return ruleset(
        rule(
            id="fire",
            kind="event",
            events=["fire_alarm"],
            severity="major",
            scope={"device_types": ["smoke_detector"]},
        ),
        rule(id="gas", kind="threshold", metric="gas_lel_pct", above=25, clear=20),
        rule(id="lane", kind="state_for", metric="obstructed", equals=True, **{"for": "1s"}),
        rule(
            id="ror",
            kind="rate_of_rise",
            metric="temperature_c",
            rise=8,
            min_span="10s",
            scope={"device_types": ["heat_detector"]},
        ),
        rule(id="silent", kind="absence", after="1s", scope={"device_types": ["extinguisher"]}),
        rule(
            id="confirmed",
            kind="correlation",
            events=["fire_alarm"],
            severity="critical",
            scope={"device_types": ["smoke_detector", "heat_detector"]},
        ),
        rule(id="loc", kind="location", scope={"device_types": ["asset_tag"]}),
    )


def test_every_rule_kind_through_broker_collector_and_service(
    park: tuple[str, str, dict[str, str], str], broker: tuple[str, int]
) -> None:
    url, site, ids, prefix = park
    t = now_ms()

    def tele(name: str, seq: int, ts: int = t, **metrics: Any) -> tuple[str, bytes]:
        return topic_for(site, ids[name], "telemetry"), encode_telemetry(ts, seq, metrics)

    def evt(name: str, seq: int, event: str) -> tuple[str, bytes]:
        return topic_for(site, ids[name], "event"), encode_event(t, seq, event)

    with running(url, every_kind()) as service, collector_for(url, broker, service):
        publish_all(
            broker,
            [
                evt("smoke1", 1, "fire_alarm"),
                evt("heat1", 1, "fire_alarm"),
                tele("env1", 1, gas_lel_pct=30.0),
                tele("lane1", 1, obstructed=True),
                tele("heat1", 2, ts=t - 30_000, temperature_c=20.0),
                tele("heat1", 3, ts=t, temperature_c=30.0),
                tele("ext1", 1, pressure_mpa=1.2),
                tele("tag1", 1, zone=prefix + "w1", hazardous=True),
            ],
        )
        wanted = {"fire", "gas", "lane", "ror", "silent", "confirmed", "loc"}
        wait_for(lambda: set(by_rule(service)) >= wanted, what=f"alerts {wanted}")
        alerts = by_rule(service)
    assert alerts["fire"]["device"] == ids["smoke1"]
    assert (alerts["confirmed"]["zone"], alerts["confirmed"]["device"]) == (prefix + "w1", None)
    assert alerts["confirmed"]["detail"]["devices"] == sorted([ids["smoke1"], ids["heat1"]])
    assert alerts["gas"]["detail"]["value"] == 30.0
    assert alerts["ror"]["detail"]["rate"] == 20.0
    assert alerts["loc"]["zone"] == prefix + "w1"
    assert alerts["lane"]["first_seen_ms"] >= t + 1000
    assert all(a["site"] == site for a in alerts.values())


def test_a_state_for_clock_started_before_a_restart_fires_on_time_after_it(
    park: tuple[str, str, dict[str, str], str],
) -> None:
    url, site, ids, _ = park
    rules = ruleset(
        rule(id="lane", kind="state_for", metric="obstructed", equals=True, **{"for": "2s"})
    )
    with running(url, rules) as first:
        started = now_ms()
        first.on_batch(
            CommittedBatch(
                telemetry=[Telemetry(ids["lane1"], site, started, 1, {"obstructed": True})]
            )
        )
        assert first.wait_idle()
        assert open_alerts(first) == []
    time.sleep(0.5)  # down for a while, then a new process on the same database
    with running(url, rules) as second:
        wait_for(lambda: bool(open_alerts(second)), timeout=5, what="the lane alert")
        alert = open_alerts(second)[0]
    late = alert["first_seen_ms"] - (started + 2000)
    assert 0 <= late < 500, late


def test_an_absence_clock_survives_a_restart(park: tuple[str, str, dict[str, str], str]) -> None:
    url, site, ids, _ = park
    rules = ruleset(rule(id="silent", kind="absence", after="2s", scope={"devices": [ids["ext1"]]}))
    with running(url, rules) as first:
        time.sleep(0.3)
        heard = now_ms()
        first.on_batch(
            CommittedBatch(telemetry=[Telemetry(ids["ext1"], site, heard, 1, {"present": True})])
        )
        assert first.wait_idle()
    time.sleep(0.3)
    with running(url, rules) as second:
        wait_for(lambda: bool(open_alerts(second)), timeout=5, what="the absence alert")
        alert = open_alerts(second)[0]
    late = alert["first_seen_ms"] - (heard + 2000)
    assert 0 <= late < 500, late


def test_an_alert_raised_before_a_restart_is_still_open_after_it_and_never_twinned(
    park: tuple[str, str, dict[str, str], str],
) -> None:
    url, site, ids, _ = park
    rules = ruleset(rule(id="gas", kind="threshold", metric="gas_lel_pct", above=25))
    high = CommittedBatch(
        telemetry=[Telemetry(ids["env1"], site, now_ms(), 1, {"gas_lel_pct": 40.0})]
    )
    with running(url, rules) as first:
        first.on_batch(high)
        assert first.wait_idle()
    with running(url, rules) as second:
        assert len(open_alerts(second)) == 1
        second.on_batch(high)  # still high: the open alert is known, no second raise
        low = Telemetry(ids["env1"], site, now_ms(), 2, {"gas_lel_pct": 1.0})
        second.on_batch(CommittedBatch(telemetry=[low]))
        assert second.wait_idle()
        resolved = second.store.query(AlertFilter(state="resolved"))[0]
    assert len(resolved) == 1 and resolved[0]["count"] == 1


def test_state_for_fires_by_the_clock_and_escalates_by_stage(
    park: tuple[str, str, dict[str, str], str],
) -> None:
    url, site, ids, _ = park
    rules = ruleset(
        rule(
            id="lane",
            kind="state_for",
            metric="obstructed",
            equals=True,
            **{"for": "0.3s"},
            stages=[{"after": "0.8s", "severity": "critical"}],
        ),
        escalate_after="0.3s",
    )
    with running(url, rules) as service:
        service.on_batch(
            CommittedBatch(
                telemetry=[Telemetry(ids["lane1"], site, now_ms(), 1, {"obstructed": True})]
            )
        )
        wait_for(
            lambda: any(
                e["action"] == "escalated"
                for a in open_alerts(service)
                for e in service.store.get(a["id"])["journal"]
            ),
            timeout=5,
            what="escalation",
        )
        alert = service.store.get(open_alerts(service)[0]["id"])
    assert alert["severity"] == "critical"
    assert [e["action"] for e in alert["journal"]] == ["raised", "severity", "escalated"]


def test_a_manual_resolve_while_the_condition_holds_raises_again_after_for(
    park: tuple[str, str, dict[str, str], str],
) -> None:
    url, site, ids, _ = park
    rules = ruleset(
        rule(id="lane", kind="state_for", metric="obstructed", equals=True, **{"for": "0.3s"})
    )
    with running(url, rules) as service:
        service.on_batch(
            CommittedBatch(
                telemetry=[Telemetry(ids["lane1"], site, now_ms(), 1, {"obstructed": True})]
            )
        )
        wait_for(lambda: bool(open_alerts(service)), timeout=5, what="raise")
        first = open_alerts(service)[0]
        service.store.resolve(first["id"], "op", "moved the truck? no, it is still there")
        wait_for(lambda: bool(open_alerts(service)), timeout=5, what="raise again")
        second = open_alerts(service)[0]
    assert second["id"] != first["id"]


def test_rules_naming_zones_or_devices_not_in_the_register_stop_start_up(
    park: tuple[str, str, dict[str, str], str],
) -> None:
    url, *_ = park
    rules = ruleset(rule(id="r", kind="event", events=["fault"], scope={"zones": ["atlantis"]}))
    service = RulesService(url, rules)
    with pytest.raises(RuleFileError, match=r"rule .r., field .scope\.zones.: not in the site"):
        service.start()


def test_a_failing_rule_evaluation_is_counted_and_the_worker_carries_on(
    park: tuple[str, str, dict[str, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, site, ids, _ = park
    rules = ruleset(rule(id="fire", kind="event", events=["fire_alarm"]))
    with running(url, rules) as service:

        def broken(*_args: Any) -> None:
            raise ZeroDivisionError("a bug in a rule")

        monkeypatch.setattr(service.engine, "on_telemetry", broken)
        service.on_batch(
            CommittedBatch(telemetry=[Telemetry(ids["env1"], site, now_ms(), 1, {"smoke": True})])
        )
        service.on_batch(
            CommittedBatch(events=[Event(ids["smoke1"], site, now_ms(), 2, "fire_alarm", None)])
        )
        assert service.wait_idle()
        assert service.stats.engine_errors == 1
        assert len(open_alerts(service)) == 1


def test_an_alarm_holds_back_telemetry_writes_until_its_alert_is_stored(
    sqlite_url: str,
) -> None:
    """On SQLite the service announces the alert of a committed alarm to the write gate at
    once, so the collector's next telemetry batch cannot take the file before it."""
    engine = make_engine(sqlite_url)
    site = unique("s")
    ids = add_park(engine, site, f"{site}-")
    engine.dispose()
    rules = ruleset(rule(id="fire", kind="event", events=["fire_alarm"], severity="critical"))
    with running(sqlite_url, rules) as service:
        gate = service.store.gate
        fire = Event(ids["smoke1"], site, now_ms(), 1, "fire_alarm", None)
        with gate.hold():  # a telemetry batch is being written: the alert must wait for it
            service.on_batch(CommittedBatch(events=[fire]))
            assert gate.urgent_waiting, "announced before the worker got to it"
        assert service.wait_idle()
        assert not gate.urgent_waiting
        assert [a["rule"] for a in open_alerts(service)] == ["fire"]


def test_the_register_is_read_off_the_worker_and_used_only_when_it_changed(
    park: tuple[str, str, dict[str, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-indexing the rules for every device holds the worker that handles alarms, so an
    unchanged register must not be handed to it."""
    url, site, _, prefix = park
    monkeypatch.setattr("rules.service.DIRECTORY_REFRESH_S", 0.1)
    rules = ruleset(rule(id="fire", kind="event", events=["fire_alarm"]))
    with running(url, rules) as service:
        time.sleep(1.0)  # about ten reads of an unchanged register
        assert service.stats.directories == 0
        engine = make_engine(url)
        with engine.begin() as c:
            c.execute(
                insert(Device),
                [
                    {
                        "id": f"{prefix}new",
                        "site_id": site,
                        "type": "smoke_detector",
                        "zone_id": f"{prefix}w1",
                        "label": "new",
                    }
                ],
            )
        engine.dispose()
        wait_for(
            lambda: f"{prefix}new" in service.engine.directory.devices,
            timeout=5,
            what="the new device in the engine's register",
        )
        assert service.stats.directories == 1

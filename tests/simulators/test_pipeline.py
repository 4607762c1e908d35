"""Scenarios through the real pipeline: the demo park's whole fleet → Mosquitto → collector →
SQLite → rules service with the demo park's rules. Each scenario stores the events and raises
the alerts its file expects.

Time: a scenario played at speed S meets the demo rules with every duration divided by S (a
lane blocked 10 minutes at 240x lasts 2.5 s and meets a 0.25 s ``for``), so what a rule needs to
*last* lasts in the same proportion. Speeds are chosen so that the shortest window that matters
stays well above the pipeline's own latency (about 0.1 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine

from collector.client import BrokerAddress
from collector.service import Collector
from core.catalogue import load_catalogue
from core.db import make_engine, session_factory
from core.readings import SqlReadingsStore
from core.settings import Settings
from core.site import import_site, load_site
from rules.alerts import AlertFilter
from rules.service import RulesService
from rules.spec import RuleSet, load_site_rules
from simulators.fleet import Fleet
from simulators.scenario import Scenario, load_scenario
from simulators.transport import Broker
from tests.collector.helpers import count, wait_for
from tests.conftest import DEMO_SITE, unique

SPEED = {
    "warehouse-fire": 120,  # detectors 55 s apart meet a 120 s correlation window: 0.46 of 1 s
    "extinguisher-removed": 600,
    "fire-lane-blocked": 480,  # blocked 1.25 s against a 0.125 s `for`
    "hazmat-leak": 480,
    "typhoon-power-loss": 2400,
    "gateway-mass-offline": 600,
}
NORMAL_DAY_SPEED = 2400
NORMAL_DAY_PLAYED_S = 70 * 60  # the day's first 70 minutes hold all its steps
TIME_FIELDS = ("for_", "hold", "window", "per", "min_span", "after", "clear_after")


class WillsNotSeen(AssertionError):
    """Devices dropped in a last-will storm were not marked offline."""


def compressed(rules: RuleSet, speed: float) -> RuleSet:
    """The same rules with every duration divided by ``speed``."""

    def scale(model: Any, names: tuple[str, ...]) -> Any:
        update = {
            n: getattr(model, n) / speed
            for n in names
            if isinstance(getattr(model, n, None), float)
        }
        if getattr(model, "stages", ()):
            update["stages"] = tuple(scale(s, ("after",)) for s in model.stages)
        if getattr(model, "flapping", None) is not None:
            update["flapping"] = scale(model.flapping, ("window",))
        return model.model_copy(update=update)

    defaults = scale(rules.defaults, ("escalate_after",))
    return RuleSet([scale(r, TIME_FIELDS) for r in rules.rules], defaults, rules.webhooks)


@dataclass
class Park:
    engine: Engine
    service: RulesService
    fleet: Fleet


@contextmanager
def demo_park(url: str, broker: tuple[str, int], rules: RuleSet, **fleet: Any) -> Iterator[Park]:
    engine = make_engine(url)
    import_site(session_factory(engine), load_site(DEMO_SITE))
    service = RulesService(url, rules, tick_s=0.05)
    service.start()
    collector = Collector(
        Settings(database_url=url, mqtt_client_id=unique("col"), flush_interval_ms=50),
        engine,
        SqlReadingsStore(engine),
        load_catalogue(),
        BrokerAddress(*broker),
        listeners=[service.on_batch],
    )
    collector.start()
    # a connection per device, so that a last-will storm makes Mosquitto publish real wills
    simulated = Fleet.from_site(DEMO_SITE, Broker(*broker), connection="per_device", **fleet)
    try:
        wait_for(lambda: collector.status().broker_connected, what="collector connected")
        simulated.start()
        assert simulated.wait_ready(20), "the fleet did not connect"
        yield Park(engine, service, simulated)
    finally:  # the collector first: the fleet's goodbyes need not be stored
        collector.stop()
        service.stop()
        simulated.stop()
        engine.dispose()


def alerts(service: RulesService) -> list[dict[str, Any]]:
    return service.store.query(AlertFilter(), limit=1000)[0]


def check_expectations(park: Park, scenario: Scenario) -> None:
    expects = scenario.expects

    def stored(event: str) -> int:
        return count(park.engine, "select count(*) from device_events where event = :e", e=event)

    for name, least in expects.events.items():
        wait_for(lambda n=name, k=least: stored(n) >= k, what=f"{least} {name} events stored")  # type: ignore[misc]
    wanted = set(expects.alerts)
    presence_rules = {"fire-detection-offline", "device-offline"}
    raised: set[str] = set()

    def has(rules: set[str]) -> bool:
        raised.update(a["rule"] for a in alerts(park.service))
        return rules <= raised

    wait_for(lambda: has(wanted - presence_rules), what=f"alerts {sorted(wanted)}")
    try:
        wait_for(lambda: has(wanted & presence_rules), timeout=2, what="offline alerts")
        wait_for(
            lambda: (
                count(
                    park.engine,
                    "select count(distinct device_id) from presence_changes "
                    "where presence = 'offline'",
                )
                >= expects.offline
            ),
            timeout=2,
            what=f"{expects.offline} devices offline",
        )
    except AssertionError as exc:
        raise WillsNotSeen(str(exc)) from exc


SCENARIOS = sorted(SPEED)


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_scenario_stores_and_raises_what_it_expects(
    name: str, sqlite_url: str, private_broker: tuple[str, int]
) -> None:
    scenario = load_scenario(name)
    speed = SPEED[name]
    rules = compressed(load_site_rules(DEMO_SITE), speed)
    with demo_park(sqlite_url, private_broker, rules, speed=10) as park:
        playback = park.fleet.play(scenario, speed=speed)
        wait_for(
            lambda: len(playback.ran) == len(scenario.steps),
            timeout=playback.length_s + 10,
            what="every step",
        )
        EXTRA.get(name, lambda _park: None)(park)
        check_expectations(park, scenario)


def _confirmed_by_two_detectors_of_one_zone(park: Park) -> None:
    wait_for(lambda: any(a["rule"] == "fire-confirmed" for a in alerts(park.service)))
    with park.engine.connect() as c:
        detectors = c.exec_driver_sql(
            "select e.device_id, d.zone_id from device_events e join devices d "
            "on d.id = e.device_id where e.event = 'fire_alarm' and d.type = 'smoke_detector'"
        ).all()
    confirmed = next(a for a in alerts(park.service) if a["rule"] == "fire-confirmed")
    assert sorted(detectors) == [("A1-W1-SD008", "A1-W1"), ("A1-W1-SD009", "A1-W1")]
    assert (confirmed["zone"], confirmed["severity"]) == ("A1-W1", "critical")
    assert {"A1-W1-SD008", "A1-W1-SD009"} <= set(confirmed["detail"]["devices"])


def _missing_one_stays_alarmed_returned_one_resolves(park: Park) -> None:
    def states() -> dict[str, str]:
        found = [a for a in alerts(park.service) if a["rule"] == "extinguisher-removed"]
        return {a["device"]: a["state"] for a in found}

    wait_for(lambda: states().get("C1-HALL-EXT002") == "resolved", what="resolved")
    assert states() == {"B1-SORT-EXT003": "active", "C1-HALL-EXT002": "resolved"}


EXTRA = {
    "warehouse-fire": _confirmed_by_two_detectors_of_one_zone,
    "extinguisher-removed": _missing_one_stays_alarmed_returned_one_resolves,
}


def test_a_normal_day_raises_no_alert(sqlite_url: str, private_broker: tuple[str, int]) -> None:
    """With the demo rules as they are: the day's events are all shorter than any rule's
    window, and the background readings (cycles, noise, leaks) stay inside every threshold."""
    scenario = load_scenario("normal-day")
    assert scenario.expects.quiet
    with demo_park(sqlite_url, private_broker, load_site_rules(DEMO_SITE), speed=60) as park:
        playback = park.fleet.play(scenario, speed=NORMAL_DAY_SPEED)
        wait_for(
            lambda: len(playback.ran) == len(scenario.steps),
            timeout=NORMAL_DAY_PLAYED_S / NORMAL_DAY_SPEED + 5,
            what="the day's steps",
        )
        wait_for(
            lambda: count(park.engine, "select count(distinct device_id) from readings") == 766,
            what="every device reporting",
        )
        assert park.service.wait_idle(10)
        assert alerts(park.service) == []
        assert count(park.engine, "select count(*) from dead_letters") == 0

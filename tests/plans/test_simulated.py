"""The simulator's warehouse fire through the whole pipeline: the demo park's scenario devices
→ a Mosquitto of the test's own → collector → rules service (demo rules) → incident service
(demo plans). Played as a drill first, then for real while the drill's alerts are still open:
each starts the fire plan exactly once for zone A1-W1, and the drill never counts as real."""

from __future__ import annotations

import pytest

from core.db import make_engine, session_factory
from core.site import import_site, load_site
from rules.alerts import AlertFilter
from rules.incidents import IncidentFilter
from rules.plans import load_site_plans
from rules.spec import load_site_rules
from simulators.fleet import Fleet
from simulators.scenario import load_scenario
from simulators.transport import Broker
from tests.collector.helpers import wait_for
from tests.conftest import DEMO_SITE
from tests.plans.builders import running_collector, running_incidents, running_rules

SPEED = 120  # the two detectors, 55 s apart, meet the 120 s window 0.46 s apart


@pytest.mark.slow
def test_the_simulated_warehouse_fire_starts_the_fire_plan_once_as_a_drill_and_once_for_real(
    sqlite_url: str, private_broker: tuple[str, int]
) -> None:
    url = sqlite_url
    engine = make_engine(url)
    import_site(session_factory(engine), load_site(DEMO_SITE))
    engine.dispose()
    rules = load_site_rules(DEMO_SITE)
    plans = load_site_plans(DEMO_SITE, rules.by_id)
    scenario = load_scenario("warehouse-fire")
    fleet = Fleet.from_site(
        DEMO_SITE, Broker(*private_broker), only=["A1-W1-SD008"], scenario=scenario
    )
    with (
        running_rules(url, rules) as alerts,
        running_incidents(url, plans, alerts=alerts.bus, rules=rules) as incidents,
        running_collector(url, private_broker, alerts),
    ):
        fleet.start()
        try:
            assert fleet.wait_ready(20), "the scenario's devices did not connect"
            since = alerts.clock()
            assert fleet.play(scenario, speed=SPEED, drill=True).wait(30)
            wait_for(lambda: bool(incidents.store.query(IncidentFilter())[1]), what="a drill")
            assert alerts.wait_idle() and incidents.wait_idle()
            drills = incidents.store.query(IncidentFilter(drill=True))[0]
            # a real fire in the same zone while the drill's alerts are still open: the
            # confirmed-fire alert only counts up, yet the real events start the real plan
            fleet.reset()
            assert fleet.play(scenario, speed=SPEED).wait(30)
            wait_for(
                lambda: bool(incidents.store.query(IncidentFilter(drill=False))[1]),
                what="the real fire incident",
            )
            assert alerts.wait_idle() and incidents.wait_idle()
            real = incidents.store.query(IncidentFilter(drill=False))[0]
            detail = incidents.store.get(real[0]["id"])
            drill_detail = incidents.store.get(drills[0]["id"])
            open_alerts = alerts.store.query(AlertFilter(state="open"), limit=500)[0]
            figures = incidents.store.figures(since)
        finally:
            fleet.stop()
    assert [(i["plan"], i["zone"], i["drill"]) for i in drills] == [("fire", "A1-W1", True)]
    assert [(i["plan"], i["zone"], i["drill"]) for i in real] == [("fire", "A1-W1", False)]
    assert real[0]["zone_name"] == {"zh": "保税存储区（西）", "en": "Bonded storage (west)"}
    evacuate = next(s for s in detail["steps"] if s["id"] == "evacuate")
    assert evacuate["text"]["zh"].startswith("按应急广播组织保税存储区（西）及所在建筑人员")
    assert [a["rule"] for a in detail["alerts"]] == ["fire-confirmed"]
    assert detail["alerts"][0]["id"] == drill_detail["alerts"][0]["id"]  # the same alert
    confirmed = [a for a in open_alerts if a["rule"] == "fire-confirmed"]
    assert len(confirmed) == 1 and confirmed[0]["count"] > 1
    assert figures["real"]["incidents"] == 1 and figures["drills"]["incidents"] == 1
    assert figures["real"]["by_plan"] == {"fire": 1}

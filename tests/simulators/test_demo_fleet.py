"""What `parkguard demo` runs: the demo park's fleet on a normal day, against the embedded
broker, started and stopped from Python, with scenarios triggered into it."""

from __future__ import annotations

import time

import pytest

from core.contract import Event, Telemetry
from parkguard.broker import EmbeddedBroker
from simulators.fleet import start_fleet
from simulators.scenario import load_scenario
from tests.conftest import DEMO_SITE
from tests.simulators.helpers import observing, wait_until


# amqtt 0.11 deprecates how parkguard/broker.py configures it (sys_interval, auth, plugins from
# entry points, psutil): the embedded broker's concern, not the fleet's
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_demo_fleet_runs_on_the_embedded_broker_and_takes_scenarios() -> None:
    broker = EmbeddedBroker("127.0.0.1", 0)
    port = broker.start()
    try:
        with observing(("127.0.0.1", port)) as observer:
            started = time.monotonic()
            fleet, day = start_fleet(DEMO_SITE, f"mqtt://127.0.0.1:{port}")
            try:
                assert fleet.connection == "multiplexed"  # what the embedded broker copes with
                assert day is not None and day.scenario.name == "normal-day"
                assert fleet.wait_ready(10)

                def reporting() -> set[str]:
                    return {s.device_id for s in observer.all() if s.channel == "telemetry"}

                wait_until(lambda: len(reporting()) == 766, what="every device reporting")
                assert time.monotonic() - started < 10
                fire = fleet.play(load_scenario("warehouse-fire"), speed=480, drill=True)
                assert fire.wait(10)
                fleet.reset()
                time.sleep(0.3)
            finally:
                fleet.stop()
            assert not fleet.running
    finally:
        broker.stop()
    events = [s.decoded() for s in observer.all() if s.channel == "event"]
    drills = [e for e in events if isinstance(e, Event) and e.detail and e.detail.get("drill")]
    assert len(drills) == len(load_scenario("warehouse-fire").steps) - 3  # 3 steps only ramp
    last = [
        m
        for s in observer.all()
        if s.device_id == "A1-W1-EXT004" and isinstance(m := s.decoded(), Telemetry)
    ][-1]
    assert last.metrics["present"] is True  # the reset put it back on its bracket

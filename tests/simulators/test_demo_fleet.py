"""What `parkguard demo` runs: the demo park's fleet on a normal day, against the embedded
broker, started and stopped from Python, taking scenarios from Python and from the command
line (`parkguard simulate` hands them over instead of starting a second fleet)."""

from __future__ import annotations

import gc
import time

import pytest

from core.contract import Event, Telemetry
from parkguard.broker import EmbeddedBroker
from parkguard.cli import main
from simulators.control import play_topic
from simulators.fleet import start_fleet
from simulators.scenario import load_scenario
from tests.conftest import DEMO_SITE
from tests.simulators.helpers import Observer, observing, wait_until


def events_of(observer: Observer, device: str) -> list[Event]:
    found = [s.decoded() for s in observer.of(device, "event")]
    return [e for e in found if isinstance(e, Event)]


# amqtt 0.11 deprecates how parkguard/broker.py configures it (sys_interval, auth, plugins from
# entry points, psutil), and the stopped broker leaves its side of the connections unclosed:
# the embedded broker's concern, not the fleet's. The garbage is collected inside this test.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_demo_fleet_runs_on_the_embedded_broker_and_takes_scenarios(
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker = EmbeddedBroker("127.0.0.1", 0)
    port = broker.start()
    url = f"mqtt://127.0.0.1:{port}"
    try:
        with observing(("127.0.0.1", port)) as observer:
            started = time.monotonic()
            fleet, day = start_fleet(DEMO_SITE, url)
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

                argv = ["simulate", "--scenario", "fire-lane-blocked", "--broker", url]
                assert main([*argv, "--speed", "600", "--drill"]) == 0
                assert "handed fire-lane-blocked (drill) to the fleet of cdpark" in (
                    capsys.readouterr().out
                )
                wait_until(
                    lambda: len(events_of(observer, "FL-E-FLM002")) == 2, timeout=30, what="lane"
                )

                observer_client = observer._client
                assert observer_client is not None
                observer_client.publish(play_topic("cdpark"), b'{"scenario": "../../etc"}', 1)
                wait_until(lambda: fleet.control_rejected == 1, what="a refused request")
                time.sleep(0.2)
            finally:
                fleet.stop()
            assert not fleet.running
    finally:
        broker.stop()
        gc.collect()
    drills = [
        e
        for s in observer.all()
        if isinstance(e := s.decoded(), Event) and e.detail and e.detail.get("drill")
    ]
    assert len(drills) == len(load_scenario("warehouse-fire").steps) - 3 + 2  # + the lane's
    last = [
        m
        for s in observer.all()
        if s.device_id == "A1-W1-EXT004" and isinstance(m := s.decoded(), Telemetry)
    ][-1]
    assert last.metrics["present"] is True  # the reset put it back on its bracket

"""The load generator: a steady rate of well-formed telemetry, with a scenario on top."""

from __future__ import annotations

import time

from core.contract import Event, Telemetry
from simulators.fleet import read_site
from simulators.load import LoadGenerator
from tests.conftest import DEMO_SITE
from tests.simulators.helpers import observing, running_fleet, scenario, wait_until


def test_load_keeps_its_rate_and_a_fire_goes_out_between_its_messages(
    sim_broker: tuple[str, int],
) -> None:
    devices = read_site(DEMO_SITE).devices(count=300)
    fire = scenario({"at": 0.5, "devices": ["A1-W1-SD008"], "event": "fire_alarm"})
    options = {"connection": "multiplexed", "clients": 3, "background": False}
    with observing(sim_broker) as observer, running_fleet(devices, sim_broker, **options) as fleet:
        assert fleet.stats().links == 3
        observer.clear()
        load = LoadGenerator(fleet, rate=4000, duration_s=1.5)
        load.start()
        fleet.play(fire)
        assert load.wait(10)
        wait_until(lambda: len(observer.all()) >= load.sent + 1, what="everything delivered")
        time.sleep(0.2)
        report = load.report()
    assert 5800 <= report.sent <= 6000 and 3600 <= report.rate <= 4400
    assert report.unacked == 0 and report.overflow == 0
    decoded = [s.decoded() for s in observer.all()]
    telemetry = [m for m in decoded if isinstance(m, Telemetry)]
    assert len(telemetry) == report.sent
    assert len({m.device_id for m in telemetry}) == 300
    identities = [(m.device_id, m.seq) for m in telemetry]
    assert len(set(identities)) == len(identities)
    fires = [m for m in decoded if isinstance(m, Event)]
    assert [(f.device_id, f.event) for f in fires] == [("A1-W1-SD008", "fire_alarm")]
    position = decoded.index(fires[0])
    assert 0.1 * len(decoded) < position < 0.7 * len(decoded)  # in the middle of the load

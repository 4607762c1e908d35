"""The shared contract test: every device type's simulated messages, as they reach a real
broker, pass the contract and the catalogue exactly as the collector checks them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from collector.decode import Decoder, RegisteredDevice
from core.catalogue import load_catalogue
from core.contract import Event, Status, Telemetry
from simulators.behaviours import BEHAVIOURS
from simulators.fleet import read_site
from tests.conftest import DEMO_SITE
from tests.simulators.helpers import Observer, Seen, observing, running_fleet, scenario

CATALOGUE = load_catalogue()
TYPES = sorted(CATALOGUE.device_types)
SPEED = 600  # a smoke detector reports every 0.2 s, an extinguisher every 2 s


def one_of_each_type() -> dict[str, str]:
    """type → the first device of that type in the demo park's register."""
    first: dict[str, str] = {}
    for row in read_site(DEMO_SITE).rows:
        first.setdefault(row["type"], row["id"])
    return first


@pytest.fixture(scope="module")
def seen(sim_broker: tuple[str, int]) -> Iterator[tuple[dict[str, str], list[Seen], Observer]]:
    """What one device of every type sent: reports at 600x, then every event its type has."""
    ids = one_of_each_type()
    devices = read_site(DEMO_SITE).devices(only=ids.values())
    timeline = sorted(
        (i * 0.5, ids[t], e) for t in TYPES for i, e in enumerate(sorted(BEHAVIOURS[t].events))
    )
    every_event = [
        {"at": at, "devices": [device], "event": e, "detail": {"at": at}}
        for at, device, e in timeline
    ]
    with observing(sim_broker) as observer, running_fleet(devices, sim_broker, speed=SPEED) as f:
        f.play(scenario(*every_event), speed=60).wait(10)
        time.sleep(2.5)  # every type has reported at least once
        with observing(sim_broker) as late:  # subscribes after the statuses went out
            time.sleep(0.3)
        retained = late.all()
    yield ids, retained, observer


@pytest.mark.parametrize("type_name", TYPES)
def test_every_message_of_every_type_passes_the_contract_and_the_catalogue(
    type_name: str, seen: tuple[dict[str, str], list[Seen], Observer]
) -> None:
    ids, retained, observer = seen
    device_id = ids[type_name]
    messages = observer.of(device_id)
    register = {device_id: RegisteredDevice("cdpark", type_name)}
    decoder = Decoder(CATALOGUE, register, max_age_ms=60_000)
    decoded = [decoder.decode(m.topic, m.payload, m.at_ms) for m in messages]  # raises if bad
    telemetry = [m for m in decoded if isinstance(m, Telemetry)]
    events = [m for m in decoded if isinstance(m, Event)]
    statuses = [m for m in decoded if isinstance(m, Status)]
    listed = CATALOGUE.type_of(type_name)

    assert telemetry, "no telemetry"
    for reading in telemetry:
        assert set(reading.metrics) == set(listed.metrics)  # the whole state every time
        for name, value in reading.metrics.items():
            assert listed.metrics[name].is_normal(value), (name, value)  # nothing is wrong
    assert sorted(e.event for e in events) == sorted(listed.events)
    sequence = [m.seq for m in decoded if isinstance(m, Telemetry | Event)]
    assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)
    for message, raw in zip(decoded, messages, strict=True):
        assert abs(message.ts_ms - raw.at_ms) < 2000  # now-based, whatever the speed
    assert statuses[0].online is True
    # a subscriber arriving later gets the retained status: the device is online
    kept = [s for s in retained if s.device_id == device_id and s.retain]
    assert [(s.channel, s.decoded()) for s in kept] == [("status", statuses[0])]

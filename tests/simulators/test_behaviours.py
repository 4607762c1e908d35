"""The simulator's own table of device behaviour agrees with the catalogue (which it never
reads): same metrics with the same kinds and ranges, same events, reports inside the window."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from core.catalogue import load_catalogue
from simulators.behaviours import BEHAVIOURS, CLIMATE, JITTER
from simulators.devices import SimClock, SimDevice

CATALOGUE = load_catalogue()
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at_hour(hour: int) -> SimClock:
    """A clock standing still at that local hour of a summer day."""
    return SimClock(start=datetime(2025, 7, 15, hour, tzinfo=SHANGHAI), monotonic=lambda: 0.0)


TYPES = sorted(CATALOGUE.device_types)


def test_every_catalogue_type_is_simulated_and_nothing_else() -> None:
    assert sorted(BEHAVIOURS) == TYPES


@pytest.mark.parametrize("type_name", TYPES)
def test_metrics_and_events_agree_with_the_catalogue(type_name: str) -> None:
    listed = CATALOGUE.type_of(type_name)
    simulated = BEHAVIOURS[type_name]
    assert set(simulated.metrics) == set(listed.metrics)
    for name, metric in listed.metrics.items():
        model = simulated.metrics[name]
        assert model.kind == metric.kind, name
        assert (model.min, model.max) == (metric.min, metric.max), name
    assert simulated.events == listed.events
    if simulated.low_battery_event is not None:
        assert simulated.low_battery_event in listed.events


@pytest.mark.parametrize("type_name", TYPES)
def test_reports_come_well_inside_the_presence_window(type_name: str) -> None:
    """Even the latest jittered report leaves room for one lost message."""
    heartbeat_s = CATALOGUE.type_of(type_name).heartbeat_s
    assert BEHAVIOURS[type_name].period_s * (1 + JITTER) < heartbeat_s / 2


def test_zone_kinds_the_climate_knows_are_the_site_register_kinds() -> None:
    from core.models import ZONE_KINDS

    assert set(CLIMATE) == set(ZONE_KINDS)


@pytest.mark.parametrize("type_name", TYPES)
def test_a_quiet_device_reads_normal_values_all_day(type_name: str) -> None:
    """At every hour of a day, a device nothing happens to reads inside its normal band."""
    listed = CATALOGUE.type_of(type_name)
    for hour in range(24):
        device = SimDevice(f"dev{hour}", type_name, "s1", "z1", "warehouse")
        values = device.read(at_hour(hour), 0.0)
        for name, value in values.items():
            assert listed.metrics[name].accepts(value), (name, value)
            assert listed.metrics[name].is_normal(value), (name, value)


def test_the_warehouse_is_warmest_in_the_afternoon_and_the_office_barely_changes() -> None:
    def temperature(zone_kind: str, hour: int) -> float:
        device = SimDevice("env1", "warehouse_env", "s1", "z1", zone_kind)
        return float(device.natural("temperature_c", at_hour(hour)))

    assert temperature("warehouse", 15) - temperature("warehouse", 3) > 6
    assert abs(temperature("office", 15) - temperature("office", 3)) < 2.5


def test_extinguishers_lose_pressure_and_a_few_leak() -> None:
    devices = [SimDevice(f"e{i:03d}", "extinguisher", "s1", "z1") for i in range(300)]
    seconds = [0.0]
    clock = SimClock(monotonic=lambda: seconds[0])
    new = [float(d.natural("pressure_mpa", clock)) for d in devices]
    seconds[0] = 365 * 86400.0
    losses = [
        a - float(d.natural("pressure_mpa", clock)) for a, d in zip(new, devices, strict=True)
    ]
    slow = [x for x in losses if x < 0.1]
    leaking = [x for x in losses if x > 0.5]
    assert 0.9 * len(devices) < len(slow)
    assert 1 <= len(leaking) <= 0.1 * len(devices)

"""How each device type behaves when nothing is wrong: what it reports, how often, how it drifts.

A simulator is a device and knows nothing of ParkGuard beyond the MQTT contract, so this table
is the simulator's own. It must agree with ``core/catalogue.yaml`` (same metrics with the same
kinds and physical ranges, same events, reports well inside the presence window); a test checks
that, the simulator never reads the catalogue.

A number metric is a pure function of simulated time and a few per-device constants::

    value = base + spread·u + daily·climate·cos(2π(hour - peak)/24) + drift·days + noise

clamped to the physical range and rounded. ``u`` is a per-device constant in [-1, 1];
``climate`` is how much the zone follows the weather (a warehouse fully, an air-conditioned
office barely); ``drift`` is per-device (most extinguishers lose pressure imperceptibly, a few
leak). Scenario steps and faults override these values; see devices.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["number", "boolean", "string"]
JITTER = 0.1
"""Each report comes within ±10 % of the type's period, so a fleet never beats in step."""

CLIMATE = {
    "warehouse": 1.0,
    "general": 0.6,
    "hazmat": 0.3,  # climate-controlled store rooms
    "office": 0.2,
    "public": 0.2,
    "fire_lane": 1.5,  # outdoors
}
"""How much a zone of each kind follows the daily temperature cycle."""


@dataclass(frozen=True, slots=True)
class MetricModel:
    kind: Kind
    min: float | None = None
    max: float | None = None
    base: float | bool | str | None = None
    """A number's typical value, or a boolean's normal value; a string metric has none (it
    comes from the device register, e.g. an asset tag's zone)."""
    spread: float = 0.0
    noise: float = 0.0
    daily: float = 0.0
    """Amplitude of the daily cycle (°C for temperatures) in a zone with climate 1."""
    peak_hour: float = 15.0
    drift_per_day: float = 0.0
    leak_share: float = 0.0
    """The share of devices that drift ``leak_per_day`` instead of ``drift_per_day``."""
    leak_per_day: float = 0.0
    decimals: int = 2

    def clamp(self, value: float) -> float:
        assert self.min is not None and self.max is not None
        return round(min(self.max, max(self.min, value)), self.decimals)


@dataclass(frozen=True, slots=True)
class TypeBehaviour:
    period_s: float
    """Seconds (of simulated time) between two reports; the report doubles as heartbeat."""
    metrics: dict[str, MetricModel]
    events: frozenset[str]
    low_battery_event: str | None = "battery_low"


def _num(
    lo: float,
    hi: float,
    base: float,
    noise: float = 0.0,
    decimals: int = 2,
    *,
    spread: float = 0.0,
    daily: float = 0.0,
    drift_per_day: float = 0.0,
    leak_share: float = 0.0,
    leak_per_day: float = 0.0,
) -> MetricModel:
    return MetricModel(
        "number",
        lo,
        hi,
        base,
        spread=spread,
        noise=noise,
        daily=daily,
        drift_per_day=drift_per_day,
        leak_share=leak_share,
        leak_per_day=leak_per_day,
        decimals=decimals,
    )


def _bool(normal: bool) -> MetricModel:
    return MetricModel("boolean", base=normal)


BATTERY = _num(0, 100, 88, 0.0, 1, spread=10, drift_per_day=-0.02)
FAULT = _bool(False)

BEHAVIOURS: dict[str, TypeBehaviour] = {
    "smoke_detector": TypeBehaviour(
        period_s=120,
        metrics={
            "obscuration_db_m": _num(0, 20, 0.02, 0.008, 3, spread=0.01),
            "battery_pct": BATTERY,
            "fault": FAULT,
        },
        events=frozenset(
            [
                "fire_alarm",
                "alarm_cleared",
                "fault",
                "fault_cleared",
                "tamper",
                "tamper_cleared",
                "test",
                "battery_low",
                "dirty",
            ]
        ),
    ),
    "heat_detector": TypeBehaviour(
        period_s=120,
        metrics={
            "temperature_c": _num(-40, 200, 24, 0.15, 1, spread=1.5, daily=4),
            "battery_pct": BATTERY,
            "fault": FAULT,
        },
        events=frozenset(
            [
                "fire_alarm",
                "alarm_cleared",
                "fault",
                "fault_cleared",
                "tamper",
                "tamper_cleared",
                "test",
                "battery_low",
            ]
        ),
    ),
    "manual_call_point": TypeBehaviour(
        period_s=250,
        metrics={"activated": _bool(False), "fault": FAULT},
        events=frozenset(
            [
                "fire_alarm",
                "alarm_cleared",
                "fault",
                "fault_cleared",
                "tamper",
                "tamper_cleared",
                "test",
            ]
        ),
        low_battery_event=None,
    ),
    "fire_alarm_panel": TypeBehaviour(
        period_s=50,
        metrics={
            "mains_ok": _bool(True),
            "battery_ok": _bool(True),
            "loop_fault": _bool(False),
            "disabled_points": _num(0, 10000, 0, 0.0, 0),
            "fault": FAULT,
        },
        events=frozenset(
            [
                "fire_alarm",
                "alarm_cleared",
                "fault",
                "fault_cleared",
                "supervisory",
                "supervisory_cleared",
                "disablement",
                "disablement_cleared",
                "reset",
                "silence",
                "test",
            ]
        ),
        low_battery_event=None,
    ),
    "extinguisher": TypeBehaviour(
        period_s=1200,
        metrics={
            # charged to 1.2 MPa; most lose ~0.01 MPa a year, one in thirty leaks slowly
            "pressure_mpa": _num(
                0,
                5,
                1.22,
                0.004,
                3,
                spread=0.08,
                drift_per_day=-0.00003,
                leak_share=1 / 30,
                leak_per_day=-0.004,
            ),
            "present": _bool(True),
            "front_blocked": _bool(False),
            "battery_pct": BATTERY,
            "fault": FAULT,
        },
        events=frozenset(
            [
                "removed",
                "returned",
                "discharged",
                "tamper",
                "tamper_cleared",
                "blocked",
                "unblocked",
                "fault",
                "fault_cleared",
                "battery_low",
            ]
        ),
    ),
    "hydrant_pressure": TypeBehaviour(
        period_s=250,
        metrics={
            # mains water: a little lower in the afternoon when the park draws most
            "pressure_mpa": _num(0, 3, 0.45, 0.01, 3, spread=0.05, daily=-0.03),
            "battery_pct": BATTERY,
            "fault": FAULT,
        },
        events=frozenset(
            [
                "low_pressure",
                "pressure_restored",
                "leak",
                "fault",
                "fault_cleared",
                "battery_low",
                "tamper",
            ]
        ),
    ),
    "fire_lane": TypeBehaviour(
        period_s=120,
        metrics={
            "obstructed": _bool(False),
            "occupancy_pct": _num(0, 100, 2, 1.5, 0, spread=2),
            "fault": FAULT,
        },
        events=frozenset(
            ["obstruction_start", "obstruction_end", "fault", "fault_cleared", "tamper"]
        ),
        low_battery_event=None,
    ),
    "warehouse_env": TypeBehaviour(
        period_s=120,
        metrics={
            "temperature_c": _num(-40, 150, 24, 0.15, 1, spread=1.5, daily=4),
            "humidity_pct": _num(0, 100, 62, 1.0, 1, spread=5, daily=-10),
            "gas_lel_pct": _num(0, 100, 0.4, 0.2, 1, spread=0.3),
            "smoke": _bool(False),
            "battery_pct": BATTERY,
            "fault": FAULT,
        },
        events=frozenset(
            [
                "gas_alarm",
                "gas_cleared",
                "smoke_alarm",
                "smoke_cleared",
                "fault",
                "fault_cleared",
                "battery_low",
                "tamper",
            ]
        ),
    ),
    "hazmat_store": TypeBehaviour(
        period_s=50,
        metrics={
            "door_open": _bool(False),
            "gas_lel_pct": _num(0, 100, 0.6, 0.25, 1, spread=0.3),
            "vapour_ppm": _num(0, 10000, 6, 1.5, 1, spread=2),
            "temperature_c": _num(-40, 150, 20, 0.1, 1, spread=1, daily=4),
            "fault": FAULT,
        },
        events=frozenset(
            [
                "door_opened",
                "door_closed",
                "gas_alarm",
                "gas_cleared",
                "vapour_alarm",
                "vapour_cleared",
                "fault",
                "fault_cleared",
                "tamper",
            ]
        ),
        low_battery_event=None,
    ),
    "asset_tag": TypeBehaviour(
        period_s=400,
        metrics={
            "zone": MetricModel("string"),
            "hazardous": MetricModel("boolean"),
            "battery_pct": BATTERY,
            "fault": FAULT,
        },
        events=frozenset(["zone_changed", "battery_low", "tamper", "fault", "fault_cleared"]),
    ),
    "power_monitor": TypeBehaviour(
        period_s=50,
        metrics={
            "mains_ok": _bool(True),
            "on_battery": _bool(False),
            "battery_pct": _num(0, 100, 99, 0.2, 1, spread=1),
            "voltage_v": _num(0, 500, 221, 1.5, 1, spread=3),
            "fault": FAULT,
        },
        events=frozenset(["mains_lost", "mains_restored", "battery_low", "fault", "fault_cleared"]),
    ),
}


def behaviour_of(device_type: str) -> TypeBehaviour:
    try:
        return BEHAVIOURS[device_type]
    except KeyError:
        known = ", ".join(sorted(BEHAVIOURS))
        raise ValueError(
            f"no simulated behaviour for device type {device_type!r} ({known})"
        ) from None

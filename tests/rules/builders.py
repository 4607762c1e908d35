"""Plain builders for rules tests: rule sets from dicts, a small park, messages."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Engine, insert

from core.contract import Event, MetricValue, Telemetry
from core.ingest import PresenceUpdate
from core.models import Device, DeviceState, Site, Zone
from rules.engine import Decision, DeviceInfo, Directory, ZoneInfo
from rules.engine import Engine as RuleEngine
from rules.spec import Defaults, RuleSet
from rules.spec import Rule as RuleType

SITE = "park1"
_RULE: TypeAdapter[Any] = TypeAdapter(RuleType)

#: A small park: zone id → kind, and device id → (type, zone).
ZONES = {"w1": "warehouse", "w2": "warehouse", "hz": "hazmat", "lane": "fire_lane"}
DEVICES = {
    "smoke1": ("smoke_detector", "w1"),
    "smoke2": ("smoke_detector", "w1"),
    "heat1": ("heat_detector", "w1"),
    "smoke3": ("smoke_detector", "w2"),
    "env1": ("warehouse_env", "w1"),
    "lane1": ("fire_lane", "lane"),
    "tag1": ("asset_tag", "hz"),
    "ext1": ("extinguisher", "w1"),
    "panel1": ("fire_alarm_panel", "w1"),
}
HEARTBEAT = {"smoke_detector": 300, "heat_detector": 300, "warehouse_env": 300}


def rule(**fields: Any) -> Any:
    body = {"title": {"zh": "测试", "en": "Test"}, "severity": "major"} | fields
    return _RULE.validate_python(body)


def ruleset(*rules: Any, **defaults: Any) -> RuleSet:
    return RuleSet(rules, Defaults.model_validate(defaults) if defaults else None)


def directory() -> Directory:
    zones = {z: ZoneInfo(z, SITE, kind) for z, kind in ZONES.items()}
    devices = {
        d: DeviceInfo(d, SITE, t, z, ZONES[z], HEARTBEAT.get(t, 600))
        for d, (t, z) in DEVICES.items()
    }
    return Directory(devices, zones)


def engine(*rules: Any, now: int = 0) -> RuleEngine:
    made = RuleEngine(ruleset(*rules))
    made.set_directory(directory(), now)
    return made


def reading(device: str, ts: int = 0, seq: int = 0, **metrics: MetricValue) -> Telemetry:
    return Telemetry(device, SITE, ts, seq, dict(metrics))


def event(device: str, name: str, ts: int = 0, seq: int = 0) -> Event:
    return Event(device, SITE, ts, seq, name, None)


def presence(device: str, state: str, ts: int = 0, cause: str = "status") -> PresenceUpdate:
    return PresenceUpdate(device, state, ts, cause)  # type: ignore[arg-type]


def only(decisions: list[Decision], kind: type) -> list[Any]:
    return [d for d in decisions if isinstance(d, kind)]


def add_park(engine_: Engine, site: str = SITE, prefix: str = "") -> dict[str, str]:
    """The same small park, as rows (a site, its zones, devices with an unknown state); ids
    get ``prefix`` so tests sharing a broker do not meet. Returns logical name → device id."""
    ids = {name: prefix + name for name in DEVICES}
    with engine_.begin() as c:
        c.execute(insert(Site), [{"id": site, "name_zh": "测试园区", "name_en": "Test park"}])
        c.execute(
            insert(Zone),
            [
                {
                    "id": prefix + z,
                    "site_id": site,
                    "kind": kind,
                    "name_zh": z,
                    "name_en": z,
                    "polygon": [],
                }
                for z, kind in ZONES.items()
            ],
        )
        c.execute(
            insert(Device),
            [
                {"id": ids[d], "site_id": site, "type": t, "zone_id": prefix + z, "label": d}
                for d, (t, z) in DEVICES.items()
            ],
        )
        c.execute(
            insert(DeviceState),
            [{"device_id": i, "presence": "unknown", "last_values": {}} for i in ids.values()],
        )
    return ids

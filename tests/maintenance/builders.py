"""Plain builders for maintenance tests: a small park, plans, clocks in park time."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert

from core.catalogue import load_catalogue
from core.db import make_engine, session_factory, session_scope
from core.models import Device, Site, Zone
from maintenance.plans import PlanSet, parse_plans

SHANGHAI = ZoneInfo("Asia/Shanghai")

PLANS = """
version: 1
plans:
  - id: ext
    name: {zh: 灭火器检查, en: Extinguisher check}
    device_types: [extinguisher]
    frequency: monthly
    stricter:
      - {zone_kinds: [hazmat, warehouse], frequency: half_monthly}
    assignee: {role: crew, person: wang}
    checklist:
      - {id: in_place, zh: 在位, en: In place}
      - {id: gauge_green, zh: 压力表在绿区, en: Gauge in the green band}
      - {id: seal_intact, zh: 铅封完好, en: Seal intact}
  - id: lane
    name: {zh: 消防车道巡查, en: Fire-lane patrol}
    per: zone
    zone_kinds: [fire_lane]
    frequency: daily
    due_within_hours: 18
    assignee: {role: security, person: li}
    checklist:
      - {id: clear, zh: 畅通, en: Clear}
  - id: inspection
    name: {zh: 防火检查, en: Fire inspection}
    per: site
    frequency: monthly
    checklist:
      - {id: exits, zh: 出口畅通, en: Exits clear}
extinguisher_service:
  lead_days: 30
"""


def plans(text: str = PLANS) -> PlanSet:
    return parse_plans(text, "test-plans.yaml", load_catalogue())


def at(*args: int, tz: ZoneInfo = SHANGHAI) -> datetime:
    """An aware instant given in park time (Asia/Shanghai by default), as UTC."""
    return datetime(*args, tzinfo=tz).astimezone(UTC)  # type: ignore[arg-type,misc]


def add_site(engine: Engine, site_id: str = "park", tz: str = "Asia/Shanghai") -> None:
    with engine.begin() as c:
        c.execute(
            insert(Site), [{"id": site_id, "name_zh": "园区", "name_en": "Park", "timezone": tz}]
        )


def add_zone(engine: Engine, zone_id: str, kind: str, site_id: str = "park") -> None:
    with engine.begin() as c:
        c.execute(
            insert(Zone),
            [
                {
                    "id": zone_id,
                    "site_id": site_id,
                    "kind": kind,
                    "name_zh": f"区{zone_id}",
                    "name_en": f"Zone {zone_id}",
                    "polygon": [],
                }
            ],
        )


def add_device(
    engine: Engine,
    device_id: str,
    zone_id: str,
    device_type: str = "extinguisher",
    site_id: str = "park",
    in_service: date | None = None,
    **attributes: Any,
) -> None:
    with engine.begin() as c:
        c.execute(
            insert(Device),
            [
                {
                    "id": device_id,
                    "site_id": site_id,
                    "type": device_type,
                    "zone_id": zone_id,
                    "label": f"{device_type} {device_id}",
                    "in_service_date": in_service,
                    "attributes": attributes,
                }
            ],
        )


def small_park(engine: Engine, tz: str = "Asia/Shanghai") -> None:
    """One site: an office zone with two extinguishers, a hazmat zone with one, a fire lane."""
    add_site(engine, tz=tz)
    add_zone(engine, "office", "office")
    add_zone(engine, "store", "hazmat")
    add_zone(engine, "lane1", "fire_lane")
    add_device(engine, "ext-1", "office")
    add_device(engine, "ext-2", "office")
    add_device(engine, "ext-h", "store")
    add_device(engine, "hyd-1", "office", "hydrant_pressure")


def engine_for(url: str) -> Engine:
    return make_engine(url)


def run_in_session(engine: Engine, fn: Any, *args: Any, **kwargs: Any) -> Any:
    with session_scope(session_factory(engine)) as session:
        return fn(session, *args, **kwargs)


def tiny_png() -> bytes:
    """A real 1×1 PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"

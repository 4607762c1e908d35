"""Plain builders for API tests: a context over a database, and rows inserted directly, as the
importer and the collector would leave them. Each returns what it made."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from api.context import AppContext
from core.catalogue import load_catalogue
from core.contract import MetricValue
from core.db import make_engine, session_factory
from core.ingest import IngestStatus
from core.models import DeadLetter, Device, DeviceState, Reading, Site, Zone
from core.readings import SqlReadingsStore
from core.settings import Settings


class FakeCollector:
    """Stands in for the collector: its ``status`` is what a test sets."""

    def __init__(self) -> None:
        self.current = IngestStatus(
            broker_connected=True,
            broker="mqtt://collector:s3cret@127.0.0.1:1883",
            queue_depth=7,
            queue_max=50_000,
            messages_in=120,
            stored=100,
            duplicates=3,
            dead_letters={"not_json": 2},
        )

    def status(self) -> IngestStatus:
        return self.current

    def disconnect(self) -> None:
        self.current = replace(self.current, broker_connected=False)


def build_context(url: str, collector: FakeCollector) -> AppContext:
    engine = make_engine(url)
    return AppContext(
        settings=Settings(database_url=url),
        engine=engine,
        sessions=session_factory(engine),
        readings=SqlReadingsStore(engine),
        catalogue=load_catalogue(),
        ingest_status=collector.status,
        registry=CollectorRegistry(),
    )


def add_site(session: Session, site_id: str = "park1") -> Site:
    site = Site(id=site_id, name_zh="示范园区", name_en="Demo park", timezone="Asia/Shanghai")
    session.add(site)
    session.flush()
    return site


def add_zone(session: Session, site_id: str, zone_id: str, kind: str = "general") -> Zone:
    zone = Zone(
        id=zone_id,
        site_id=site_id,
        building_id=None,
        floor_id=None,
        kind=kind,
        name_zh=f"{zone_id} 区",
        name_en=f"Zone {zone_id}",
        polygon=[[0, 0], [10, 0], [10, 10]],
    )
    session.add(zone)
    session.flush()
    return zone


def add_device(
    session: Session,
    device_id: str,
    type_: str,
    zone: Zone,
    *,
    label: str | None = None,
    attributes: dict[str, Any] | None = None,
    in_service: date | None = None,
) -> Device:
    device = Device(
        id=device_id,
        site_id=zone.site_id,
        type=type_,
        zone_id=zone.id,
        label=label or f"{type_} {device_id}",
        in_service_date=in_service,
        attributes=attributes or {},
        x=1.5,
        y=2.5,
    )
    session.add(device)
    session.flush()
    return device


def add_state(session: Session, device_id: str, **fields: Any) -> DeviceState:
    state = DeviceState(device_id=device_id, **fields)
    session.add(state)
    session.flush()
    return state


def add_readings(
    engine: Engine, device_id: str, metric: str, points: list[tuple[int, int, MetricValue]]
) -> None:
    """Rows of the readings table: numbers and booleans (1.0/0.0) in value, strings in text."""
    rows = [
        {
            "device_id": device_id,
            "metric": metric,
            "ts_ms": ts_ms,
            "seq": seq,
            "value": None if isinstance(value, str) else float(value),
            "text": value if isinstance(value, str) else None,
        }
        for ts_ms, seq, value in points
    ]
    with engine.begin() as connection:
        connection.execute(insert(Reading), rows)


def add_dead_letter(
    session: Session,
    received_ms: int,
    reason: str = "not_json",
    *,
    payload: bytes = b"{not json",
    payload_size: int | None = None,
    topic: str = "parkguard/park1/ext-001/telemetry",
    device_id: str | None = "ext-001",
    detail: str = "payload is not JSON",
) -> DeadLetter:
    letter = DeadLetter(
        received_ms=received_ms,
        topic=topic,
        payload=payload,
        payload_size=len(payload) if payload_size is None else payload_size,
        reason=reason,
        detail=detail,
        device_id=device_id,
    )
    session.add(letter)
    session.flush()
    return letter

"""``/api/v1/devices``: the register, and each device's live state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import func, select

from api.deps import ID, NOT_FOUND, CtxDep, DeviceDep, SessionDep
from api.schemas import (
    CategoryPublic,
    DevicePublic,
    DevicesPublic,
    DeviceStatePublic,
    DeviceSummaryPublic,
    DeviceTypePublic,
    MetricValuePublic,
    ZonePublic,
    as_kind,
)
from api.timefmt import to_rfc3339
from core.catalogue import Catalogue, DeviceType
from core.ingest import Presence
from core.models import Device, DeviceState, Zone

router = APIRouter(prefix="/api/v1", tags=["devices"])

PAGE_MAX = 500
OFFSET_MAX = 10_000_000
_PRESENCE: dict[str | None, Presence] = {"online": "online", "offline": "offline"}


@router.get("/devices", response_model=DevicesPublic, summary="The device register, a page")
def list_devices(
    ctx: CtxDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Devices to skip.")] = 0,
    type: Annotated[str | None, Query(pattern=ID, description="Only this device type.")] = None,
    zone: Annotated[str | None, Query(pattern=ID, description="Only this zone id.")] = None,
    site: Annotated[str | None, Query(pattern=ID, description="Only this site id.")] = None,
) -> DevicesPublic:
    """Devices by id with their presence; ``total`` counts every match of the filters."""
    if type is not None and type not in ctx.catalogue.device_types:
        known = ", ".join(sorted(ctx.catalogue.device_types))
        raise HTTPException(422, f"unknown device type {type!r}; known types: {known}")
    filters = [
        column == value
        for column, value in ((Device.type, type), (Device.zone_id, zone), (Device.site_id, site))
        if value is not None
    ]
    total = session.scalar(select(func.count()).select_from(Device).where(*filters)) or 0
    rows = session.execute(
        select(
            Device.id,
            Device.site_id,
            Device.type,
            Device.zone_id,
            Device.label,
            DeviceState.presence,
            DeviceState.last_seen_ms,
        )
        .outerjoin(DeviceState, DeviceState.device_id == Device.id)
        .where(*filters)
        .order_by(Device.id)
        .limit(limit)
        .offset(offset)
    )
    items = [
        DeviceSummaryPublic(
            id=id_,
            site_id=site_id,
            type=type_,
            zone_id=zone_id,
            label=label,
            presence=_presence(presence),
            last_seen=_rfc3339(last_seen_ms),
        )
        for id_, site_id, type_, zone_id, label, presence, last_seen_ms in rows
    ]
    return DevicesPublic(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/devices/{device_id}",
    response_model=DevicePublic,
    summary="One device: register data and live state",
    responses=NOT_FOUND,
)
def get_one(device: DeviceDep, ctx: CtxDep, session: SessionDep) -> DevicePublic:
    zone = session.get_one(Zone, device.zone_id)
    state = session.get(DeviceState, device.id)
    device_type = ctx.catalogue.device_types.get(device.type)
    return DevicePublic(
        id=device.id,
        site_id=device.site_id,
        label=device.label,
        type=_type_public(ctx.catalogue, device.type),
        zone=ZonePublic(
            id=zone.id,
            kind=zone.kind,
            name_zh=zone.name_zh,
            name_en=zone.name_en,
            building_id=zone.building_id,
            floor_id=zone.floor_id,
        ),
        in_service_date=device.in_service_date,
        attributes=device.attributes,
        x=device.x,
        y=device.y,
        state=_state_public(state, device_type),
    )


def _type_public(catalogue: Catalogue, name: str) -> DeviceTypePublic:
    device_type = catalogue.device_types.get(name)
    if device_type is None:
        return DeviceTypePublic(name=name, zh=None, en=None, category=None)
    category = catalogue.categories[device_type.category]
    return DeviceTypePublic(
        name=name,
        zh=device_type.zh,
        en=device_type.en,
        category=CategoryPublic(name=device_type.category, zh=category.zh, en=category.en),
    )


def _state_public(state: DeviceState | None, device_type: DeviceType | None) -> DeviceStatePublic:
    if state is None:
        return DeviceStatePublic(
            presence="unknown",
            presence_since=None,
            last_seen=None,
            last_seq=None,
            values={},
            battery_pct=None,
            fault=False,
        )
    metrics = device_type.metrics if device_type is not None else {}
    values = {}
    for name, stored in sorted(state.last_values.items()):
        value, ts_ms = _unwrap(stored)
        spec = metrics.get(name)
        values[name] = MetricValuePublic(
            value=as_kind(spec, value),
            kind=spec.kind if spec is not None else None,
            unit=spec.unit if spec is not None else None,
            ts=_rfc3339(ts_ms),
        )
    return DeviceStatePublic(
        presence=_presence(state.presence),
        presence_since=_rfc3339(state.presence_since_ms),
        last_seen=_rfc3339(state.last_seen_ms),
        last_seq=state.last_seq,
        values=values,
        battery_pct=state.battery_pct,
        fault=state.fault,
    )


def _unwrap(stored: Any) -> tuple[Any, int | None]:
    """A last value as the collector keeps it, ``{"v": value, "ts": epoch ms}``."""
    if isinstance(stored, dict):
        ts_ms = stored.get("ts")
        return stored.get("v"), ts_ms if isinstance(ts_ms, int) else None
    return stored, None  # not the collector's shape: shown without a time rather than failing


def _presence(value: str | None) -> Presence:
    return _PRESENCE.get(value, "unknown")


def _rfc3339(ms: int | None) -> str | None:
    return None if ms is None else to_rfc3339(ms)

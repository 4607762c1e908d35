"""``/api/v1/devices``: the register, each device's live state, and its readings over time."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from sqlalchemy import func, select

from api.deps import CtxDep, SessionDep
from api.schemas import (
    BucketPublic,
    CategoryPublic,
    DevicePublic,
    DevicesPublic,
    DeviceStatePublic,
    DeviceSummaryPublic,
    DeviceTypePublic,
    ErrorPublic,
    MetricValuePublic,
    PointPublic,
    ReadingsPublic,
    Value,
    ZonePublic,
)
from api.timefmt import parse_duration, parse_time, to_rfc3339
from core.catalogue import Catalogue, DeviceType, Metric
from core.contract import ID_PATTERN, now_ms
from core.ingest import Presence
from core.models import Device, DeviceState, Zone

router = APIRouter(prefix="/api/v1", tags=["devices"])

ID = f"^{ID_PATTERN}$"
PAGE_MAX = 500
OFFSET_MAX = 10_000_000
POINTS_DEFAULT = 1000
POINTS_MAX = 100_000
BUCKETS_MAX = 100_000
EVERY_MIN_MS = 1000
EVERY_MAX_MS = 366 * 86_400_000
DEFAULT_SPAN_MS = 24 * 3_600_000
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "No device has this id."}
}
_PRESENCE: dict[str | None, Presence] = {"online": "online", "offline": "offline"}


def get_device(
    device_id: Annotated[
        str, Path(pattern=ID, description="Device id: 1-64 letters, digits, '_' or '-'.")
    ],
    session: SessionDep,
) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise HTTPException(404, f"no device with id {device_id!r}")
    return device


DeviceDep = Annotated[Device, Depends(get_device)]


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


@router.get(
    "/devices/{device_id}/readings",
    response_model=ReadingsPublic,
    summary="A device's readings of one metric: stored points or downsampled buckets",
    responses=NOT_FOUND,
)
def get_readings(
    device: DeviceDep,
    ctx: CtxDep,
    metric: Annotated[str, Query(description="A metric of the device's type.")],
    start: Annotated[
        str | None,
        Query(
            description="Range start (included): RFC 3339 with an offset, or epoch ms. "
            "Default: 24 hours before end."
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            description="Range end (excluded): RFC 3339 with an offset, or epoch ms. Default: now."
        ),
    ] = None,
    every: Annotated[
        str | None,
        Query(description="Downsample into buckets this long: 30s, 15m, 1h, 1d, or seconds."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=POINTS_MAX, description="At most this many points or buckets.")
    ] = POINTS_DEFAULT,
) -> ReadingsPublic:
    """Without ``every``: the stored points in [start, end), oldest first. With ``every``:
    count, min, max and mean per bucket (aligned to the epoch), for buckets that have points."""
    spec = _metric_of(ctx.catalogue, device, metric)
    end_ms = _time(end, "end") if end is not None else now_ms()
    start_ms = _time(start, "start") if start is not None else max(end_ms - DEFAULT_SPAN_MS, 0)
    if start_ms >= end_ms:
        raise HTTPException(
            422, f"start ({to_rfc3339(start_ms)}) must be before end ({to_rfc3339(end_ms)})"
        )
    answer: dict[str, Any] = {
        "device_id": device.id,
        "metric": metric,
        "kind": spec.kind,
        "unit": spec.unit,
        "start": to_rfc3339(start_ms),
        "end": to_rfc3339(end_ms),
    }
    if every is None:
        points = ctx.readings.points(device.id, metric, start_ms, end_ms, limit + 1)
        return ReadingsPublic(
            **answer,
            every_ms=None,
            points=[
                PointPublic(
                    ts=to_rfc3339(p.ts_ms),
                    ts_ms=p.ts_ms,
                    seq=p.seq,
                    value=as_kind(spec, p.text if spec.kind == "string" else p.value),
                )
                for p in points[:limit]
            ],
            buckets=None,
            truncated=len(points) > limit,
        )
    every_ms = _every(every, start_ms, end_ms)
    buckets = ctx.readings.buckets(device.id, metric, start_ms, end_ms, every_ms, limit + 1)
    return ReadingsPublic(
        **answer,
        every_ms=every_ms,
        points=None,
        buckets=[
            BucketPublic(
                start=to_rfc3339(b.start_ms),
                start_ms=b.start_ms,
                count=b.count,
                min=b.min,
                max=b.max,
                mean=b.mean,
            )
            for b in buckets[:limit]
        ],
        truncated=len(buckets) > limit,
    )


def as_kind(spec: Metric | None, value: Any) -> Value:
    """A stored value as its catalogue kind: booleans are kept as 1.0/0.0, shown true/false."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return bool(value) if spec is not None and spec.kind == "boolean" else float(value)
    return str(value)  # not a metric value at all: shown as text rather than failing


def _metric_of(catalogue: Catalogue, device: Device, metric: str) -> Metric:
    device_type = catalogue.device_types.get(device.type)
    if device_type is None:
        raise HTTPException(422, f"device type {device.type!r} is not in the catalogue")
    spec = device_type.metrics.get(metric)
    if spec is None:
        shown = metric if len(metric) <= 64 else metric[:64] + "…"
        known = ", ".join(sorted(device_type.metrics))
        raise HTTPException(422, f"metric {shown!r} is not one of {device.type}'s metrics: {known}")
    return spec


def _time(value: str, name: str) -> int:
    try:
        return parse_time(value, name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _every(value: str, start_ms: int, end_ms: int) -> int:
    try:
        every_ms = parse_duration(value, "every")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if not EVERY_MIN_MS <= every_ms <= EVERY_MAX_MS:
        raise HTTPException(422, "every must be between 1s and 366d")
    first = start_ms - start_ms % every_ms
    count = -(-(end_ms - first) // every_ms)
    if count > BUCKETS_MAX:
        raise HTTPException(
            422,
            f"every={value} from {to_rfc3339(start_ms)} to {to_rfc3339(end_ms)} would make "
            f"{count} buckets, more than {BUCKETS_MAX}: choose a longer every or a shorter range",
        )
    return every_ms


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

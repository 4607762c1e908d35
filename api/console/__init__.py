"""The security-room console: one page (``/console/``) of plain HTML, CSS and JavaScript from
``static/``, no build step and nothing from the internet, and the two reads it needs beyond
the other routers: the site's layout (buildings, floors, zone polygons, device positions) and
every device's state as the floor plan colours it.

A device's console state, most urgent first: ``alarm`` (an open alert of the device that is not
a fault), ``out_of_service`` (taken out on purpose), ``fault`` (the device reports a fault, or
an open fault, tamper or low-battery alert), ``offline`` (also when its presence is unknown:
never heard from, or the broker is lost — never shown as normal), else ``normal``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api.deps import CtxDep, SessionDep
from core.contract import now_ms
from core.models import Building, Device, DeviceState, Floor, Site, Zone
from core.models_alerts import Alert
from core.models_compliance import OutOfService

STATIC = Path(__file__).resolve().parent / "static"
FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
FAULT_RULE_WORDS = ("fault", "tamper", "battery", "disablement", "offline", "absence")

ConsoleState = Literal["normal", "alarm", "fault", "offline", "out_of_service"]
STATES: tuple[ConsoleState, ...] = ("normal", "alarm", "fault", "offline", "out_of_service")

router = APIRouter(tags=["console"])


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/console", include_in_schema=False)
def console_bare() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/console/", include_in_schema=False)
def console_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


@router.get("/console/static/{name}", include_in_schema=False)
def console_file(name: str) -> FileResponse:
    media_type = FILES.get(name)
    if media_type is None:
        raise HTTPException(404, "no such file")
    return FileResponse(STATIC / name, media_type=media_type, headers=SECURITY_HEADERS)


# ---- what the page reads --------------------------------------------------------------------


class _Public(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class Names(_Public):
    zh: str
    """In Chinese."""
    en: str
    """In English."""


class ZoneLayout(_Public):
    id: str
    """The zone's id."""
    kind: str
    """warehouse, hazmat, fire_lane, office, general..."""
    name: Names
    """The zone's name."""
    building_id: str | None
    """Its building; null outdoors."""
    floor_id: str | None
    """Its floor; null outdoors (on the site plan)."""
    polygon: list[list[float]]
    """Metres from the plan's south-west corner, x east, y north."""


class FloorLayout(_Public):
    id: str
    """The floor's id."""
    level: int
    """1 for the ground floor."""
    name: Names
    """The floor's name."""
    width: float
    """The plan's width (m, west to east)."""
    height: float
    """The plan's height (m, south to north)."""


class BuildingLayout(_Public):
    id: str
    """The building's id."""
    name: Names
    """The building's name."""
    floors: list[FloorLayout]
    """Its floors, lowest first."""


class DeviceLayout(_Public):
    id: str
    """The device's id."""
    type: str
    """The catalogue's device type."""
    type_name: Names | None
    """The type's name (null for a type the catalogue does not know)."""
    label: str
    """The register's label."""
    zone_id: str
    """Its zone."""
    floor_id: str | None
    """None for a device in an outdoor zone (drawn on the site plan)."""
    x: float | None
    """Metres east of the plan's south-west corner."""
    y: float | None
    """Metres north of the plan's south-west corner."""


class LayoutPublic(_Public):
    site_id: str | None
    """The site's id (null before a site is imported)."""
    site_name: Names | None
    """The site's name."""
    timezone: str
    """The park's time zone: the page shows every time in it."""
    site_plan: tuple[float, float]
    """Width and height (m) of the site plan that holds the outdoor zones."""
    buildings: list[BuildingLayout]
    """Buildings with their floors."""
    zones: list[ZoneLayout]
    """Every zone with its polygon."""
    devices: list[DeviceLayout]
    """Every device with its position."""


class DeviceStatePublic(_Public):
    id: str
    """The device's id."""
    state: ConsoleState
    """alarm, out_of_service, fault, offline or normal (most urgent wins)."""
    presence: str
    """online, offline or unknown."""
    alerts: int
    """Open alerts of the device."""


class StatesPublic(_Public):
    at_ms: int
    """When this was read (epoch ms)."""
    counts: dict[str, int]
    """Devices per console state."""
    devices: list[DeviceStatePublic]
    """Every device whose state is not ``normal``; the others are normal."""
    zones_in_alarm: list[str]
    """Zones with an open zone alert (e.g. a confirmed fire) that is not a fault."""


@router.get("/api/v1/console/layout", response_model=LayoutPublic, summary="The site's layout")
def layout(ctx: CtxDep, session: SessionDep) -> LayoutPublic:
    """Buildings, floors, zone polygons and device positions, for the floor plans."""
    site = session.scalars(select(Site).order_by(Site.id)).first()
    floors: dict[str, list[FloorLayout]] = {}
    for f in session.scalars(select(Floor).order_by(Floor.building_id, Floor.level)):
        floors.setdefault(f.building_id, []).append(
            FloorLayout(
                id=f.id,
                level=f.level,
                name=Names(zh=f.name_zh, en=f.name_en),
                width=f.width,
                height=f.height,
            )
        )
    buildings = [
        BuildingLayout(id=b.id, name=Names(zh=b.name_zh, en=b.name_en), floors=floors.get(b.id, []))
        for b in session.scalars(select(Building).order_by(Building.id))
    ]
    zones = [
        ZoneLayout(
            id=z.id,
            kind=z.kind,
            name=Names(zh=z.name_zh, en=z.name_en),
            building_id=z.building_id,
            floor_id=z.floor_id,
            polygon=[[float(p[0]), float(p[1])] for p in z.polygon],
        )
        for z in session.scalars(select(Zone).order_by(Zone.id))
    ]
    floor_of = {z.id: z.floor_id for z in zones}
    outdoor = [p for z in zones if z.floor_id is None for p in z.polygon]
    plan = (max(p[0] for p in outdoor), max(p[1] for p in outdoor)) if outdoor else (100.0, 100.0)
    devices = []
    for d in session.scalars(select(Device).order_by(Device.id)):
        kind = ctx.catalogue.device_types.get(d.type)
        devices.append(
            DeviceLayout(
                id=d.id,
                type=d.type,
                type_name=Names(zh=kind.zh, en=kind.en) if kind is not None else None,
                label=d.label,
                zone_id=d.zone_id,
                floor_id=floor_of.get(d.zone_id),
                x=d.x,
                y=d.y,
            )
        )
    return LayoutPublic(
        site_id=site.id if site else None,
        site_name=Names(zh=site.name_zh, en=site.name_en) if site else None,
        timezone=ctx.settings.timezone,
        site_plan=plan,
        buildings=buildings,
        zones=zones,
        devices=devices,
    )


@router.get("/api/v1/console/states", response_model=StatesPublic, summary="Device states")
def states(session: SessionDep) -> StatesPublic:
    """Each device's state as the floor plan colours it (see the module's docstring)."""
    presence = dict(session.execute(select(DeviceState.device_id, DeviceState.presence)).all())
    faulty = set(session.scalars(select(DeviceState.device_id).where(DeviceState.fault)))
    out = set(
        session.scalars(select(OutOfService.device_id).where(OutOfService.until_ms.is_(None)))
    )
    open_alerts = session.execute(
        select(Alert.device_id, Alert.zone_id, Alert.rule_id, Alert.kind).where(
            Alert.resolved_ms.is_(None)
        )
    ).all()
    alarm: set[str] = set()
    alerts: dict[str, int] = {}
    zones_in_alarm: set[str] = set()
    for device_id, zone_id, rule_id, kind in open_alerts:
        is_fault = kind == "absence" or any(w in rule_id for w in FAULT_RULE_WORDS)
        if device_id is None:
            if zone_id is not None and not is_fault:
                zones_in_alarm.add(zone_id)
            continue
        alerts[device_id] = alerts.get(device_id, 0) + 1
        if is_fault:
            faulty.add(device_id)
        else:
            alarm.add(device_id)
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
    items = []
    for (device_id,) in session.execute(select(Device.id).order_by(Device.id)):
        seen = presence.get(device_id) or "unknown"
        state: ConsoleState
        if device_id in alarm:
            state = "alarm"
        elif device_id in out:
            state = "out_of_service"
        elif device_id in faulty:
            state = "fault"
        elif seen != "online":  # offline, or never heard from / broker lost: not "normal"
            state = "offline"
        else:
            state = "normal"
        counts[state] += 1
        if state != "normal" or device_id in alerts:
            items.append(
                DeviceStatePublic(
                    id=device_id, state=state, presence=seen, alerts=alerts.get(device_id, 0)
                )
            )
    return StatesPublic(
        at_ms=now_ms(), counts=counts, devices=items, zones_in_alarm=sorted(zones_in_alarm)
    )

"""Intactness (完好率): what it means for a fire facility to be intact, and the figure now.

Clause 5.5.4 of the park standard requires the intactness rate of fire facilities in use to be
100 %. No standard gives a formula (fire brigades count passed tests over units tested), so
this is ParkGuard's own device-level definition, an internal metric:

**In scope** at an instant: every device whose type the catalogue knows (each type belongs to a
fire-facility category), from the local midnight of its register ``in_service_date`` (always,
when the register gives none), except while it is *out of service*: taken out on purpose by a
person who recorded who and why. Out-of-service devices are not counted and are listed apart.

**Intact** at an instant when none of the reasons in ``REASONS`` holds for it. Each non-intact
device carries its reasons, each with the moment it began.

The figure is ``intact / in scope`` overall, per category, per zone and per building, against
the target of 100 %. The same record (compliance.timeline) gives the history, so the figure for
an instant is the same whether read now or recomputed later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.conditions import catch_up_events, reconcile_values
from compliance.timeline import (
    DeviceInfo,
    OutOfServiceStretch,
    Record,
    ScrapDate,
    Stretch,
    gather,
    no_scrap_dates,
)
from core.catalogue import Catalogue
from core.models import Building, Zone

TARGET_PERCENT = 100

REASONS: dict[str, str] = {
    "offline": "Not reporting: offline; or presence unknown (collector starting, broker lost) "
    "for longer than one heartbeat window of its type after it was last online; or never heard "
    "from.",
    "fault": "The device reports a fault (fault event until fault_cleared, a fault / loop_fault "
    "value, a panel supervisory signal, a hydrant leak).",
    "tamper": "The device reports tampering (tamper until tamper_cleared).",
    "removed": "The device reports it was removed (removed until returned, or present false).",
    "discharged": "The extinguisher reports it was discharged.",
    "blocked": "Access is blocked (blocked until unblocked, front_blocked or obstructed true, "
    "a fire-lane obstruction).",
    "disabled": "Points are disabled at the panel (disablement until disablement_cleared, "
    "disabled_points above 0).",
    "out_of_band": "A metric is outside its normal band in the catalogue (e.g. extinguisher "
    "pressure outside its green band, low battery).",
    "shelved": "An alert on the device is shelved (silenced), so a new problem would not be seen.",
    "inspection_overdue": "An inspection task of the device is past due and not completed.",
    "service_overdue": "A service task (e.g. extinguisher service by GB 50444 T.5.3.3) is past "
    "due and not completed.",
    "scrap_overdue": "A scrap-and-replace task is past due and not completed.",
    "inspection_failed": "Its last inspection failed and the work order it opened is not closed.",
    "work_order_open": "A work order (from a fault alert or opened by hand) is open on it.",
    "past_scrap_date": "It has reached its scrap age by the register (GB 50444 T.5.4.3).",
    "scrap_date_unknown": "The register does not tell its scrap date (no agent or manufacture "
    "date).",
}
"""Every reason a device in scope can be not intact, with what makes it hold. Conditions that
the device cannot clear itself (``discharged``, ``leak``, ``tamper`` on a type without
``tamper_cleared``) end when a person records the device checked (a passed inspection or
service task) or fixed (a closed work order) after they began."""


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    since_ms: int | None
    """When it began; None when it began before anything was recorded (never heard from)."""
    source: str
    """presence, event, value, alert, maintenance or register."""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Standing:
    device: DeviceInfo
    reasons: tuple[Reason, ...]

    @property
    def intact(self) -> bool:
        return not self.reasons

    @property
    def since_ms(self) -> int | None:
        """When the longest-standing of its reasons began (they are sorted so, an unknown
        beginning first)."""
        return self.reasons[0].since_ms if self.reasons else None


@dataclass(slots=True)
class Tally:
    in_scope: int = 0
    intact: int = 0

    @property
    def ratio(self) -> float | None:
        return self.intact / self.in_scope if self.in_scope else None

    @property
    def percent(self) -> float | None:
        return percent(self.intact, self.in_scope)


def percent(part: int, whole: int) -> float | None:
    """``100 * part / whole``, rounded to 4 decimals (a tenth of a percent is 0.1)."""
    return round(100 * part / whole, 4) if whole else None


@dataclass(frozen=True, slots=True)
class OutOfServiceEntry:
    device: DeviceInfo
    record: OutOfServiceStretch


@dataclass(slots=True)
class CurrentFigure:
    at_ms: int
    overall: Tally
    by_category: dict[str, Tally]
    by_zone: dict[str, Tally]
    by_building: dict[str | None, Tally]
    non_intact: list[Standing]
    """Sorted longest-standing first, then by device id."""
    out_of_service: list[OutOfServiceEntry]
    not_yet_in_service: list[DeviceInfo]
    unknown_type: list[str]


def reasons_at(stretches: Iterable[Stretch], at_ms: int) -> tuple[Reason, ...]:
    """The reasons that hold at ``at_ms``; one per (reason, source, key), earliest start."""
    found: dict[tuple[str, str, str], Reason] = {}
    for s in stretches:
        if not s.covers(at_ms):
            continue
        key = (s.reason, s.source, str(s.detail.get("key", s.detail.get("task_id", ""))))
        held = found.get(key)
        if held is None or (
            held.since_ms is not None and (s.start_ms is None or s.start_ms < held.since_ms)
        ):
            found[key] = Reason(s.reason, s.start_ms, s.source, s.detail)
    return tuple(
        sorted(found.values(), key=lambda r: (r.since_ms is not None, r.since_ms or 0, r.code))
    )


def out_of_service_at(record: Record, device_id: str, at_ms: int) -> OutOfServiceStretch | None:
    for o in record.out_of_service.get(device_id, []):
        if o.since_ms <= at_ms and (o.until_ms is None or at_ms < o.until_ms):
            return o
    return None


def figure_at(record: Record, at_ms: int) -> CurrentFigure:
    """The figure at one instant of a gathered record (``record.start_ms <= at_ms``): every
    counted device is taken as intact, then each notable device is put right."""
    figure = CurrentFigure(at_ms, Tally(), {}, {}, {}, [], [], [], list(record.unknown_type))

    def tallies(category: str, zone_id: str, building_id: str | None) -> tuple[Tally, ...]:
        return (
            figure.overall,
            figure.by_category.setdefault(category, Tally()),
            figure.by_zone.setdefault(zone_id, Tally()),
            figure.by_building.setdefault(building_id, Tally()),
        )

    for group in record.groups:
        if group.in_service_ms is None or group.in_service_ms <= record.start_ms:
            for tally in tallies(group.category, group.zone_id, group.building_id):
                tally.in_scope += group.count
                tally.intact += group.count
    for device in record.devices.values():
        counted = tallies(device.category, device.zone_id, device.building_id)
        if device.in_service_ms is None or device.in_service_ms <= record.start_ms:
            for tally in counted:  # taken as intact above
                tally.in_scope -= 1
                tally.intact -= 1
        if device.in_service_ms is not None and device.in_service_ms > at_ms:
            figure.not_yet_in_service.append(device)
            continue
        out = out_of_service_at(record, device.id, at_ms)
        if out is not None:
            figure.out_of_service.append(OutOfServiceEntry(device, out))
            continue
        stretches = record.stretches.get(device.id)
        standing = Standing(device, reasons_at(stretches, at_ms) if stretches else ())
        for tally in counted:
            tally.in_scope += 1
            tally.intact += standing.intact
        if not standing.intact:
            figure.non_intact.append(standing)
    figure.non_intact.sort(key=lambda s: (s.since_ms is not None, s.since_ms or 0, s.device.id))
    figure.out_of_service.sort(key=lambda e: (e.record.since_ms, e.device.id))
    return figure


def refresh(session: Session, catalogue: Catalogue, now_ms: int) -> None:
    """Bring the condition log up to date: device events after the mark, then last values
    that the log does not show yet. Commits what it writes; cheap when nothing is new."""
    while catch_up_events(session, now_ms) > 0:
        pass
    reconcile_values(session, catalogue, now_ms)


def current_figure(
    session: Session,
    catalogue: Catalogue,
    now_ms: int,
    *,
    scrap_date: ScrapDate = no_scrap_dates,
    device_ids: list[str] | None = None,
    record_first: bool = True,
) -> CurrentFigure:
    """The figure now (after bringing the condition log up to date, unless told not to)."""
    if record_first:
        refresh(session, catalogue, now_ms)
    record = gather(
        session,
        catalogue,
        now_ms,
        now_ms + 1,
        now_ms,
        scrap_date=scrap_date,
        device_ids=device_ids,
        live=True,
    )
    return figure_at(record, now_ms)


@dataclass(frozen=True, slots=True)
class Place:
    name_zh: str
    name_en: str
    building_id: str | None = None


def places(session: Session) -> tuple[dict[str, Place], dict[str, Place]]:
    """Zones and buildings by id, with their names."""
    zones = {
        row.id: Place(row.name_zh, row.name_en, row.building_id)
        for row in session.execute(select(Zone.id, Zone.name_zh, Zone.name_en, Zone.building_id))
    }
    buildings = {
        row.id: Place(row.name_zh, row.name_en)
        for row in session.execute(select(Building.id, Building.name_zh, Building.name_en))
    }
    return zones, buildings

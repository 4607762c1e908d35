"""Intactness over a period, from the stored record: time-weighted, as a series, and the
outages behind it.

- **Time-weighted intactness**: device-time intact / device-time in scope, summed over the
  devices (a device counts only while in scope: in service and not taken out of it).
- **Series**: the point-in-time figure at ``start + k * step`` (for a chart).
- **IoT online rate**: device-time reporting / device-time in scope (the brigades' "online units
  over connected units", weighted by time).
- **Outages**: the stretches during which a device was not intact for any reason, merged. An
  outage *restored* in the period ended inside it; the mean time to restore is the mean length
  of those (from when the outage began, which may be before the period; outages whose beginning
  was never recorded are left out of the mean). The longest outages are ranked by their time
  inside the period.

Everything is computed from rows recorded by ``as_of`` (see compliance.timeline), so the same
period with the same ``as_of`` gives the same figures, whatever has been recorded since.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from compliance.intactness import percent
from compliance.timeline import (
    DeviceInfo,
    Record,
    ScrapDate,
    Span,
    Stretch,
    gather,
    length,
    minus,
    no_scrap_dates,
    scope,
    union,
)
from core.catalogue import Catalogue

FAR = 1 << 62
MAX_SAMPLES = 10_000


@dataclass(slots=True)
class TimeTally:
    scope_ms: int = 0
    intact_ms: int = 0

    @property
    def ratio(self) -> float | None:
        return self.intact_ms / self.scope_ms if self.scope_ms else None

    @property
    def percent(self) -> float | None:
        return percent(self.intact_ms, self.scope_ms)


@dataclass(frozen=True, slots=True)
class Outage:
    device: DeviceInfo
    start_ms: int | None
    """When it began (possibly before the period); None: before anything was recorded."""
    end_ms: int | None
    """When it was restored; None when it was not restored by the end of the period."""
    in_period_ms: int
    """Its time inside the period while the device was in scope."""
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sample:
    at_ms: int
    in_scope: int
    intact: int

    @property
    def percent(self) -> float | None:
        return percent(self.intact, self.in_scope)


@dataclass(slots=True)
class DeviceTimeline:
    """One device over the period: where it counted, where it was not intact and why."""

    device: DeviceInfo
    scope: list[Span]
    not_intact: list[Span]
    offline: list[Span]
    outages: list[Outage]
    stretches: list[Stretch]

    @property
    def tally(self) -> TimeTally:
        return TimeTally(length(self.scope), length(self.scope) - length(self.not_intact))


@dataclass(slots=True)
class PeriodFigure:
    start_ms: int
    end_ms: int
    as_of_ms: int
    step_ms: int
    overall: TimeTally = field(default_factory=TimeTally)
    by_category: dict[str, TimeTally] = field(default_factory=dict)
    online: TimeTally = field(default_factory=TimeTally)
    """intact_ms here is the time reporting (online or within its heartbeat window)."""
    devices_counted: int = 0
    restored: int = 0
    restore_ms_total: int = 0
    not_restored: int = 0
    longest: list[Outage] = field(default_factory=list)
    series: list[Sample] = field(default_factory=list)

    @property
    def mean_time_to_restore_ms(self) -> float | None:
        return self.restore_ms_total / self.restored if self.restored else None


def intersect(a: list[Span], b: list[Span]) -> list[Span]:
    """The intersection of two sorted lists of disjoint intervals."""
    found: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            found.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return found


def device_timeline(device: DeviceInfo, record: Record) -> DeviceTimeline:
    lo, hi = record.start_ms, record.end_ms
    counted = scope(device, record, lo, hi)
    stretches = record.stretches.get(device.id, [])
    episodes = union(((s.start_ms, s.end_ms) for s in stretches), -FAR, FAR)
    not_intact = intersect(counted, union(episodes, lo, hi))
    offline = intersect(
        counted, union(((s.start_ms, s.end_ms) for s in stretches if s.reason == "offline"), lo, hi)
    )
    outages: list[Outage] = []
    for a, b in episodes:
        inside = length(intersect(counted, [(max(a, lo), min(b, hi))]))
        if inside <= 0:
            continue
        reasons = sorted(
            {
                s.reason
                for s in stretches
                if (s.start_ms is None or s.start_ms < b) and (s.end_ms is None or s.end_ms > a)
            }
        )
        outages.append(
            Outage(
                device,
                None if a == -FAR else a,
                None if b == FAR or b > hi else b,
                inside,
                tuple(reasons),
            )
        )
    return DeviceTimeline(device, counted, not_intact, offline, outages, stretches)


def period_figure(
    session: Session,
    catalogue: Catalogue,
    start_ms: int,
    end_ms: int,
    as_of_ms: int,
    step_ms: int,
    *,
    scrap_date: ScrapDate = no_scrap_dates,
    device_ids: Sequence[str] | None = None,
    longest: int = 10,
) -> PeriodFigure:
    """The figures of ``[start_ms, end_ms)`` as recorded by ``as_of_ms`` (end <= as_of)."""
    if not start_ms < end_ms <= as_of_ms:
        raise ValueError("the period must start before it ends, and end by as_of")
    if step_ms <= 0 or -(-(end_ms - start_ms) // step_ms) > MAX_SAMPLES:
        raise ValueError(f"the step must be positive and give at most {MAX_SAMPLES} samples")
    record = gather(
        session,
        catalogue,
        start_ms,
        end_ms,
        as_of_ms,
        scrap_date=scrap_date,
        device_ids=device_ids,
    )
    return summarise(record, step_ms, longest=longest)


def summarise(record: Record, step_ms: int, *, longest: int = 10) -> PeriodFigure:
    """Every counted device is taken as in scope and intact over the whole period, then each
    notable device is put right from its own timeline."""
    lo, hi = record.start_ms, record.end_ms
    span = hi - lo
    figure = PeriodFigure(lo, hi, record.as_of_ms, step_ms)
    samples = -(-span // step_ms)
    scope_diff = [0] * (samples + 1)
    intact_diff = [0] * (samples + 1)
    base = 0

    def index(at: int) -> int:
        return -(-(at - lo) // step_ms)

    def count(category: str, scope_ms: int, intact_ms: int, online_ms: int) -> None:
        for target in (figure.overall, figure.by_category.setdefault(category, TimeTally())):
            target.scope_ms += scope_ms
            target.intact_ms += intact_ms
        figure.online.scope_ms += scope_ms
        figure.online.intact_ms += online_ms

    for group in record.groups:
        if group.in_service_ms is None or group.in_service_ms <= lo:
            count(group.category, group.count * span, group.count * span, group.count * span)
            figure.devices_counted += group.count
            base += group.count
    outages: list[Outage] = []
    for device in record.devices.values():
        if device.in_service_ms is None or device.in_service_ms <= lo:  # taken as intact above
            count(device.category, -span, -span, -span)
            figure.devices_counted -= 1
            base -= 1
        timeline = device_timeline(device, record)
        if not timeline.scope:
            continue
        figure.devices_counted += 1
        tally = timeline.tally
        count(
            device.category,
            tally.scope_ms,
            tally.intact_ms,
            tally.scope_ms - length(timeline.offline),
        )
        for a, b in timeline.scope:
            scope_diff[index(a)] += 1
            scope_diff[index(b)] -= 1
        for a, b in minus(timeline.scope, timeline.not_intact):
            intact_diff[index(a)] += 1
            intact_diff[index(b)] -= 1
        for outage in timeline.outages:
            if outage.end_ms is None:
                figure.not_restored += 1
            elif outage.start_ms is not None:
                figure.restored += 1
                figure.restore_ms_total += outage.end_ms - outage.start_ms
        outages.extend(timeline.outages)
    outages.sort(key=lambda o: (-o.in_period_ms, o.device.id, o.start_ms or 0))
    figure.longest = outages[:longest]
    in_scope = intact = 0
    for k in range(samples):
        in_scope += scope_diff[k]
        intact += intact_diff[k]
        figure.series.append(Sample(lo + k * step_ms, base + in_scope, base + intact))
    return figure

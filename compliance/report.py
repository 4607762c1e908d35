"""The compliance report's figures for a period, clause by clause of the park standard.

``build_report`` reads only stored rows, as recorded by ``as_of`` where the rows say when they
were recorded, and keeps the ids of the rows behind every figure, so each can be traced:

=========  ==================================================================================
5.5.4      intactness (compliance.history / compliance.intactness) time-weighted and at the
           period's end, per category and building, with its series; every non-intact
           interval; inspection tasks due in the period; work orders opened and closed
5.5.5      fire lanes: obstruction alerts, and obstructed time from the condition log
5.5.3      hazardous goods: gas alarms by level, goods outside their zone, store door and
           temperature alerts
5.5.2      emergency plans: real incidents (drills apart) and each plan's drills against its
           legal frequency (on-site plan every 6 months, special/comprehensive every year)
5.5.1      the training register
alarms     alerts raised in the period: by rule and severity, time to acknowledge and resolve
           against a promise, escalations, shelving, false alarms
7.1/7.2    non-conformities found and the corrective actions taken
data       gaps in the record: devices' presence unknown, and stretches with nothing recorded
=========  ==================================================================================

**False alarm** (no stored flag exists): an alert raised in the period that a person (not the
system) resolved with a note containing one of ``ReportConfig.false_alarm_markers`` ("误报",
"false alarm"...). **Percentiles** are nearest-rank: the p-th of n sorted values is the
``ceil(p * n / 100)``-th. **Drill alerts** (alert detail ``drill: true``) are left out of the
alarm figures and counted apart.

This module is pure reading and arithmetic; callers bring the condition log up to date first
(``compliance.intactness.refresh``) when the period reaches the present.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from compliance.history import (
    DeviceTimeline,
    Sample,
    TimeTally,
    device_timeline,
    intersect,
    summarise,
)
from compliance.intactness import Tally, figure_at
from compliance.timeline import (
    ScrapDate,
    gather,
    length,
    no_scrap_dates,
    to_dt,
    to_ms,
    union,
)
from core.catalogue import Catalogue
from core.models import Building, Device, DeviceEvent, PresenceChange, Reading, Site, Zone
from core.models_alerts import Alert, AlertJournal
from core.models_compliance import ConditionSpan, OutOfService
from core.models_incidents import Incident, IncidentAlert, IncidentStep
from core.models_maintenance import InspectionTask, WorkOrder
from core.models_training import TrainingSession

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
PERIOD = re.compile(r"^([0-9]{4})-([0-9]{2})$")
DEFAULT_TZ = "Asia/Shanghai"
SEVERITIES = ("critical", "major", "minor", "warning")
DRILL_EVERY_MS = {
    "on_site": 182 * DAY_MS,
    "special": 365 * DAY_MS,
    "comprehensive": 365 * DAY_MS,
}
"""Legal minimum drill frequency by plan level (应急预案管理办法 Art. 33): an on-site plan at
least every half-year, a special or comprehensive plan at least once a year (the same figures
as rules.plans.DRILL_EVERY_S, which compliance may not import)."""
REQUIRED_PLAN_TYPES = ("fire", "public_health", "chemical_leak", "typhoon", "earthquake", "riot")
"""The emergencies clause 5.5.2 names: major fire, public health and epidemic, hazardous-chemical
leak, typhoon, earthquake, riot."""


class PeriodError(ValueError):
    """A period that cannot be reported on; one sentence."""


# ---- the period -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    """``YYYY-MM``."""
    start_ms: int
    end_ms: int
    timezone: str

    @property
    def first_day(self) -> date:
        return datetime.fromtimestamp(self.start_ms / 1000, ZoneInfo(self.timezone)).date()

    @property
    def last_day(self) -> date:
        tz = ZoneInfo(self.timezone)
        return datetime.fromtimestamp((self.end_ms - 1) / 1000, tz).date()


def _midnight_ms(day: date, tz: ZoneInfo) -> int:
    moment = datetime(day.year, day.month, day.day, tzinfo=tz)
    return int(moment.astimezone(UTC).timestamp() * 1000)


def month_period(text: str, timezone: str = DEFAULT_TZ) -> Period:
    """The calendar month ``YYYY-MM`` in the park's time zone: local midnight of its first day
    to local midnight of the next month's first day."""
    match = PERIOD.match(text.strip()) if isinstance(text, str) and len(text) <= 16 else None
    if match is None:
        shown = text[:32] if isinstance(text, str) else type(text).__name__
        raise PeriodError(f"period {shown!r} is not a month such as 2026-11 (YYYY-MM)")
    year, month = int(match[1]), int(match[2])
    if not 2000 <= year <= 2999 or not 1 <= month <= 12:
        raise PeriodError(f"period {text[:32]!r} is not a month between 2000-01 and 2999-12")
    tz = ZoneInfo(timezone)
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return Period(
        f"{year:04d}-{month:02d}", _midnight_ms(first, tz), _midnight_ms(following, tz), timezone
    )


def last_month(now_ms: int, timezone: str = DEFAULT_TZ) -> Period:
    """The last whole calendar month before ``now`` in the park's time zone."""
    today = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(timezone)).date()
    first = date(today.year, today.month, 1) - timedelta(days=1)
    return month_period(f"{first.year:04d}-{first.month:02d}", timezone)


def park_timezone(session: Session) -> str:
    """The time zone of the park's (first) site; Asia/Shanghai when there is none."""
    name = session.scalar(select(Site.timezone).order_by(Site.id).limit(1))
    try:
        ZoneInfo(name or DEFAULT_TZ)
    except (KeyError, ValueError):
        return DEFAULT_TZ
    return name or DEFAULT_TZ


# ---- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanInfo:
    id: str
    type: str
    level: str
    title_zh: str
    title_en: str


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """What the report counts as what, and the promises it measures against. The rule ids
    default to the demo park's (examples/demo-park/rules.yaml); ``from_rules`` reads them from
    a site's rule set."""

    ack_promise_ms: dict[str, int] = field(
        default_factory=lambda: {
            "critical": MINUTE_MS,
            "major": 5 * MINUTE_MS,
            "minor": 30 * MINUTE_MS,
            "warning": HOUR_MS,
        }
    )
    """Time to acknowledge promised per severity (critical: 1 minute, the escalation delay)."""
    resolve_promise_ms: dict[str, int] = field(
        default_factory=lambda: {
            "critical": 4 * HOUR_MS,
            "major": DAY_MS,
            "minor": 3 * DAY_MS,
            "warning": 7 * DAY_MS,
        }
    )
    """Time to resolve promised per severity."""
    fire_lane_rules: frozenset[str] = frozenset({"fire-lane-obstructed"})
    fire_lane_types: frozenset[str] = frozenset({"fire_lane"})
    gas_levels: dict[str, int] = field(default_factory=lambda: {"gas-25-lel": 1, "gas-50-lel": 2})
    """Gas rules → alarm level (1: ≤25 % LEL, 2: ≤50 % LEL, GB/T 50493-2019 §5.5.2)."""
    goods_out_of_zone_rules: frozenset[str] = frozenset({"hazardous-goods-out-of-zone"})
    hazmat_door_rules: frozenset[str] = frozenset({"hazmat-door-open"})
    hazmat_temperature_rules: frozenset[str] = frozenset({"hazmat-temperature"})
    hazmat_other_rules: frozenset[str] = frozenset({"hazmat-vapour"})
    false_alarm_markers: tuple[str, ...] = ("误报", "false alarm", "false-alarm", "false_alarm")
    training_every_days: int = 90
    """5.5.1 asks for regular training: green when a session was held within this many days
    before the period's end."""
    gap_min_ms: int = 30 * MINUTE_MS
    """Stretches with nothing recorded from any device at least this long are data gaps."""
    chart_step_ms: int = 6 * HOUR_MS
    plans: tuple[PlanInfo, ...] | None = None
    """The site's emergency plans; None: those seen in the incident record."""

    @classmethod
    def from_rules(cls, rules: Iterable[Any], plans: Iterable[Any] | None = None) -> ReportConfig:
        """Read the topics from rule objects (rules.spec) by what they watch, and the plans
        (rules.plans.Plan) if given; duck-typed, as compliance may not import rules."""
        lanes: set[str] = set()
        gas: dict[str, int] = {}
        goods: set[str] = set()
        door: set[str] = set()
        temperature: set[str] = set()
        other: set[str] = set()
        for rule in rules:
            kind = getattr(rule, "kind", None)
            metric = getattr(rule, "metric", None)
            scope = getattr(rule, "scope", None)
            types = set(getattr(scope, "device_types", None) or ())
            if kind == "location":
                goods.add(rule.id)
            elif metric == "obstructed" or (types and types <= {"fire_lane"} and kind != "absence"):
                lanes.add(rule.id)
            elif metric == "gas_lel_pct":
                above = getattr(rule, "above", None)
                gas[rule.id] = 1 if above is not None and above <= 25 else 2
            elif types and types <= {"hazmat_store"} and kind != "absence":
                if metric == "door_open":
                    door.add(rule.id)
                elif metric == "temperature_c":
                    temperature.add(rule.id)
                else:
                    other.add(rule.id)
        infos = None
        if plans is not None:
            infos = tuple(PlanInfo(p.id, p.type, p.level, p.title.zh, p.title.en) for p in plans)
        return cls(
            fire_lane_rules=frozenset(lanes),
            gas_levels=gas,
            goods_out_of_zone_rules=frozenset(goods),
            hazmat_door_rules=frozenset(door),
            hazmat_temperature_rules=frozenset(temperature),
            hazmat_other_rules=frozenset(other),
            plans=infos,
        )


# ---- the figures ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    zh: str
    en: str


@dataclass(frozen=True, slots=True)
class NonIntactInterval:
    device_id: str
    label: str
    category: str
    building_id: str | None
    zone_id: str
    reason: str
    source: str
    start_ms: int | None
    """When it began (maybe before the period); None: before anything was recorded."""
    end_ms: int | None
    """When it ended; None: still so at the end of the period (as recorded by as_of)."""
    in_period_ms: int
    evidence: dict[str, Any]


@dataclass(slots=True)
class InspectionFigures:
    due: list[int] = field(default_factory=list)
    on_time: list[int] = field(default_factory=list)
    late: list[int] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    """Due in the period, not completed by as_of (and past due then)."""
    not_yet_due: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(slots=True)
class WorkOrderFigures:
    opened: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    open_at_end: list[int] = field(default_factory=list)
    mean_close_ms: float | None = None
    """Mean of closed - opened over the orders closed in the period."""


@dataclass(slots=True)
class Facilities:
    """Clause 5.5.4: fire facilities in use 100 % intact."""

    time_weighted: TimeTally
    by_category: dict[str, TimeTally]
    by_building: dict[str | None, TimeTally]
    end_at_ms: int
    end_overall: Tally
    end_by_category: dict[str, Tally]
    end_by_building: dict[str | None, Tally]
    end_non_intact: list[str]
    online: TimeTally
    devices_counted: int
    series: list[Sample]
    intervals: list[NonIntactInterval]
    minutes_by_reason: dict[str, int]
    """Device-milliseconds in the period per reason (a device-minute may have several)."""
    restored: int
    not_restored: int
    mean_time_to_restore_ms: float | None
    out_of_service: list[dict[str, Any]]
    not_classified: list[str]
    inspections: InspectionFigures
    work_orders: WorkOrderFigures

    @property
    def ok(self) -> bool | None:
        if not self.time_weighted.scope_ms:
            return None
        return (
            self.time_weighted.intact_ms == self.time_weighted.scope_ms
            and self.end_overall.intact == self.end_overall.in_scope
            and not self.inspections.missed
        )


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: int
    rule_id: str
    title: Names
    severity: str
    device_id: str | None
    zone_id: str | None
    first_seen_ms: int
    ended_ms: int | None
    """When its condition cleared or it was resolved (by as_of); None: still on."""
    state: str
    value: Any

    @property
    def duration_ms(self) -> int | None:
        return self.ended_ms - self.first_seen_ms if self.ended_ms is not None else None


@dataclass(slots=True)
class Lane:
    device_id: str
    label: str
    zone_id: str
    zone: Names | None
    alert_ids: list[int] = field(default_factory=list)
    obstructions: list[tuple[int, int | None]] = field(default_factory=list)
    """Merged obstructed stretches (start, end; None: still obstructed), clipped to the period."""
    obstructed_ms: int = 0
    longest_ms: int = 0
    longest_start_ms: int | None = None
    no_data_ms: int = 0
    """Time in the period when the lane's monitor was not reporting (an obstruction then
    would not have been seen)."""


@dataclass(slots=True)
class FireLanes:
    lanes: list[Lane]
    alerts: list[AlertRow]

    @property
    def obstructed_ms(self) -> int:
        return sum(lane.obstructed_ms for lane in self.lanes)

    @property
    def ok(self) -> bool | None:
        if not self.lanes and not self.alerts:
            return None
        return not self.alerts and self.obstructed_ms == 0


@dataclass(slots=True)
class Hazmat:
    gas: dict[int, list[AlertRow]]
    out_of_zone: list[AlertRow]
    door: list[AlertRow]
    temperature: list[AlertRow]
    other: list[AlertRow]

    @property
    def all(self) -> list[AlertRow]:
        rows = [a for level in sorted(self.gas) for a in self.gas[level]]
        return rows + self.out_of_zone + self.door + self.temperature + self.other

    @property
    def ok(self) -> bool:
        return not self.all


@dataclass(frozen=True, slots=True)
class IncidentRow:
    id: int
    plan_id: str
    plan_type: str
    plan_level: str
    title: Names
    zone_id: str | None
    zone: Names | None
    trigger: str
    activated_ms: int
    activated_by: str
    closed_ms: int | None
    closed_by: str | None
    summary: str | None
    alert_ids: tuple[int, ...]
    steps: int
    done_on_time: int
    done_late: int
    skipped: int
    overdue: int
    """Pending past their deadline (at the period's end or as_of, whichever is first)."""
    first_step_ms: int | None
    last_step_ms: int | None

    @property
    def punctuality(self) -> float | None:
        due = self.done_on_time + self.done_late + self.overdue
        return round(self.done_on_time / due, 4) if due else None


@dataclass(frozen=True, slots=True)
class DrillRow:
    plan: PlanInfo
    every_ms: int | None
    """The legal interval for its level; None for an unknown level."""
    in_period: tuple[int, ...]
    """Drill incident ids activated in the period."""
    last_ms: int | None
    """The latest drill activated before the period's end."""

    def ok(self, end_ms: int) -> bool:
        if self.every_ms is None:
            return bool(self.in_period)
        return self.last_ms is not None and end_ms - self.last_ms <= self.every_ms


@dataclass(slots=True)
class Plans:
    incidents: list[IncidentRow]
    drills: list[DrillRow]
    plans_from_record: bool
    """True when the plan list was not given and comes from the incident record."""
    missing_types: list[str]
    end_ms: int

    @property
    def ok(self) -> bool:
        return not self.missing_types and all(d.ok(self.end_ms) for d in self.drills)


@dataclass(frozen=True, slots=True)
class TrainingRow:
    id: int
    held_on: date
    topic: str
    trainer: str
    attendee_count: int
    attendees: tuple[str, ...]
    hours: float | None


@dataclass(slots=True)
class Training:
    sessions: list[TrainingRow]
    last_before_end: TrainingRow | None
    every_days: int
    last_day: date

    @property
    def people_trained(self) -> int:
        return sum(s.attendee_count for s in self.sessions)

    @property
    def named_people(self) -> int:
        return len({name for s in self.sessions for name in s.attendees})

    @property
    def ok(self) -> bool:
        last = self.last_before_end
        return last is not None and (self.last_day - last.held_on).days < self.every_days


@dataclass(frozen=True, slots=True)
class Durations:
    values_ms: tuple[int, ...]
    promise_ms: int | None

    @property
    def n(self) -> int:
        return len(self.values_ms)

    def percentile(self, p: float) -> int | None:
        return nearest_rank(self.values_ms, p)

    @property
    def max(self) -> int | None:
        return max(self.values_ms) if self.values_ms else None

    @property
    def within(self) -> int | None:
        if self.promise_ms is None:
            return None
        return sum(1 for v in self.values_ms if v <= self.promise_ms)


@dataclass(frozen=True, slots=True)
class Escalation:
    alert_id: int
    rule_id: str
    at_ms: int
    note: str | None


@dataclass(frozen=True, slots=True)
class Shelving:
    alert_id: int
    rule_id: str
    device_id: str | None
    by: str
    at_ms: int
    until_ms: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class FalseAlarm:
    alert_id: int
    rule_id: str
    device_id: str | None
    by: str
    at_ms: int
    note: str


@dataclass(slots=True)
class Alarms:
    alerts: list[AlertRow]
    drill_alerts: list[int]
    by_rule: dict[str, dict[str, int]]
    titles: dict[str, Names]
    ack: dict[str, Durations]
    """Per severity, plus ``all`` (no promise)."""
    resolve: dict[str, Durations]
    ack_late: list[int]
    """Acknowledged after the promise, or never and the promise has passed by as_of."""
    resolve_late: list[int]
    never_acked: list[int]
    """Not acknowledged by anyone (by as_of), resolved by the system or still open."""
    still_open: list[int]
    escalations: list[Escalation]
    shelvings: list[Shelving]
    false_alarms: list[FalseAlarm]

    @property
    def ok(self) -> bool:
        return not self.ack_late and not self.resolve_late


@dataclass(frozen=True, slots=True)
class NonConformity:
    kind: str
    """inspection_failed, inspection_missed, work_order, drill_overdue, plan_missing."""
    ref: str
    """The row behind it: ``task 12``, ``work_order 7``, ``plan fire``."""
    device_id: str | None
    found_ms: int | None
    what: str
    action: str | None
    """The corrective action recorded (a work order's fix, a late completion)."""
    action_ref: str | None
    closed_ms: int | None
    """When the action was completed; None: still open."""


@dataclass(slots=True)
class SelfInspection:
    items: list[NonConformity]

    @property
    def open(self) -> list[NonConformity]:
        return [i for i in self.items if i.closed_ms is None]

    @property
    def ok(self) -> bool:
        return not self.open


@dataclass(frozen=True, slots=True)
class Gap:
    kind: str
    """``no_data`` (nothing recorded from any device) or ``presence_unknown`` (the collector
    was starting or had lost the broker: presence of devices unknown)."""
    start_ms: int
    end_ms: int | None
    devices: int | None
    cause: str | None


@dataclass(slots=True)
class DataGaps:
    gaps: list[Gap]
    devices: int
    """Devices in the register."""
    recorded: int
    """Messages recorded in the period (readings in the relational store, events, presence
    changes); 0 means nothing at all was recorded."""
    readings_checked: bool
    """Whether the readings table held readings for the period (false with InfluxDB)."""

    @property
    def ok(self) -> bool:
        return not self.gaps and self.recorded > 0


@dataclass(slots=True)
class ComplianceReport:
    period: Period
    as_of_ms: int
    generated_ms: int
    site: Names
    facilities: Facilities
    lanes: FireLanes
    hazmat: Hazmat
    plans: Plans
    training: Training
    alarms: Alarms
    self_inspection: SelfInspection
    data: DataGaps
    config: ReportConfig
    categories: dict[str, Names]
    buildings: dict[str, Names]
    zones: dict[str, Names]
    devices: dict[str, str]
    """Device id → label, for every device named in the report."""

    @property
    def end_ms(self) -> int:
        """The end of what the report covers: the period's end, or as_of if earlier."""
        return min(self.period.end_ms, self.as_of_ms)

    def verdicts(self) -> dict[str, bool | None]:
        """Green (True), red (False) or no data (None) per clause, in the summary's order."""
        return {
            "5.5.4": self.facilities.ok,
            "5.5.5": self.lanes.ok,
            "5.5.3": self.hazmat.ok,
            "5.5.2": self.plans.ok,
            "5.5.1": self.training.ok,
            "alarms": self.alarms.ok,
            "7.1": self.self_inspection.ok,
            "data": self.data.ok,
        }


def nearest_rank(values: Sequence[int], p: float) -> int | None:
    """The p-th percentile by nearest rank: the ceil(p * n / 100)-th smallest value."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[min(rank, len(ordered)) - 1]


# ---- building -------------------------------------------------------------------------------


def build_report(
    session: Session,
    catalogue: Catalogue,
    period: Period,
    *,
    as_of_ms: int,
    generated_ms: int | None = None,
    config: ReportConfig | None = None,
    scrap_date: ScrapDate = no_scrap_dates,
) -> ComplianceReport:
    """The report of ``period`` from what was recorded by ``as_of_ms`` (a period still running
    is reported up to as_of)."""
    config = config or ReportConfig()
    if as_of_ms <= period.start_ms:
        raise PeriodError(f"period {period.label} has not begun yet")
    lo, hi = period.start_ms, min(period.end_ms, as_of_ms)
    zones, buildings, site = _places(session)
    labels: dict[str, str] = {}
    facilities = _facilities(session, catalogue, lo, hi, as_of_ms, config, scrap_date, labels)
    alerts = _alerts(session, lo, hi, as_of_ms)
    lanes = _lanes(session, lo, hi, as_of_ms, config, alerts, facilities, zones, labels)
    hazmat = _hazmat(alerts, config)
    plans = _plans(session, lo, hi, as_of_ms, config, zones)
    training = _training(session, period, hi, config)
    alarms = _alarms(session, alerts, lo, hi, as_of_ms, config)
    self_inspection = _self_inspection(session, lo, hi, as_of_ms, facilities, plans)
    data = _gaps(session, lo, hi, as_of_ms, config)
    for a in alerts:
        if a.row.device_id is not None:
            labels.setdefault(a.row.device_id, "")
    _fill_labels(session, labels)
    return ComplianceReport(
        period=period,
        as_of_ms=as_of_ms,
        generated_ms=generated_ms if generated_ms is not None else as_of_ms,
        site=site,
        facilities=facilities,
        lanes=lanes,
        hazmat=hazmat,
        plans=plans,
        training=training,
        alarms=alarms,
        self_inspection=self_inspection,
        data=data,
        config=config,
        categories={c: Names(v.zh, v.en) for c, v in catalogue.categories.items()},
        buildings=buildings,
        zones=zones,
        devices=labels,
    )


def _places(session: Session) -> tuple[dict[str, Names], dict[str, Names], Names]:
    zones = {
        r.id: Names(r.name_zh, r.name_en)
        for r in session.execute(select(Zone.id, Zone.name_zh, Zone.name_en))
    }
    buildings = {
        r.id: Names(r.name_zh, r.name_en)
        for r in session.execute(select(Building.id, Building.name_zh, Building.name_en))
    }
    first = session.execute(select(Site.name_zh, Site.name_en).order_by(Site.id).limit(1)).first()
    site = Names(first.name_zh, first.name_en) if first is not None else Names("—", "—")
    return zones, buildings, site


def _fill_labels(session: Session, labels: dict[str, str]) -> None:
    missing = sorted(d for d, label in labels.items() if not label)
    for i in range(0, len(missing), 500):
        chunk = missing[i : i + 500]
        for device_id, label in session.execute(
            select(Device.id, Device.label).where(Device.id.in_(chunk))
        ):
            labels[device_id] = label


# ---- 5.5.4 ------------------------------------------------------------------------------------


def _facilities(
    session: Session,
    catalogue: Catalogue,
    lo: int,
    hi: int,
    as_of_ms: int,
    config: ReportConfig,
    scrap_date: ScrapDate,
    labels: dict[str, str],
) -> Facilities:
    record = gather(session, catalogue, lo, hi, as_of_ms, scrap_date=scrap_date)
    step = min(config.chart_step_ms, hi - lo)
    figure = summarise(record, step, longest=0)
    timelines: dict[str, DeviceTimeline] = {
        d: device_timeline(info, record) for d, info in record.devices.items()
    }
    span = hi - lo
    by_building: dict[str | None, TimeTally] = {}
    for group in record.groups:
        if group.in_service_ms is None or group.in_service_ms <= lo:
            tally = by_building.setdefault(group.building_id, TimeTally())
            tally.scope_ms += group.count * span
            tally.intact_ms += group.count * span
    intervals: list[NonIntactInterval] = []
    by_reason: dict[str, int] = {}
    for device_id, info in sorted(record.devices.items()):
        tally = by_building.setdefault(info.building_id, TimeTally())
        if info.in_service_ms is None or info.in_service_ms <= lo:
            tally.scope_ms -= span
            tally.intact_ms -= span
        timeline = timelines[device_id]
        own = timeline.tally
        tally.scope_ms += own.scope_ms
        tally.intact_ms += own.intact_ms
        for stretch in sorted(
            timeline.stretches, key=lambda s: (s.start_ms or -1, s.reason, s.source)
        ):
            a = lo if stretch.start_ms is None else max(stretch.start_ms, lo)
            b = hi if stretch.end_ms is None else min(stretch.end_ms, hi)
            inside = length(intersect(timeline.scope, [(a, b)])) if a < b else 0
            if inside <= 0:
                continue
            labels[device_id] = info.label
            by_reason[stretch.reason] = by_reason.get(stretch.reason, 0) + inside
            intervals.append(
                NonIntactInterval(
                    device_id,
                    info.label,
                    info.category,
                    info.building_id,
                    info.zone_id,
                    stretch.reason,
                    stretch.source,
                    stretch.start_ms,
                    stretch.end_ms if stretch.end_ms is None or stretch.end_ms <= hi else None,
                    inside,
                    dict(stretch.detail),
                )
            )
    by_building = {b: t for b, t in by_building.items() if t.scope_ms}
    at = hi - 1
    end_record = gather(session, catalogue, at, hi, as_of_ms, scrap_date=scrap_date)
    end = figure_at(end_record, at)
    out = [
        {
            "id": o.id,
            "device_id": o.device_id,
            "since_ms": o.since_ms,
            "until_ms": o.until_ms,
            "taken_by": o.taken_by,
            "reason": o.reason,
            "returned_by": o.returned_by,
        }
        for o in session.scalars(
            select(OutOfService)
            .where(
                OutOfService.since_ms < hi,
                OutOfService.since_ms <= as_of_ms,
                or_(OutOfService.until_ms.is_(None), OutOfService.until_ms > lo),
            )
            .order_by(OutOfService.since_ms, OutOfService.id)
        )
    ]
    for o in out:
        labels.setdefault(str(o["device_id"]), "")
    return Facilities(
        time_weighted=figure.overall,
        by_category=dict(sorted(figure.by_category.items())),
        by_building=dict(sorted(by_building.items(), key=lambda i: i[0] or "")),
        end_at_ms=at,
        end_overall=end.overall,
        end_by_category=dict(sorted(end.by_category.items())),
        end_by_building=dict(sorted(end.by_building.items(), key=lambda i: i[0] or "")),
        end_non_intact=[s.device.id for s in end.non_intact],
        online=figure.online,
        devices_counted=figure.devices_counted,
        series=figure.series,
        intervals=intervals,
        minutes_by_reason=dict(sorted(by_reason.items())),
        restored=figure.restored,
        not_restored=figure.not_restored,
        mean_time_to_restore_ms=figure.mean_time_to_restore_ms,
        out_of_service=out,
        not_classified=list(record.unknown_type),
        inspections=_inspections(session, lo, hi, as_of_ms),
        work_orders=_work_orders(session, lo, hi, as_of_ms),
    )


def _inspections(session: Session, lo: int, hi: int, as_of_ms: int) -> InspectionFigures:
    figures = InspectionFigures()
    rows = session.execute(
        select(
            InspectionTask.id,
            InspectionTask.kind,
            InspectionTask.due_at,
            InspectionTask.completed_at,
            InspectionTask.result,
        )
        .where(
            InspectionTask.due_at >= to_dt(lo),
            InspectionTask.due_at < to_dt(hi),
            InspectionTask.created_at <= to_dt(as_of_ms),
        )
        .order_by(InspectionTask.due_at, InspectionTask.id)
    )
    for task_id, kind, due_at, completed_at, result in rows:
        due = to_ms(due_at)
        done = to_ms(completed_at)
        assert due is not None
        if done is not None and done > as_of_ms:
            done = None
        figures.due.append(task_id)
        counts = figures.by_kind.setdefault(
            kind, {"due": 0, "on_time": 0, "late": 0, "missed": 0, "not_yet_due": 0, "failed": 0}
        )
        counts["due"] += 1
        if done is not None:
            state = "on_time" if done <= due else "late"
            if result == "fail":
                figures.failed.append(task_id)
                counts["failed"] += 1
        else:
            state = "missed" if due <= as_of_ms else "not_yet_due"
        getattr(figures, state).append(task_id)
        counts[state] += 1
    return figures


def _work_orders(session: Session, lo: int, hi: int, as_of_ms: int) -> WorkOrderFigures:
    figures = WorkOrderFigures()
    rows = session.execute(
        select(WorkOrder.id, WorkOrder.opened_at, WorkOrder.closed_at)
        .where(
            WorkOrder.opened_at < to_dt(hi),
            WorkOrder.opened_at <= to_dt(as_of_ms),
            or_(WorkOrder.closed_at.is_(None), WorkOrder.closed_at >= to_dt(lo)),
        )
        .order_by(WorkOrder.opened_at, WorkOrder.id)
    )
    spans: list[int] = []
    for order_id, opened_at, closed_at in rows:
        opened = to_ms(opened_at)
        closed = to_ms(closed_at)
        assert opened is not None
        if closed is not None and closed > as_of_ms:
            closed = None
        if opened >= lo:
            figures.opened.append(order_id)
        if closed is not None and lo <= closed < hi:
            figures.closed.append(order_id)
            spans.append(closed - opened)
        if closed is None or closed >= hi:
            figures.open_at_end.append(order_id)
    figures.mean_close_ms = sum(spans) / len(spans) if spans else None
    return figures


# ---- alerts, shared by 5.5.5, 5.5.3 and alarm handling --------------------------------------


@dataclass(frozen=True, slots=True)
class _Alert:
    row: AlertRow
    drill: bool
    acked_ms: int | None
    resolved_ms: int | None
    resolved_by: str | None
    resolve_note: str | None


def _alerts(session: Session, lo: int, hi: int, as_of_ms: int) -> list[_Alert]:
    """Alerts first seen in the period, with their journal as recorded by as_of."""
    alerts = list(
        session.scalars(
            select(Alert)
            .where(Alert.first_seen_ms >= lo, Alert.first_seen_ms < hi)
            .order_by(Alert.first_seen_ms, Alert.id)
        )
    )
    journal: dict[int, list[AlertJournal]] = {a.id: [] for a in alerts}
    ids = list(journal)
    for i in range(0, len(ids), 500):
        for entry in session.scalars(
            select(AlertJournal)
            .where(AlertJournal.alert_id.in_(ids[i : i + 500]), AlertJournal.at_ms <= as_of_ms)
            .order_by(AlertJournal.id)
        ):
            journal[entry.alert_id].append(entry)
    found: list[_Alert] = []
    for alert in alerts:
        entries = journal[alert.id]
        acked = next((e for e in entries if e.action == "acknowledged"), None)
        resolved = next((e for e in entries if e.action == "resolved"), None)
        cleared = next((e for e in entries if e.action == "cleared"), None)
        ended = resolved.at_ms if resolved is not None else None
        if cleared is not None and (ended is None or cleared.at_ms < ended):
            ended = cleared.at_ms
        severities = [alert.severity] + [
            str((e.note or "").split("→")[-1]).strip()
            for e in entries
            if e.action == "severity" and e.note
        ]
        top = max(
            (s for s in severities if s in SEVERITIES), key=SEVERITIES[::-1].index, default="minor"
        )
        state = "resolved" if resolved is not None else ("acknowledged" if acked else "active")
        detail = alert.detail or {}
        row = AlertRow(
            alert.id,
            alert.rule_id,
            Names(alert.title_zh, alert.title_en),
            top,
            alert.device_id,
            alert.zone_id,
            alert.first_seen_ms,
            ended,
            state,
            detail.get("value"),
        )
        found.append(
            _Alert(
                row,
                detail.get("drill") is True,
                acked.at_ms if acked is not None else None,
                resolved.at_ms if resolved is not None else None,
                resolved.actor if resolved is not None else None,
                resolved.note if resolved is not None else None,
            )
        )
    return found


# ---- 5.5.5 ------------------------------------------------------------------------------------


def _lanes(
    session: Session,
    lo: int,
    hi: int,
    as_of_ms: int,
    config: ReportConfig,
    alerts: list[_Alert],
    facilities: Facilities,
    zones: dict[str, Names],
    labels: dict[str, str],
) -> FireLanes:
    lanes: dict[str, Lane] = {}
    for device_id, label, zone_id in session.execute(
        select(Device.id, Device.label, Device.zone_id)
        .where(Device.type.in_(sorted(config.fire_lane_types)))
        .order_by(Device.id)
    ):
        lanes[device_id] = Lane(device_id, label, zone_id, zones.get(zone_id))
        labels[device_id] = label
    rows = [a.row for a in alerts if a.row.rule_id in config.fire_lane_rules and not a.drill]
    for row in rows:
        if row.device_id in lanes:
            lanes[row.device_id].alert_ids.append(row.id)
    spans: dict[str, list[tuple[int | None, int | None]]] = {}
    ids = sorted(lanes)
    for i in range(0, len(ids), 500):
        for device_id, start, end, closed in session.execute(
            select(
                ConditionSpan.device_id,
                ConditionSpan.start_ms,
                ConditionSpan.end_ms,
                ConditionSpan.closed_ms,
            ).where(
                ConditionSpan.device_id.in_(ids[i : i + 500]),
                ConditionSpan.reason == "blocked",
                ConditionSpan.start_ms < hi,
                ConditionSpan.opened_ms <= as_of_ms,
                or_(
                    ConditionSpan.end_ms.is_(None),
                    ConditionSpan.end_ms > lo,
                    ConditionSpan.closed_ms > as_of_ms,
                ),
            )
        ):
            known = end if closed is not None and closed <= as_of_ms else None
            spans.setdefault(device_id, []).append((start, known))
    offline: dict[str, int] = {}
    for interval in facilities.intervals:
        if interval.device_id in lanes and interval.reason == "offline":
            offline[interval.device_id] = offline.get(interval.device_id, 0) + interval.in_period_ms
    for device_id, lane in lanes.items():
        merged = union(spans.get(device_id, []), lo, hi)
        lane.obstructions = [
            (a, None if b >= hi and _open_at(spans[device_id], hi) else b) for a, b in merged
        ]
        lane.obstructed_ms = length(merged)
        for a, b in merged:
            if b - a > lane.longest_ms:
                lane.longest_ms, lane.longest_start_ms = b - a, a
        lane.no_data_ms = offline.get(device_id, 0)
    return FireLanes(list(lanes.values()), rows)


def _open_at(spans: list[tuple[int | None, int | None]], at: int) -> bool:
    return any((a is None or a < at) and (b is None or b >= at) for a, b in spans)


# ---- 5.5.3 ------------------------------------------------------------------------------------


def _hazmat(alerts: list[_Alert], config: ReportConfig) -> Hazmat:
    real = [a.row for a in alerts if not a.drill]
    gas: dict[int, list[AlertRow]] = {1: [], 2: []}
    for row in real:
        level = config.gas_levels.get(row.rule_id)
        if level is not None:
            gas.setdefault(level, []).append(row)
    return Hazmat(
        gas,
        [r for r in real if r.rule_id in config.goods_out_of_zone_rules],
        [r for r in real if r.rule_id in config.hazmat_door_rules],
        [r for r in real if r.rule_id in config.hazmat_temperature_rules],
        [r for r in real if r.rule_id in config.hazmat_other_rules],
    )


# ---- 5.5.2 ------------------------------------------------------------------------------------


def _plans(
    session: Session,
    lo: int,
    hi: int,
    as_of_ms: int,
    config: ReportConfig,
    zones: dict[str, Names],
) -> Plans:
    real = list(
        session.scalars(
            select(Incident)
            .where(
                Incident.drill.is_(False),
                Incident.activated_ms >= lo,
                Incident.activated_ms < hi,
            )
            .order_by(Incident.activated_ms, Incident.id)
        )
    )
    steps: dict[int, list[IncidentStep]] = {i.id: [] for i in real}
    links: dict[int, list[int]] = {i.id: [] for i in real}
    if real:
        for step in session.scalars(
            select(IncidentStep)
            .where(IncidentStep.incident_id.in_(list(steps)))
            .order_by(IncidentStep.position)
        ):
            steps[step.incident_id].append(step)
        for incident_id, alert_id in session.execute(
            select(IncidentAlert.incident_id, IncidentAlert.alert_id)
            .where(IncidentAlert.incident_id.in_(list(steps)))
            .order_by(IncidentAlert.alert_id)
        ):
            links[incident_id].append(alert_id)
    until = min(hi, as_of_ms)
    incidents = [_incident_row(i, steps[i.id], links[i.id], until, as_of_ms, zones) for i in real]
    drills = session.execute(
        select(
            Incident.id,
            Incident.plan_id,
            Incident.plan_type,
            Incident.plan_level,
            Incident.title_zh,
            Incident.title_en,
            Incident.activated_ms,
        )
        .where(Incident.drill.is_(True), Incident.activated_ms < hi)
        .order_by(Incident.activated_ms, Incident.id)
    ).all()
    plans = config.plans
    from_record = plans is None
    if plans is None:
        seen: dict[str, PlanInfo] = {}
        for row in session.execute(
            select(
                Incident.plan_id,
                Incident.plan_type,
                Incident.plan_level,
                Incident.title_zh,
                Incident.title_en,
            ).order_by(Incident.id)
        ):
            seen.setdefault(row[0], PlanInfo(*row))
        plans = tuple(sorted(seen.values(), key=lambda p: p.id))
    rows = []
    for plan in plans:
        mine = [d for d in drills if d.plan_id == plan.id]
        rows.append(
            DrillRow(
                plan,
                DRILL_EVERY_MS.get(plan.level),
                tuple(d.id for d in mine if d.activated_ms >= lo),
                max((d.activated_ms for d in mine), default=None),
            )
        )
    have = {p.type for p in plans}
    missing = [t for t in REQUIRED_PLAN_TYPES if t not in have]
    return Plans(incidents, rows, from_record, missing, hi)


def _incident_row(
    incident: Incident,
    steps: list[IncidentStep],
    alert_ids: list[int],
    until: int,
    as_of_ms: int,
    zones: dict[str, Names],
) -> IncidentRow:
    done = [
        s for s in steps if s.state == "done" and s.acted_ms is not None and s.acted_ms <= as_of_ms
    ]
    done_ids = {s.id for s in done}
    skipped = [s for s in steps if s.state == "skipped" and (s.acted_ms or 0) <= as_of_ms]
    skipped_ids = {s.id for s in skipped}
    pending = [s for s in steps if s.id not in done_ids and s.id not in skipped_ids]
    on_time = sum(1 for s in done if s.acted_ms is not None and s.acted_ms <= s.due_ms)
    acted = [s.acted_ms for s in done if s.acted_ms is not None]
    closed = (
        incident.closed_ms
        if incident.closed_ms is not None and incident.closed_ms <= as_of_ms
        else None
    )
    zone = None
    if incident.zone_name_zh is not None and incident.zone_name_en is not None:
        zone = Names(incident.zone_name_zh, incident.zone_name_en)
    elif incident.zone_id is not None:
        zone = zones.get(incident.zone_id)
    end = closed if closed is not None else until
    return IncidentRow(
        incident.id,
        incident.plan_id,
        incident.plan_type,
        incident.plan_level,
        Names(incident.title_zh, incident.title_en),
        incident.zone_id,
        zone,
        incident.trigger,
        incident.activated_ms,
        incident.activated_by,
        closed,
        incident.closed_by if closed is not None else None,
        incident.summary if closed is not None else None,
        tuple(alert_ids),
        len(steps),
        on_time,
        len(done) - on_time,
        len(skipped),
        sum(1 for s in pending if s.due_ms <= end),
        min(acted) if acted else None,
        max(acted) if acted else None,
    )


# ---- 5.5.1 ------------------------------------------------------------------------------------


def _training(session: Session, period: Period, hi: int, config: ReportConfig) -> Training:
    tz = ZoneInfo(period.timezone)
    first = period.first_day
    last = datetime.fromtimestamp((hi - 1) / 1000, tz).date()
    rows = session.scalars(
        select(TrainingSession)
        .where(TrainingSession.held_on <= last)
        .order_by(TrainingSession.held_on, TrainingSession.id)
    ).all()

    def row(s: TrainingSession) -> TrainingRow:
        names = tuple(str(n) for n in (s.attendees or []))
        return TrainingRow(s.id, s.held_on, s.topic, s.trainer, s.attendee_count, names, s.hours)

    inside = [row(s) for s in rows if s.held_on >= first]
    latest = row(rows[-1]) if rows else None
    return Training(inside, latest, config.training_every_days, last)


# ---- alarm handling ---------------------------------------------------------------------------


def _alarms(
    session: Session,
    alerts: list[_Alert],
    lo: int,
    hi: int,
    as_of_ms: int,
    config: ReportConfig,
) -> Alarms:
    real = [a for a in alerts if not a.drill]
    by_rule: dict[str, dict[str, int]] = {}
    titles: dict[str, Names] = {}
    ack: dict[str, list[int]] = {s: [] for s in SEVERITIES}
    resolve: dict[str, list[int]] = {s: [] for s in SEVERITIES}
    ack_late: list[int] = []
    resolve_late: list[int] = []
    never: list[int] = []
    still_open: list[int] = []
    false_alarms: list[FalseAlarm] = []
    markers = tuple(m.lower() for m in config.false_alarm_markers)
    for a in real:
        row = a.row
        counts = by_rule.setdefault(row.rule_id, {s: 0 for s in SEVERITIES})
        counts[row.severity] = counts.get(row.severity, 0) + 1
        titles.setdefault(row.rule_id, row.title)
        ack_promise = config.ack_promise_ms.get(row.severity)
        resolve_promise = config.resolve_promise_ms.get(row.severity)
        if a.acked_ms is not None:
            took = max(0, a.acked_ms - row.first_seen_ms)
            ack.setdefault(row.severity, []).append(took)
            if ack_promise is not None and took > ack_promise:
                ack_late.append(row.id)
        else:
            never.append(row.id)
            if (
                a.resolved_ms is None
                and ack_promise is not None
                and as_of_ms - row.first_seen_ms > ack_promise
            ):
                ack_late.append(row.id)
        if a.resolved_ms is not None:
            took = max(0, a.resolved_ms - row.first_seen_ms)
            resolve.setdefault(row.severity, []).append(took)
            if resolve_promise is not None and took > resolve_promise:
                resolve_late.append(row.id)
            note = (a.resolve_note or "").lower()
            if a.resolved_by not in (None, "system") and any(m in note for m in markers):
                false_alarms.append(
                    FalseAlarm(
                        row.id,
                        row.rule_id,
                        row.device_id,
                        a.resolved_by or "",
                        a.resolved_ms,
                        a.resolve_note or "",
                    )
                )
        else:
            still_open.append(row.id)
            if resolve_promise is not None and as_of_ms - row.first_seen_ms > resolve_promise:
                resolve_late.append(row.id)
    everything_ack = [v for s in SEVERITIES for v in ack.get(s, [])]
    everything_resolve = [v for s in SEVERITIES for v in resolve.get(s, [])]
    ack_stats = {s: Durations(tuple(ack[s]), config.ack_promise_ms.get(s)) for s in ack}
    ack_stats["all"] = Durations(tuple(everything_ack), None)
    resolve_stats = {
        s: Durations(tuple(resolve[s]), config.resolve_promise_ms.get(s)) for s in resolve
    }
    resolve_stats["all"] = Durations(tuple(everything_resolve), None)
    real_ids = {a.row.id for a in real}
    escalations = [
        Escalation(e.alert_id, rule, e.at_ms, e.note)
        for e, rule in session.execute(
            select(AlertJournal, Alert.rule_id)
            .join(Alert, Alert.id == AlertJournal.alert_id)
            .where(
                AlertJournal.action == "escalated",
                AlertJournal.at_ms >= lo,
                AlertJournal.at_ms < hi,
                AlertJournal.at_ms <= as_of_ms,
            )
            .order_by(AlertJournal.at_ms, AlertJournal.id)
        )
        if e.alert_id in real_ids or e.alert_id not in {a.row.id for a in alerts}
    ]
    shelvings = [
        Shelving(
            e.alert_id,
            rule,
            device,
            e.actor,
            e.at_ms,
            (e.detail or {}).get("until_ms")
            if isinstance((e.detail or {}).get("until_ms"), int)
            else None,
            e.note,
        )
        for e, rule, device in session.execute(
            select(AlertJournal, Alert.rule_id, Alert.device_id)
            .join(Alert, Alert.id == AlertJournal.alert_id)
            .where(
                AlertJournal.action == "shelved",
                AlertJournal.at_ms >= lo,
                AlertJournal.at_ms < hi,
                AlertJournal.at_ms <= as_of_ms,
            )
            .order_by(AlertJournal.at_ms, AlertJournal.id)
        )
    ]
    return Alarms(
        alerts=[a.row for a in real],
        drill_alerts=[a.row.id for a in alerts if a.drill],
        by_rule=dict(sorted(by_rule.items())),
        titles=titles,
        ack=ack_stats,
        resolve=resolve_stats,
        ack_late=sorted(set(ack_late)),
        resolve_late=sorted(set(resolve_late)),
        never_acked=never,
        still_open=still_open,
        escalations=escalations,
        shelvings=shelvings,
        false_alarms=false_alarms,
    )


# ---- 7.1 / 7.2 --------------------------------------------------------------------------------


def _self_inspection(
    session: Session,
    lo: int,
    hi: int,
    as_of_ms: int,
    facilities: Facilities,
    plans: Plans,
) -> SelfInspection:
    items: list[NonConformity] = []
    figures = facilities.inspections
    wanted = sorted(set(figures.failed) | set(figures.missed) | set(figures.late))
    tasks = {
        t.id: t
        for i in range(0, len(wanted), 500)
        for t in session.scalars(
            select(InspectionTask).where(InspectionTask.id.in_(wanted[i : i + 500]))
        )
    }
    orders = list(
        session.scalars(
            select(WorkOrder)
            .where(
                or_(
                    WorkOrder.id.in_(facilities.work_orders.opened),
                    (WorkOrder.source == "inspection")
                    & WorkOrder.source_ref.in_([str(t) for t in figures.failed]),
                )
            )
            .order_by(WorkOrder.opened_at, WorkOrder.id)
        )
    )
    by_task = {o.source_ref: o for o in orders if o.source == "inspection"}
    used: set[int] = set()

    def closed_ms(order: WorkOrder) -> int | None:
        closed = to_ms(order.closed_at)
        return closed if closed is not None and closed <= as_of_ms else None

    for task_id in figures.failed:
        task = tasks[task_id]
        order = by_task.get(str(task_id))
        if order is not None:
            used.add(order.id)
        items.append(
            NonConformity(
                "inspection_failed",
                f"task {task_id}",
                task.device_id,
                to_ms(task.completed_at),
                f"{task.title_zh} / {task.title_en}: {task.subject_label}"
                + (f" — {task.note}" if task.note else ""),
                (order.fix or None)
                if order is not None and closed_ms(order)
                else ("work order opened" if order is not None else None),
                f"work_order {order.id}" if order is not None else None,
                closed_ms(order) if order is not None else None,
            )
        )
    for task_id in figures.missed:
        task = tasks[task_id]
        items.append(
            NonConformity(
                "inspection_missed",
                f"task {task_id}",
                task.device_id,
                to_ms(task.due_at),
                f"{task.title_zh} / {task.title_en}: {task.subject_label}",
                None,
                None,
                None,
            )
        )
    for task_id in figures.late:
        task = tasks[task_id]
        items.append(
            NonConformity(
                "inspection_late",
                f"task {task_id}",
                task.device_id,
                to_ms(task.due_at),
                f"{task.title_zh} / {task.title_en}: {task.subject_label}",
                f"completed late by {task.completed_by or '?'}",
                f"task {task_id}",
                to_ms(task.completed_at),
            )
        )
    for order in orders:
        if order.id in used or order.id not in facilities.work_orders.opened:
            continue
        done = closed_ms(order)
        items.append(
            NonConformity(
                "work_order",
                f"work_order {order.id}",
                order.device_id,
                to_ms(order.opened_at),
                order.title,
                order.fix if done is not None else None,
                f"work_order {order.id}",
                done,
            )
        )
    for drill in plans.drills:
        if not drill.ok(plans.end_ms):
            items.append(
                NonConformity(
                    "drill_overdue",
                    f"plan {drill.plan.id}",
                    None,
                    (drill.last_ms + drill.every_ms)
                    if drill.last_ms is not None and drill.every_ms is not None
                    else None,
                    f"{drill.plan.title_zh} / {drill.plan.title_en}",
                    None,
                    None,
                    None,
                )
            )
    for missing in plans.missing_types:
        items.append(
            NonConformity(
                "plan_missing", f"plan type {missing}", None, None, missing, None, None, None
            )
        )
    items.sort(key=lambda i: (i.found_ms is None, i.found_ms or 0, i.kind, i.ref))
    return SelfInspection(items)


# ---- data gaps --------------------------------------------------------------------------------


def _gaps(session: Session, lo: int, hi: int, as_of_ms: int, config: ReportConfig) -> DataGaps:
    devices = int(session.scalar(select(func.count()).select_from(Device)) or 0)
    gaps: list[Gap] = []
    # presence unknown: the collector marks every device unknown when it starts or loses the
    # broker (one instant, one cause); the stretch lasts until it hears from a device again
    marks = session.execute(
        select(PresenceChange.ts_ms, PresenceChange.cause, func.count())
        .where(
            PresenceChange.presence == "unknown",
            PresenceChange.ts_ms >= lo,
            PresenceChange.ts_ms < hi,
            PresenceChange.ts_ms <= as_of_ms,
        )
        .group_by(PresenceChange.ts_ms, PresenceChange.cause)
        .order_by(PresenceChange.ts_ms)
    ).all()
    for ts, cause, count in marks:
        back = session.scalar(
            select(func.min(PresenceChange.ts_ms)).where(
                PresenceChange.presence != "unknown",
                PresenceChange.ts_ms > ts,
                PresenceChange.ts_ms <= as_of_ms,
            )
        )
        end = back if back is not None and back < hi else None
        gaps.append(Gap("presence_unknown", ts, end, int(count), cause))
    # nothing recorded: buckets of the period in which no reading, event or presence change
    # was recorded from any device
    bucket = max(MINUTE_MS, min(config.gap_min_ms // 2, 5 * MINUTE_MS))
    seen: set[int] = set()
    counted = 0
    readings_checked = False
    sources = [Reading.ts_ms, DeviceEvent.received_ms, PresenceChange.ts_ms]
    top = min(hi, as_of_ms + 1)
    for i, column in enumerate(sources):
        where = [column >= lo, column < top]
        n = int(session.scalar(select(func.count()).where(*where)) or 0)
        if i == 0:
            readings_checked = n > 0
        counted += n
        if n:
            index = (column - lo) // bucket
            seen.update(int(k) for (k,) in session.execute(select(index).where(*where).distinct()))
    slots = -(-(top - lo) // bucket)
    run_start: int | None = None
    for k in range(slots + 1):
        empty = k < slots and k not in seen
        if empty and run_start is None:
            run_start = k
        elif not empty and run_start is not None:
            a = lo + run_start * bucket
            b = min(lo + k * bucket, top)
            if b - a >= config.gap_min_ms:
                gaps.append(Gap("no_data", a, b if b < hi else None, None, None))
            run_start = None
    gaps.sort(key=lambda g: (g.start_ms, g.kind))
    return DataGaps(gaps, devices, counted, readings_checked)

"""Inspection plans: which devices or zones are checked, how often, by whom, against what.

Plans are data in the site folder (``inspection-plans.yaml``), validated once here. A bad file is
refused whole with one message naming the file, the plan and the field; nothing of it applies.

A plan targets one of:

- ``per: device`` with ``device_types`` (optionally only in ``zone_kinds`` or ``zones``): one task
  per device and period;
- ``per: zone`` with ``zone_kinds`` and/or ``zones``: one task per zone (a fire-lane patrol);
- ``per: site``: one task per site (the monthly fire inspection of the unit).

``frequency`` is daily, weekly, half_monthly, monthly, quarterly or yearly, or ``cron`` a
crontab(5) expression (at most hourly). ``stricter`` raises the frequency in given zone kinds
(GB 50444 §5.2.2: extinguishers half-monthly in hazardous and crowded places).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from core.catalogue import Catalogue
from core.models import ZONE_KINDS
from maintenance.errors import PlanError
from maintenance.periods import (
    CRON_MIN_GAP,
    FREQUENCIES,
    NOMINAL,
    CalendarSchedule,
    CronSchedule,
    Frequency,
    Schedule,
)

PLANS_FILE = "inspection-plans.yaml"
_UTC = ZoneInfo("UTC")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _single_line(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if _CONTROL.search(value):
        raise ValueError("must be one line without control characters")
    return value


Line = Annotated[str, Field(max_length=200), AfterValidator(_single_line)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")]
RefId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Person = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bilingual(_Frozen):
    zh: Line
    en: Line


class ChecklistItem(_Frozen):
    """One thing the inspector answers pass / fail / n.a. for."""

    id: Slug
    zh: Line
    en: Line
    device_types: tuple[RefId, ...] | None = Field(
        default=None, description="Only for these device types (default: every type of the plan)."
    )


class Assignee(_Frozen):
    role: Slug | None = None
    person: Person | None = None


class Stricter(_Frozen):
    """A shorter period for subjects in given zone kinds."""

    zone_kinds: tuple[str, ...] = Field(min_length=1)
    frequency: Frequency | None = None
    cron: Annotated[str, Field(max_length=100)] | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> Stricter:
        _check_schedule(self.frequency, self.cron)
        return self


class Plan(_Frozen):
    id: Slug
    name: Bilingual
    per: Literal["device", "zone", "site"] = "device"
    device_types: tuple[RefId, ...] = ()
    zone_kinds: tuple[str, ...] = ()
    zones: tuple[RefId, ...] = ()
    frequency: Frequency | None = None
    cron: Annotated[str, Field(max_length=100)] | None = None
    stricter: tuple[Stricter, ...] = ()
    due_within_hours: int | None = Field(
        default=None,
        ge=1,
        le=24 * 366,
        description="Due this long after the period starts "
        "(never after it ends); default: at the end of the period.",
    )
    assignee: Assignee = Assignee()
    checklist: tuple[ChecklistItem, ...] = Field(min_length=1)
    reference: Annotated[str, Field(max_length=200)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        _check_schedule(self.frequency, self.cron)
        if self.per == "device" and not self.device_types:
            raise ValueError("a per-device plan needs device_types")
        if self.per != "device" and self.device_types:
            raise ValueError(f"a per-{self.per} plan takes no device_types")
        if self.per == "zone" and not (self.zone_kinds or self.zones):
            raise ValueError("a per-zone plan needs zone_kinds or zones")
        if self.per == "site" and (self.zone_kinds or self.zones or self.stricter):
            raise ValueError("a per-site plan takes no zone_kinds, zones or stricter")
        for kind in (*self.zone_kinds, *(k for s in self.stricter for k in s.zone_kinds)):
            if kind not in ZONE_KINDS:
                raise ValueError(
                    f"unknown zone kind {kind!r}; known kinds: {', '.join(ZONE_KINDS)}"
                )
        seen: set[str] = set()
        for rule in self.stricter:
            overlap = seen.intersection(rule.zone_kinds)
            if overlap:
                raise ValueError(f"zone kind {sorted(overlap)[0]!r} is in two stricter rules")
            seen.update(rule.zone_kinds)
            if _nominal(rule.frequency, rule.cron) >= _nominal(self.frequency, self.cron):
                raise ValueError(
                    f"stricter frequency {_label(rule.frequency, rule.cron)!r} for "
                    f"{', '.join(rule.zone_kinds)} is not more frequent than "
                    f"{_label(self.frequency, self.cron)!r}"
                )
        ids = [item.id for item in self.checklist]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"checklist item id {duplicates[0]!r} appears twice")
        for item in self.checklist:
            for device_type in item.device_types or ():
                if device_type not in self.device_types:
                    raise ValueError(
                        f"checklist item {item.id!r} names device type {device_type!r}, "
                        "which the plan does not cover"
                    )
        targets: tuple[str | None, ...] = self.device_types or (None,)
        for target in targets:
            if not self.checklist_for(target):
                raise ValueError(f"no checklist item applies to device type {target!r}")
        return self

    @property
    def frequency_label(self) -> str:
        return _label(self.frequency, self.cron)

    def schedule_for(self, zone_kind: str | None, tz: ZoneInfo) -> Schedule:
        """The schedule of a subject in a zone of ``zone_kind``, in the park's zone ``tz``."""
        for rule in self.stricter:
            if zone_kind in rule.zone_kinds:
                return _schedule(rule.frequency, rule.cron, tz)
        return _schedule(self.frequency, self.cron, tz)

    def checklist_for(self, device_type: str | None) -> tuple[ChecklistItem, ...]:
        return tuple(
            item
            for item in self.checklist
            if item.device_types is None or device_type in item.device_types
        )

    def covers_zone(self, zone_id: str, zone_kind: str) -> bool:
        """Whether a device or zone in this zone falls under the plan's zone filter."""
        if not (self.zone_kinds or self.zones):
            return True
        return zone_kind in self.zone_kinds or zone_id in self.zones


class ServiceDatesConfig(_Frozen):
    """Extinguisher service and scrap tasks from the register dates (GB 50444 T.5.3.3, T.5.4.3)."""

    enabled: bool = True
    lead_days: int = Field(default=30, ge=0, le=365)
    assignee: Assignee = Assignee()


class PlanSet(_Frozen):
    version: Literal[1] = 1
    plans: tuple[Plan, ...] = ()
    extinguisher_service: ServiceDatesConfig = ServiceDatesConfig()

    @model_validator(mode="after")
    def _unique_ids(self) -> PlanSet:
        ids = [plan.id for plan in self.plans]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"plan id {duplicates[0]!r} appears twice")
        return self

    def get(self, plan_id: str) -> Plan | None:
        return next((plan for plan in self.plans if plan.id == plan_id), None)


def load_plans(path: Path, catalogue: Catalogue | None = None) -> PlanSet:
    """Read and validate an inspection-plan file; PlanError names file, plan and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{path}: no such inspection-plan file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot be read: {exc}") from None
    return parse_plans(text, str(path), catalogue)


def parse_plans(text: str, source: str, catalogue: Catalogue | None = None) -> PlanSet:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanError(f"{source}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PlanError(f"{source}: must be a mapping with a 'plans' list")
    try:
        plan_set = PlanSet.model_validate(data)
    except ValidationError as exc:
        raise PlanError(_describe(exc, data, source)) from None
    if catalogue is not None:
        _check_device_types(plan_set, catalogue, source)
    return plan_set


def _check_device_types(plan_set: PlanSet, catalogue: Catalogue, source: str) -> None:
    for index, plan in enumerate(plan_set.plans):
        for device_type in plan.device_types:
            if device_type not in catalogue.device_types:
                known = ", ".join(sorted(catalogue.device_types))
                raise PlanError(
                    f"{source}: plan {plan.id!r} (plans[{index}]): device_types: unknown device "
                    f"type {device_type!r}; known types: {known}"
                )


def _describe(exc: ValidationError, data: dict[str, Any], source: str) -> str:
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "plans" and isinstance(loc[1], int):
        plans = data.get("plans")
        raw = plans[loc[1]] if isinstance(plans, list) and loc[1] < len(plans) else None
        plan_id = raw.get("id") if isinstance(raw, dict) else None
        label = f"plan {str(plan_id)[:64]!r} " if isinstance(plan_id, str | int) else "plan "
        where = f"{label}(plans[{loc[1]}]): "
        loc = loc[2:]
    field = ".".join(str(part) for part in loc if not str(part).startswith("function-"))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "literal_error" and loc and loc[-1] in ("frequency",):
        message = f"must be one of {', '.join(FREQUENCIES)}"
    if "input" in error and error["type"] in ("literal_error", "string_pattern_mismatch"):
        message += f" (got {str(error['input'])[:60]!r})"
    return f"{source}: {where}{field or 'plan'}: {message}"


def _check_schedule(frequency: str | None, cron: str | None) -> None:
    if (frequency is None) == (cron is None):
        raise ValueError("give exactly one of frequency or cron")
    if cron is not None:
        schedule = CronSchedule(cron, _UTC)  # ValueError in one sentence
        gap = schedule.min_gap()
        if gap is None:
            raise ValueError(f"cron expression {cron!r} never fires")
        if gap < CRON_MIN_GAP:
            raise ValueError(f"cron expression {cron!r} fires more often than once an hour")


def _schedule(frequency: Frequency | None, cron: str | None, tz: ZoneInfo) -> Schedule:
    if cron is not None:
        return CronSchedule(cron, tz)
    assert frequency is not None
    return CalendarSchedule(frequency, tz)


def _nominal(frequency: str | None, cron: str | None) -> timedelta:
    if cron is not None:
        return CronSchedule(cron, _UTC).nominal
    assert frequency is not None
    return NOMINAL[frequency]


def _label(frequency: str | None, cron: str | None) -> str:
    return f"cron: {' '.join(cron.split())}" if cron is not None else str(frequency)

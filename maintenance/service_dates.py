"""Extinguisher service and scrap dates from the register (GB 50444-2008 T.5.3.3 and T.5.4.3).

Service: water-based (water, foam) 3 years after manufacture, then every year; dry powder,
clean agent and CO2 5 years after manufacture, then every 2 years. Scrap: water-based at 6
years, dry powder 10, clean agent 10, CO2 12. No service falls on or after the scrap date.

A service task is created ``lead_days`` before each service date, a scrap task ``lead_days``
before the scrap date. Where the register gives an earlier ``next_maintenance_date`` (the service
company's label), that date gets a task too: the stricter date wins. Devices whose register
entry cannot be read (no or bad ``manufacture_date``, unknown ``agent``) are returned as
problems, logged and counted, never skipped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Device, Site
from maintenance.errors import InvalidInput
from maintenance.periods import local_midnight
from maintenance.plans import ServiceDatesConfig
from maintenance.schedule import insert_new_tasks, site_zone

log = logging.getLogger(__name__)

SERVICE_PLAN = "extinguisher-service"
SCRAP_PLAN = "extinguisher-scrap"
EXTINGUISHER = "extinguisher"


@dataclass(frozen=True, slots=True)
class AgentRule:
    first_service_years: int
    service_every_years: int
    scrap_years: int


AGENT_RULES: dict[str, AgentRule] = {
    "water": AgentRule(3, 1, 6),
    "foam": AgentRule(3, 1, 6),
    "dry_powder": AgentRule(5, 2, 10),
    "clean_agent": AgentRule(5, 2, 10),
    "co2": AgentRule(5, 2, 12),
}

SERVICE_CHECKLIST = [
    {
        "id": "sent_to_service",
        "zh": "已送有资质的维修单位维修",
        "en": "Sent to a qualified service company",
    },
    {
        "id": "substitute_placed",
        "zh": "已配置同类型、不低于原规格的备用灭火器",
        "en": "Substitute of the same type and rating in place",
    },
    {"id": "label_updated", "zh": "维修标识已更新", "en": "Service label updated"},
]
SCRAP_CHECKLIST = [
    {
        "id": "replaced",
        "zh": "已更换为同类型、不低于原规格的新灭火器",
        "en": "Replaced by a new unit of the same type and rating",
    },
    {
        "id": "old_unit_removed",
        "zh": "报废灭火器已撤出并登记",
        "en": "Scrapped unit removed and recorded",
    },
    {"id": "register_updated", "zh": "台账已更新", "en": "Register updated"},
]


def add_years(day: date, years: int) -> date:
    """The same day ``years`` later; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True, slots=True)
class ExtinguisherDates:
    """An extinguisher's dates by the standard, plus the register's own next service date."""

    agent: str
    manufactured: date
    service_dates: tuple[date, ...]
    scrap_date: date
    register_next_service: date | None = None

    def next_service(self, today: date) -> date | None:
        """The next service date on or after ``today`` (the register's if earlier), or None."""
        upcoming = [d for d in self.service_dates if d >= today]
        if self.register_next_service is not None and self.register_next_service >= today:
            upcoming.append(self.register_next_service)
        return min(upcoming) if upcoming else None

    def last_service_due(self, today: date) -> date | None:
        """The latest service date that has come (on or before ``today``)."""
        past = [d for d in self.service_dates if d <= today]
        return max(past) if past else None

    def scrapped(self, today: date) -> bool:
        return today >= self.scrap_date


def dates_for(
    agent: str, manufactured: date, register_next: date | None = None
) -> ExtinguisherDates:
    rule = AGENT_RULES.get(agent)
    if rule is None:
        raise InvalidInput(f"unknown agent {agent!r}; known agents: {', '.join(AGENT_RULES)}")
    scrap = add_years(manufactured, rule.scrap_years)
    services: list[date] = []
    years = rule.first_service_years
    while (when := add_years(manufactured, years)) < scrap:
        services.append(when)
        years += rule.service_every_years
    return ExtinguisherDates(agent, manufactured, tuple(services), scrap, register_next)


def dates_from_register(attributes: dict[str, Any]) -> ExtinguisherDates:
    """Read ``agent``, ``manufacture_date`` and ``next_maintenance_date`` (ISO) of a device."""
    agent = attributes.get("agent")
    if not isinstance(agent, str) or not agent:
        raise InvalidInput("the register gives no extinguisher agent")
    manufactured = _iso_date(attributes.get("manufacture_date"), "manufacture_date")
    if manufactured is None:
        raise InvalidInput("the register gives no manufacture_date")
    register_next = _iso_date(attributes.get("next_maintenance_date"), "next_maintenance_date")
    return dates_for(agent.strip().lower(), manufactured, register_next)


@dataclass(frozen=True, slots=True)
class RegisterProblem:
    device_id: str
    message: str


@dataclass(slots=True)
class ServiceResult:
    created: int = 0
    problems: list[RegisterProblem] = field(default_factory=list)


def generate_service_tasks(
    session: Session,
    config: ServiceDatesConfig,
    now: datetime,
    *,
    default_tz: str = "Asia/Shanghai",
) -> ServiceResult:
    """Create the service and scrap tasks that have come within ``lead_days``; caller commits."""
    result = ServiceResult()
    if not config.enabled:
        return result
    site_tz = dict(session.execute(select(Site.id, Site.timezone)).all())
    lead = timedelta(days=config.lead_days)
    rows: list[dict[str, Any]] = []
    devices = session.scalars(select(Device).where(Device.type == EXTINGUISHER).order_by(Device.id))
    for device in devices:
        tz = site_zone(site_tz.get(device.site_id), default_tz)
        today = now.astimezone(tz).date()
        try:
            dates = dates_from_register(device.attributes or {})
            if dates.manufactured > today:
                raise InvalidInput(f"manufacture_date {dates.manufactured} is in the future")
        except InvalidInput as exc:
            result.problems.append(RegisterProblem(device.id, str(exc)))
            continue
        horizon = today + lead
        due_now = [d for d in dates.service_dates if d <= horizon]
        wanted = {max(due_now)} if due_now else set()
        register = dates.register_next_service
        if register is not None and register <= horizon and register < dates.scrap_date:
            wanted.add(register)
        for day in sorted(wanted):
            rows.append(_row(device, SERVICE_PLAN, "service", day, dates, now, tz, config))
        if dates.scrap_date <= horizon:
            rows.append(_row(device, SCRAP_PLAN, "scrap", dates.scrap_date, dates, now, tz, config))
    if result.problems:
        log.warning(
            "%d extinguishers have register dates that cannot be used, e.g. %s: %s",
            len(result.problems),
            result.problems[0].device_id,
            result.problems[0].message,
        )
    result.created = insert_new_tasks(session, rows)
    return result


def _row(
    device: Device,
    plan_id: str,
    kind: str,
    day: date,
    dates: ExtinguisherDates,
    now: datetime,
    tz: Any,
    config: ServiceDatesConfig,
) -> dict[str, Any]:
    rule = AGENT_RULES[dates.agent]
    if kind == "service":
        title_zh, title_en = "灭火器到期送修", "Extinguisher service due"
        checklist = SERVICE_CHECKLIST
        basis = (
            f"GB 50444-2008 T.5.3.3: {dates.agent} first service after "
            f"{rule.first_service_years} years, then every {rule.service_every_years}"
        )
    else:
        title_zh, title_en = "灭火器到期报废", "Extinguisher reaches its scrap age"
        checklist = SCRAP_CHECKLIST
        basis = f"GB 50444-2008 T.5.4.3: {dates.agent} scrapped at {rule.scrap_years} years"
    detail: dict[str, Any] = {
        "agent": dates.agent,
        "manufacture_date": dates.manufactured.isoformat(),
        f"{kind}_date": day.isoformat(),
        "scrap_date": dates.scrap_date.isoformat(),
        "reference": basis,
    }
    if dates.register_next_service is not None:
        detail["register_next_maintenance_date"] = dates.register_next_service.isoformat()
    return {
        "kind": kind,
        "plan_id": plan_id,
        "site_id": device.site_id,
        "subject": device.id,
        "device_id": device.id,
        "device_type": device.type,
        "zone_id": device.zone_id,
        "subject_label": device.label[:200],
        "title_zh": title_zh,
        "title_en": title_en,
        "frequency": kind,
        "period_start": local_midnight(day, tz),
        "due_at": local_midnight(day + timedelta(days=1), tz),
        "created_at": now,
        "state": "open",
        "assignee_role": config.assignee.role,
        "assignee": config.assignee.person,
        "checklist": checklist,
        "detail": detail,
    }


def _iso_date(value: Any, name: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise InvalidInput(f"{name} {value!r} is not an ISO date such as 2024-05-01")
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise InvalidInput(f"{name} {value[:40]!r} is not an ISO date such as 2024-05-01") from None

"""Generating inspection tasks per period, catching up missed periods, and marking overdue.

Every run creates, for each plan and subject (device, zone or site), the task of the period in
which ``now`` lies, and of every period that started since the plan's watermark (the last run):
a service that was down over midnight creates the missed day's tasks when it comes back, and
they are already overdue if their due date passed, which is the honest record. Missed periods
older than ``catch_up`` are not generated; that is logged, counted and returned, never silent.

Inserts go through ``INSERT ... ON CONFLICT DO NOTHING`` on the unique key (plan, subject,
period start), so any number of instances may run the same generation at the same moment and
each task exists once. Rows are inserted in key order so two racing transactions never deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.models import Device, Site, Zone
from core.models_maintenance import InspectionTask, MaintenanceWatermark
from maintenance.periods import Period, local_midnight, periods_between
from maintenance.plans import Plan, PlanSet

log = logging.getLogger(__name__)

DEFAULT_CATCH_UP = timedelta(days=366)
TASK_KEY = ("plan_id", "subject", "period_start")


@dataclass(frozen=True, slots=True)
class Subject:
    """What one task is about: a device, a zone or a site, with where it is."""

    site_id: str
    subject: str
    label: str
    tz: ZoneInfo
    zone_id: str | None = None
    zone_kind: str | None = None
    device_id: str | None = None
    device_type: str | None = None
    in_service: datetime | None = None
    """The instant the device entered service; periods that ended before it are skipped."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """Periods of a plan that a catch-up did not generate because they were too old."""

    plan_id: str
    after: datetime
    before: datetime


@dataclass(slots=True)
class GenerationResult:
    created: int = 0
    considered: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    by_plan: dict[str, int] = field(default_factory=dict)


def generate_tasks(
    session: Session,
    plans: PlanSet,
    now: datetime,
    *,
    default_tz: str = "Asia/Shanghai",
    catch_up: timedelta = DEFAULT_CATCH_UP,
) -> GenerationResult:
    """Create every due task of every plan that does not exist yet; the caller commits."""
    _require_aware(now)
    result = GenerationResult()
    for plan in plans.plans:
        name = f"plan:{plan.id}"
        watermark = get_watermark(session, name)
        rows: list[dict[str, Any]] = []
        cut = now - catch_up
        if watermark is not None and watermark < cut:
            skipped = Skipped(plan.id, watermark, cut)
            result.skipped.append(skipped)
            log.warning(
                "plan %s: maintenance was not run from %s to %s; periods that started "
                "before %s were not generated (catch-up limit)",
                plan.id,
                watermark.isoformat(),
                now.isoformat(),
                cut.isoformat(),
            )
        for subject in plan_subjects(session, plan, default_tz):
            schedule = plan.schedule_for(subject.zone_kind, subject.tz)
            periods: list[Period] = []
            if watermark is not None and watermark < now:
                periods = periods_between(schedule, max(watermark, cut), now)
            current = schedule.containing(now)
            if current is not None and current not in periods:
                periods.append(current)
            for period in periods:
                if subject.in_service is not None and period.end <= subject.in_service:
                    continue
                rows.append(task_row(plan, subject, period, schedule.label, now))
        result.considered += len(rows)
        created = insert_new_tasks(session, _without_existing(session, plan.id, rows))
        result.created += created
        result.by_plan[plan.id] = created
        advance_watermark(session, name, now)
    return result


def plan_subjects(session: Session, plan: Plan, default_tz: str) -> list[Subject]:
    """The devices, zones or sites a plan covers, in id order."""
    site_tz = {
        site_id: tz
        for site_id, tz in session.execute(select(Site.id, Site.timezone).order_by(Site.id))
    }
    subjects: list[Subject] = []
    if plan.per == "device":
        query = (
            select(Device, Zone.kind)
            .join(Zone, Zone.id == Device.zone_id)
            .where(Device.type.in_(plan.device_types))
            .order_by(Device.id)
        )
        for device, kind in session.execute(query):
            if not plan.covers_zone(device.zone_id, kind):
                continue
            tz = site_zone(site_tz.get(device.site_id), default_tz)
            in_service = (
                local_midnight(device.in_service_date, tz) if device.in_service_date else None
            )
            subjects.append(
                Subject(
                    site_id=device.site_id,
                    subject=device.id,
                    label=device.label,
                    tz=tz,
                    zone_id=device.zone_id,
                    zone_kind=kind,
                    device_id=device.id,
                    device_type=device.type,
                    in_service=in_service,
                )
            )
    elif plan.per == "zone":
        for zone in session.scalars(select(Zone).order_by(Zone.id)):
            if not plan.covers_zone(zone.id, zone.kind):
                continue
            subjects.append(
                Subject(
                    site_id=zone.site_id,
                    subject=zone.id,
                    label=_bilingual(zone.name_zh, zone.name_en),
                    tz=site_zone(site_tz.get(zone.site_id), default_tz),
                    zone_id=zone.id,
                    zone_kind=zone.kind,
                )
            )
    else:
        for site in session.scalars(select(Site).order_by(Site.id)):
            subjects.append(
                Subject(
                    site_id=site.id,
                    subject=site.id,
                    label=_bilingual(site.name_zh, site.name_en),
                    tz=site_zone(site.timezone, default_tz),
                )
            )
    return subjects


def task_row(
    plan: Plan, subject: Subject, period: Period, frequency: str, now: datetime
) -> dict[str, Any]:
    due = period.end
    if plan.due_within_hours is not None:
        due = min(due, period.start + timedelta(hours=plan.due_within_hours))
    return {
        "kind": "inspection",
        "plan_id": plan.id,
        "site_id": subject.site_id,
        "subject": subject.subject,
        "device_id": subject.device_id,
        "device_type": subject.device_type,
        "zone_id": subject.zone_id,
        "subject_label": subject.label[:200],
        "title_zh": plan.name.zh,
        "title_en": plan.name.en,
        "frequency": frequency,
        "period_start": period.start,
        "due_at": due,
        "created_at": now,
        "state": "open",
        "assignee_role": plan.assignee.role,
        "assignee": plan.assignee.person,
        "checklist": [
            {"id": item.id, "zh": item.zh, "en": item.en}
            for item in plan.checklist_for(subject.device_type)
        ],
        "detail": {"reference": plan.reference} if plan.reference else {},
    }


def insert_new_tasks(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert the rows whose key is new; return how many were inserted. Race-safe."""
    if not rows:
        return 0
    ordered = sorted(rows, key=lambda r: (r["plan_id"], r["subject"], r["period_start"]))
    table = cast(Table, InspectionTask.__table__)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = pg_insert(table).on_conflict_do_nothing(constraint="uq_inspection_tasks_key")
    elif dialect == "sqlite":
        stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=list(TASK_KEY))
    else:  # pragma: no cover - the project runs on SQLite and PostgreSQL only
        raise RuntimeError(f"task generation does not support the {dialect} dialect")
    created = 0
    for chunk in _chunks(ordered, 500):
        created += len(session.execute(stmt.returning(table.c.id), chunk).all())
    return created


def _without_existing(
    session: Session, plan_id: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Leave out rows whose task exists (most of them, on most runs): fewer conflicting inserts,
    no sequence values burnt. The insert stays race-safe for whatever is left."""
    if not rows:
        return rows
    earliest = min(row["period_start"] for row in rows)
    existing = set(
        session.execute(
            select(InspectionTask.subject, InspectionTask.period_start).where(
                InspectionTask.plan_id == plan_id, InspectionTask.period_start >= earliest
            )
        ).all()
    )
    return [row for row in rows if (row["subject"], row["period_start"]) not in existing]


def mark_overdue(session: Session, now: datetime) -> int:
    """Open tasks whose due time has come become overdue; return how many changed."""
    _require_aware(now)
    result = session.execute(
        update(InspectionTask)
        .where(InspectionTask.state == "open", InspectionTask.due_at <= now)
        .values(state="overdue", overdue_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def get_watermark(session: Session, name: str) -> datetime | None:
    return session.scalar(select(MaintenanceWatermark.at).where(MaintenanceWatermark.name == name))


def advance_watermark(session: Session, name: str, at: datetime) -> None:
    """Set the watermark to ``at`` unless it is already later (never moves backwards)."""
    table = cast(Table, MaintenanceWatermark.__table__)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = pg_insert(table).values(name=name, at=at)
        stmt: Any = pg.on_conflict_do_update(
            index_elements=["name"], set_={"at": func.greatest(table.c.at, pg.excluded.at)}
        )
    else:
        lite = sqlite_insert(table).values(name=name, at=at)
        stmt = lite.on_conflict_do_update(
            index_elements=["name"], set_={"at": func.max(table.c.at, lite.excluded.at)}
        )
    session.execute(stmt)


def _chunks(rows: Sequence[dict[str, Any]], size: int) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def site_zone(name: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r of a site; using %s", name, default)
        return ZoneInfo(default)


def _bilingual(zh: str, en: str) -> str:
    return zh if zh == en or not en else f"{zh} / {en}"


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: pass an aware UTC instant")


def utc_now() -> datetime:
    return datetime.now(UTC)

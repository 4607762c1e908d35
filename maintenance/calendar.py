"""The crew's calendar feed (iCalendar, RFC 5545) that a phone subscribes to.

Each event is all-day on the task's due date in the park's time zone. By default tasks of the
same plan, zone, kind and due date share one event ("Monthly extinguisher check ×12 —
Warehouse A"), so 500 extinguishers due on the 30th are one line on a phone, not 500; the
description lists what to check. ``group=False`` gives one event per task. Every text goes
through the icalendar library, which escapes commas, semicolons and line breaks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from core.models_maintenance import InspectionTask
from maintenance.inspections import effective_state

PRODID = "-//ParkGuard//Inspections//ZH-EN"
UID_DOMAIN = "parkguard"
LIST_MAX = 60


def due_date(task: InspectionTask, tz: ZoneInfo) -> date:
    """The local day by whose end the task is due (a task due at 00:00 is due the day before)."""
    return (task.due_at - timedelta(microseconds=1)).astimezone(tz).date()


@dataclass(frozen=True, slots=True)
class _Group:
    key: tuple[str, ...]
    day: date
    tasks: list[InspectionTask]


def tasks_calendar(
    tasks: Iterable[InspectionTask],
    *,
    now: datetime,
    tz: ZoneInfo,
    name: str = "ParkGuard 巡检 / inspections",
    zone_labels: dict[str, str] | None = None,
    group: bool = True,
) -> bytes:
    """The tasks as an iCalendar document (bytes, UTF-8)."""
    labels = zone_labels or {}
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", name)
    calendar.add("x-wr-timezone", str(tz))
    groups: dict[tuple[str, ...], _Group] = {}
    for task in tasks:
        day = due_date(task, tz)
        key = (
            (task.plan_id, task.kind, task.zone_id or "", day.isoformat())
            if group
            else (f"task-{task.id}",)
        )
        groups.setdefault(key, _Group(key, day, [])).tasks.append(task)
    for entry in groups.values():
        calendar.add_component(_event(entry, now, tz, labels))
    return bytes(calendar.to_ical())


def _event(entry: _Group, now: datetime, tz: ZoneInfo, labels: dict[str, str]) -> Event:
    first = entry.tasks[0]
    states = [effective_state(task, now) for task in entry.tasks]
    pending = [t for t, s in zip(entry.tasks, states, strict=True) if s != "done"]
    overdue = any(s == "overdue" for s in states)
    zone = labels.get(first.zone_id or "", first.zone_id or "")
    title = f"{first.title_zh} / {first.title_en}"
    if len(entry.tasks) == 1:
        summary = f"{title}: {first.subject_label}"
    else:
        summary = f"{title} ×{len(entry.tasks)}" + (f" — {zone}" if zone else "")
    if overdue:
        summary = f"[逾期 OVERDUE] {summary}"
    elif not pending:
        summary = f"[完成 DONE] {summary}"
    lines = []
    for task, state in list(zip(entry.tasks, states, strict=True))[:LIST_MAX]:
        lines.append(f"#{task.id} {task.subject_label} ({state})")
    if len(entry.tasks) > LIST_MAX:
        lines.append(f"… +{len(entry.tasks) - LIST_MAX}")
    lines.append("")
    lines.extend(f"☐ {item['zh']} / {item['en']}" for item in first.checklist)
    event = Event()
    uid_key = "|".join(entry.key)
    uid = (
        f"{entry.key[0]}@{UID_DOMAIN}"
        if len(entry.key) == 1
        else f"{hashlib.sha256(uid_key.encode()).hexdigest()[:32]}@{UID_DOMAIN}"
    )
    event.add("uid", uid)
    event.add("dtstamp", now)
    event.add("dtstart", entry.day)
    event.add("dtend", entry.day + timedelta(days=1))
    event.add("summary", summary)
    event.add("description", "\n".join(lines))
    if zone:
        event.add("location", zone)
    event.add("categories", [first.kind])
    event.add("status", "CONFIRMED")
    event.add("transp", "TRANSPARENT")
    return event

"""The iCalendar feed, parsed back by the icalendar library."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from icalendar import Calendar
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from core.models_maintenance import InspectionTask
from maintenance.calendar import due_date, tasks_calendar
from maintenance.schedule import generate_tasks
from tests.maintenance.builders import (
    SHANGHAI,
    add_device,
    at,
    engine_for,
    plans,
    run_in_session,
    small_park,
)

NOW = at(2026, 11, 27, 19)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = engine_for(sqlite_url)
    small_park(engine)
    for n in range(3, 9):
        add_device(engine, f"ext-{n}", "office")
    run_in_session(engine, generate_tasks, plans(), at(2026, 11, 27, 8))
    yield engine
    engine.dispose()


def all_tasks(engine: Engine) -> list[InspectionTask]:
    with Session(engine) as session:
        return list(session.scalars(select(InspectionTask).order_by(InspectionTask.id)))


def events(ics: bytes) -> list[dict[str, object]]:
    calendar = Calendar.from_ical(ics)
    return [
        {
            "uid": str(e["uid"]),
            "summary": str(e["summary"]),
            "description": str(e["description"]),
            "start": e.decoded("dtstart"),
            "end": e.decoded("dtend"),
            "location": str(e.get("location", "")),
        }
        for e in calendar.walk("VEVENT")
    ]


def test_due_date_of_a_task_due_at_midnight_is_the_day_before() -> None:
    task = InspectionTask(due_at=at(2026, 12, 1))
    assert due_date(task, SHANGHAI) == date(2026, 11, 30)
    task = InspectionTask(due_at=at(2026, 11, 27, 18))
    assert due_date(task, SHANGHAI) == date(2026, 11, 27)


def test_grouped_feed_parses_back(engine: Engine) -> None:
    ics = tasks_calendar(
        all_tasks(engine), now=NOW, tz=SHANGHAI, zone_labels={"office": "办公楼 / Office"}
    )
    calendar = Calendar.from_ical(ics)
    assert str(calendar["version"]) == "2.0"
    got = {str(e["summary"]): e for e in events(ics)}
    office = got["灭火器检查 / Extinguisher check ×8 — 办公楼 / Office"]
    assert (office["start"], office["end"]) == (date(2026, 11, 30), date(2026, 12, 1))
    assert "#" in str(office["description"]) and "ext-8" in str(office["description"])
    assert "☐ 在位 / In place" in str(office["description"])
    lane = next(e for s, e in got.items() if "消防车道巡查" in s)
    assert str(lane["summary"]).startswith("[逾期 OVERDUE]")  # due 18:00, now 19:00
    assert lane["start"] == date(2026, 11, 27)
    assert len({e["uid"] for e in got.values()}) == len(got) == 4  # office, hazmat, lane, site


def test_ungrouped_feed_has_one_event_per_task_with_stable_uids(engine: Engine) -> None:
    tasks = all_tasks(engine)
    first = events(tasks_calendar(tasks, now=NOW, tz=SHANGHAI, group=False))
    again = events(tasks_calendar(tasks, now=NOW, tz=SHANGHAI, group=False))
    assert len(first) == len(tasks)
    assert [e["uid"] for e in first] == [e["uid"] for e in again]
    assert first[0]["uid"] == f"task-{tasks[0].id}@parkguard"


def test_hostile_text_survives_the_round_trip(engine: Engine) -> None:
    hostile = "Lane;, with\nBEGIN:VEVENT\r\nSUMMARY:pwned <b>x</b>"
    with Session(engine) as session:
        session.execute(update(InspectionTask).values(subject_label=hostile))
        session.commit()
    ics = tasks_calendar(all_tasks(engine), now=NOW, tz=SHANGHAI, group=False)
    parsed = events(ics)
    assert len(parsed) == len(all_tasks(engine))  # no injected event
    kept = hostile.replace("\r\n", "\n")  # iCalendar has one kind of line break
    assert all(kept in str(e["summary"]) for e in parsed)
    assert b"\nBEGIN:VEVENT\r\nSUMMARY:pwned" not in ics


def test_empty_feed_is_a_valid_calendar() -> None:
    calendar = Calendar.from_ical(tasks_calendar([], now=NOW, tz=SHANGHAI))
    assert list(calendar.walk("VEVENT")) == []

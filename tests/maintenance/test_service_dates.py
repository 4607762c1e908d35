"""Extinguisher service and scrap dates per agent (GB 50444 T.5.3.3, T.5.4.3) and their tasks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.models_maintenance import InspectionTask
from maintenance.errors import InvalidInput
from maintenance.plans import ServiceDatesConfig
from maintenance.service_dates import (
    SCRAP_PLAN,
    SERVICE_PLAN,
    add_years,
    dates_for,
    dates_from_register,
    generate_service_tasks,
)
from tests.maintenance.builders import (
    add_device,
    add_site,
    add_zone,
    at,
    engine_for,
    run_in_session,
)

MADE = date(2020, 6, 15)


@pytest.mark.parametrize(
    ("agent", "services", "scrap"),
    [
        ("water", [2023, 2024, 2025], 2026),
        ("foam", [2023, 2024, 2025], 2026),
        ("dry_powder", [2025, 2027, 2029], 2030),
        ("clean_agent", [2025, 2027, 2029], 2030),
        ("co2", [2025, 2027, 2029, 2031], 2032),
    ],
)
def test_service_and_scrap_dates_per_agent(agent: str, services: list[int], scrap: int) -> None:
    dates = dates_for(agent, MADE)
    assert [d.year for d in dates.service_dates] == services
    assert all((d.month, d.day) == (6, 15) for d in dates.service_dates)
    assert dates.scrap_date == date(scrap, 6, 15)
    assert dates.next_service(date(2024, 1, 1)) == date(services[0], 6, 15) or services[0] < 2024
    assert dates.scrapped(date(scrap, 6, 15)) and not dates.scrapped(date(scrap, 6, 14))


def test_leap_day_manufacture() -> None:
    assert add_years(date(2024, 2, 29), 5) == date(2029, 2, 28)
    assert add_years(date(2024, 2, 29), 4) == date(2028, 2, 29)
    assert dates_for("dry_powder", date(2024, 2, 29)).scrap_date == date(2034, 2, 28)


def test_register_date_earlier_than_the_standard_wins() -> None:
    dates = dates_from_register(
        {
            "agent": "dry_powder",
            "manufacture_date": "2020-06-15",
            "next_maintenance_date": "2024-03-01",
        }
    )
    assert dates.next_service(date(2024, 1, 1)) == date(2024, 3, 1)
    assert dates.next_service(date(2024, 4, 1)) == date(2025, 6, 15)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({}, "no extinguisher agent"),
        ({"agent": "halon", "manufacture_date": "2020-01-01"}, "unknown agent 'halon'"),
        ({"agent": "water"}, "no manufacture_date"),
        ({"agent": "water", "manufacture_date": "15/06/2020"}, "is not an ISO date"),
        ({"agent": "water", "manufacture_date": 2020}, "is not an ISO date"),
        (
            {"agent": "co2", "manufacture_date": "2020-01-01", "next_maintenance_date": "soon"},
            "next_maintenance_date 'soon' is not an ISO date",
        ),
    ],
)
def test_bad_register_entries_say_why(attributes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        dates_from_register(attributes)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = engine_for(db_url)
    add_site(engine)
    add_zone(engine, "office", "office")
    yield engine
    engine.dispose()


def tasks(engine: Engine) -> list[InspectionTask]:
    with Session(engine) as session:
        return list(session.scalars(select(InspectionTask).order_by(InspectionTask.id)))


CONFIG = ServiceDatesConfig(lead_days=30)


def test_service_task_appears_lead_days_ahead_and_once(engine: Engine) -> None:
    add_device(engine, "ext-1", "office", agent="dry_powder", manufacture_date="2021-12-20")
    # first service due 2026-12-20; 30 days ahead is 2026-11-20
    assert run_in_session(engine, generate_service_tasks, CONFIG, at(2026, 11, 19, 23)).created == 0
    assert run_in_session(engine, generate_service_tasks, CONFIG, at(2026, 11, 20, 0)).created == 1
    assert run_in_session(engine, generate_service_tasks, CONFIG, at(2026, 12, 25)).created == 0
    (task,) = tasks(engine)
    assert (task.kind, task.plan_id, task.subject) == ("service", SERVICE_PLAN, "ext-1")
    assert task.period_start == at(2026, 12, 20)
    assert task.due_at == at(2026, 12, 21)  # by the end of the service date, park time
    assert task.detail["service_date"] == "2026-12-20"
    assert "T.5.3.3" in task.detail["reference"]
    assert task.checklist[0]["id"] == "sent_to_service"


def test_old_extinguisher_gets_latest_service_and_scrap_warning(engine: Engine) -> None:
    add_device(engine, "ext-w", "office", agent="water", manufacture_date="2020-12-10")
    add_device(engine, "ext-c", "office", agent="co2", manufacture_date="2015-01-10")
    run_in_session(engine, generate_service_tasks, CONFIG, at(2026, 11, 27, 8))
    got = {(t.subject, t.kind): t for t in tasks(engine)}
    # water 2020-12-10: services 2023, 2024, 2025 (2026 is its scrap date); scrap due 2026-12-10
    assert got[("ext-w", "service")].period_start == at(2025, 12, 10)
    assert got[("ext-w", "scrap")].plan_id == SCRAP_PLAN
    assert got[("ext-w", "scrap")].due_at == at(2026, 12, 11)
    # CO2 2015: services 2020, 2022, 2024, 2026-01-10; scrap 2027-01-10 is not yet within 30 days
    assert got[("ext-c", "service")].period_start == at(2026, 1, 10)
    assert ("ext-c", "scrap") not in got
    run_in_session(engine, generate_service_tasks, CONFIG, at(2026, 12, 11, 8))
    assert ("ext-c", "scrap") in {(t.subject, t.kind) for t in tasks(engine)}


def test_register_problems_are_reported_and_others_still_generated(engine: Engine) -> None:
    add_device(engine, "ext-ok", "office", agent="foam", manufacture_date="2022-12-01")
    add_device(engine, "ext-bad", "office", agent="halon", manufacture_date="2020-01-01")
    add_device(engine, "ext-none", "office")
    add_device(engine, "ext-future", "office", agent="co2", manufacture_date="2030-01-01")
    result = run_in_session(engine, generate_service_tasks, CONFIG, at(2026, 11, 27, 8))
    assert result.created == 1
    problems = {p.device_id: p.message for p in result.problems}
    assert set(problems) == {"ext-bad", "ext-none", "ext-future"}
    assert "in the future" in problems["ext-future"]


def test_disabled_service_dates_create_nothing(engine: Engine) -> None:
    add_device(engine, "ext-ok", "office", agent="foam", manufacture_date="2020-01-01")
    off = ServiceDatesConfig(enabled=False)
    assert run_in_session(engine, generate_service_tasks, off, at(2026, 11, 27)).created == 0

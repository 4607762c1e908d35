"""Task generation per period, catch-up after downtime, overdue transitions (SQLite and PG)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models_maintenance import InspectionTask
from maintenance.schedule import generate_tasks, mark_overdue
from tests.maintenance.builders import (
    SHANGHAI,
    add_device,
    at,
    engine_for,
    plans,
    run_in_session,
    small_park,
)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = engine_for(db_url)
    small_park(engine)
    yield engine
    engine.dispose()


def tasks(engine: Engine, **where: str) -> list[InspectionTask]:
    query = select(InspectionTask).order_by(
        InspectionTask.plan_id, InspectionTask.subject, InspectionTask.period_start
    )
    for name, value in where.items():
        query = query.where(getattr(InspectionTask, name) == value)
    with Session(engine) as session:
        return list(session.scalars(query))


UTC = ZoneInfo("UTC")


def generate(engine: Engine, now_args: tuple[int, ...], **kw: object) -> int:
    result = run_in_session(engine, generate_tasks, plans(), at(*now_args), **kw)
    return int(result.created)


def test_first_run_creates_the_current_period_of_every_plan_and_subject(engine: Engine) -> None:
    assert generate(engine, (2026, 11, 27, 8)) == 3 + 1 + 1  # 3 extinguishers, 1 lane, 1 site
    ext = {t.subject: t for t in tasks(engine, plan_id="ext")}
    assert set(ext) == {"ext-1", "ext-2", "ext-h"}  # the hydrant is not an extinguisher
    office = ext["ext-1"]
    assert office.period_start == at(2026, 11, 1)
    assert office.due_at == at(2026, 12, 1)
    assert office.frequency == "monthly"
    assert office.state == "open"
    assert (office.assignee_role, office.assignee) == ("crew", "wang")
    assert [i["id"] for i in office.checklist] == ["in_place", "gauge_green", "seal_intact"]
    hazmat = ext["ext-h"]  # GB 50444 §5.2.2: half-monthly in hazardous areas
    assert (hazmat.period_start, hazmat.due_at) == (at(2026, 11, 16), at(2026, 12, 1))
    assert hazmat.frequency == "half_monthly"
    (lane,) = tasks(engine, plan_id="lane")
    assert (lane.subject, lane.zone_id, lane.device_id) == ("lane1", "lane1", None)
    assert lane.period_start == at(2026, 11, 27)
    assert lane.due_at == at(2026, 11, 27, 18)  # due_within_hours
    (site,) = tasks(engine, plan_id="inspection")
    assert site.subject == "park" and site.site_id == "park"


def test_generation_is_idempotent(engine: Engine) -> None:
    assert generate(engine, (2026, 11, 27, 8)) == 5
    assert generate(engine, (2026, 11, 27, 8)) == 0
    assert generate(engine, (2026, 11, 27, 23, 59)) == 0
    assert len(tasks(engine)) == 5


def test_daily_tasks_start_at_shanghai_midnight_which_is_16_utc(engine: Engine) -> None:
    generate(engine, (2026, 11, 27, 23, 59, 59))
    assert [t.period_start for t in tasks(engine, plan_id="lane")] == [at(2026, 11, 27)]
    # 16:00 UTC on the 27th is 00:00 on the 28th in the park: a new day, a new patrol
    generate(engine, (2026, 11, 28, 0, 0, 0))
    starts = [t.period_start for t in tasks(engine, plan_id="lane")]
    assert starts == [at(2026, 11, 27), at(2026, 11, 28)]
    assert starts[1].hour == 16 and starts[1].day == 27  # as UTC


def test_half_monthly_and_monthly_boundaries(engine: Engine) -> None:
    generate(engine, (2026, 1, 15, 23))
    generate(engine, (2026, 1, 16, 0, 1))  # hazmat: new half; office: same month
    generate(engine, (2026, 1, 31, 23, 59))
    generate(engine, (2026, 2, 1, 0, 0))  # both roll over at month end
    hazmat = [(t.period_start, t.due_at) for t in tasks(engine, subject="ext-h")]
    assert hazmat == [
        (at(2026, 1, 1), at(2026, 1, 16)),
        (at(2026, 1, 16), at(2026, 2, 1)),
        (at(2026, 2, 1), at(2026, 2, 16)),
    ]
    office = [(t.period_start, t.due_at) for t in tasks(engine, subject="ext-1")]
    assert office == [(at(2026, 1, 1), at(2026, 2, 1)), (at(2026, 2, 1), at(2026, 3, 1))]


def test_catch_up_after_downtime_over_midnight(engine: Engine) -> None:
    generate(engine, (2026, 11, 26, 23, 0))  # last run before going down
    # down from 23:00 on the 26th until 01:00 on the 29th: the 27th and 28th were missed
    created = generate(engine, (2026, 11, 29, 1, 0))
    lane = [t.period_start for t in tasks(engine, plan_id="lane")]
    assert lane == [at(2026, 11, 26), at(2026, 11, 27), at(2026, 11, 28), at(2026, 11, 29)]
    assert created == 3  # the three lane days; extinguisher months unchanged
    # missed days are already past due; the overdue sweep says so
    overdue = run_in_session(engine, mark_overdue, at(2026, 11, 29, 1, 0))
    assert overdue == 3  # the 26th, 27th, 28th (each due 18:00 that day)
    # running the catch-up again (a second instance, a restart) doubles nothing
    assert generate(engine, (2026, 11, 29, 1, 0)) == 0
    assert generate(engine, (2026, 11, 29, 1, 5)) == 0


def test_catch_up_limit_is_reported_not_silent(engine: Engine) -> None:
    generate(engine, (2026, 1, 1, 8))
    result = run_in_session(
        engine, generate_tasks, plans(), at(2026, 3, 1, 8), catch_up=timedelta(days=10)
    )
    assert {s.plan_id for s in result.skipped} == {"ext", "lane", "inspection"}
    lane = [t.period_start for t in tasks(engine, plan_id="lane")]
    assert lane[0] == at(2026, 1, 1)
    assert lane[1] == at(2026, 2, 20)  # 10 days back from 1 March 08:00 → from 20 Feb
    assert lane[-1] == at(2026, 3, 1)


def test_new_device_gets_current_period_and_in_service_date_is_respected(engine: Engine) -> None:
    generate(engine, (2026, 11, 2, 8))
    add_device(engine, "ext-new", "office")
    add_device(engine, "ext-later", "office", in_service=date(2026, 12, 5))
    generate(engine, (2026, 11, 3, 8))
    assert [t.period_start for t in tasks(engine, subject="ext-new")] == [at(2026, 11, 1)]
    assert tasks(engine, subject="ext-later") == []  # not in service this month
    generate(engine, (2026, 12, 1, 0, 0))
    assert [t.period_start for t in tasks(engine, subject="ext-later")] == [at(2026, 12, 1)]


def test_site_time_zone_decides_the_boundary(db_url: str) -> None:
    engine = engine_for(db_url)
    small_park(engine, tz="UTC")
    try:
        # 04:00 on the 28th in Shanghai is 20:00 UTC on the 27th, and this park runs on UTC
        run_in_session(engine, generate_tasks, plans(), at(2026, 11, 28, 4, 0))
        (lane,) = tasks(engine, plan_id="lane")
        assert lane.period_start == at(2026, 11, 27, tz=UTC)
    finally:
        engine.dispose()


def test_overdue_transition(engine: Engine) -> None:
    generate(engine, (2026, 11, 27, 8))
    assert run_in_session(engine, mark_overdue, at(2026, 11, 27, 17, 59)) == 0
    assert run_in_session(engine, mark_overdue, at(2026, 11, 27, 18, 0)) == 1  # lane, due 18:00
    (lane,) = tasks(engine, plan_id="lane")
    assert (lane.state, lane.overdue_at) == ("overdue", at(2026, 11, 27, 18))
    assert run_in_session(engine, mark_overdue, at(2026, 11, 30, 23)) == 0
    assert run_in_session(engine, mark_overdue, at(2026, 12, 1, 0)) == 4  # month and site
    assert {t.state for t in tasks(engine)} == {"overdue"}


def test_naive_now_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        run_in_session(engine, generate_tasks, plans(), at(2026, 1, 1).replace(tzinfo=None))


def test_the_database_itself_refuses_a_duplicate_task(engine: Engine) -> None:
    """The unique key lives in the schema, not only in the generator."""
    generate(engine, (2026, 11, 27, 8))
    (lane,) = tasks(engine, plan_id="lane")
    row = {c.key: getattr(lane, c.key) for c in InspectionTask.__table__.columns if c.key != "id"}
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(insert(InspectionTask), [row])
    with engine.connect() as c:
        assert c.scalar(select(func.count()).select_from(InspectionTask)) == 5


def test_local_time_of_due_dates_is_park_time(engine: Engine) -> None:
    generate(engine, (2026, 11, 27, 8))
    (lane,) = tasks(engine, plan_id="lane")
    assert lane.due_at.astimezone(SHANGHAI).hour == 18

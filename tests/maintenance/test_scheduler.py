"""The maintenance service: job store in the DB, catch-up on start, one leader, clean stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

from core.db import session_factory
from core.models_maintenance import InspectionTask, MaintenanceLease
from core.settings import Settings
from maintenance.errors import PlanError
from maintenance.leader import acquire_lease, release_lease
from maintenance.plans import PLANS_FILE
from maintenance.schedule import generate_tasks
from maintenance.scheduler import MaintenanceConfig, MaintenanceService
from tests.maintenance.builders import (
    PLANS,
    add_device,
    at,
    engine_for,
    plans,
    run_in_session,
    small_park,
)

FAST = MaintenanceConfig(lease_renew_s=0.1, lease_ttl_s=5)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = engine_for(db_url)
    small_park(engine)
    yield engine
    engine.dispose()


def service(engine: Engine, now: datetime, **kw: object) -> MaintenanceService:
    options: dict[str, object] = {"plans": plans(), "config": FAST, "clock": lambda: now}
    options.update(kw)
    return MaintenanceService(engine=engine, sessions=session_factory(engine), **options)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    """Wait for the scheduler thread to do its work (not for time to pass in the logic)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def caught_up(svc: MaintenanceService) -> bool:
    """Leading, and the catch-up on becoming leader has run to its end."""
    status = svc.status()
    return (
        svc.is_leader
        and status["counts"].get("runs.overdue", 0) >= 1
        and "catch_up" not in status["jobs_running"]
    )


@contextmanager
def lease_locked(engine: Engine) -> Iterator[None]:
    """Hold a write lock on the lease row (on SQLite: on the database) until the block ends."""
    with engine.begin() as c:
        c.execute(update(MaintenanceLease).values(holder=MaintenanceLease.holder))
        yield


def lane_days(engine: Engine) -> list[datetime]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(InspectionTask.period_start)
                .where(InspectionTask.plan_id == "lane")
                .order_by(InspectionTask.period_start)
            )
        )


def test_start_catches_up_missed_days_and_persists_jobs(engine: Engine) -> None:
    run_in_session(engine, generate_tasks, plans(), at(2026, 11, 26, 23))  # before the outage
    svc = service(engine, at(2026, 11, 29, 1))  # back two days later
    svc.start()
    try:
        wait_for(lambda: caught_up(svc))  # not just begun: "runs.*" count a run as it starts
        assert svc.is_leader
        assert lane_days(engine) == [at(2026, 11, d) for d in (26, 27, 28, 29)]
        with engine.connect() as c:
            jobs = set(c.execute(text("SELECT id FROM maintenance_scheduler_jobs")).scalars())
            assert jobs == {
                "maintenance.generate",
                "maintenance.service_dates",
                "maintenance.overdue",
            }
            overdue = c.scalar(
                select(func.count())
                .select_from(InspectionTask)
                .where(InspectionTask.state == "overdue")
            )
            assert overdue == 3  # the patrols of the 26th, 27th and 28th
    finally:
        svc.stop()
    assert not svc.is_leader
    with Session(engine) as session:
        assert session.scalars(select(MaintenanceLease)).all() == []  # released on stop
    # a restart finds its jobs in the database and doubles nothing
    again = service(engine, at(2026, 11, 29, 1, 30))
    again.start()
    try:
        wait_for(lambda: caught_up(again))
        assert len(lane_days(engine)) == 4
    finally:
        again.stop()


def test_two_instances_one_leader_and_takeover(engine: Engine) -> None:
    now = at(2026, 11, 27, 8)
    first = service(engine, now, holder="first")
    second = service(engine, now, holder="second")
    first.start()
    wait_for(lambda: first.is_leader)
    second.start()
    try:
        time.sleep(0.5)  # several lease ticks of the second instance
        assert first.is_leader and not second.is_leader
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(InspectionTask)) == 5
        first.stop()
        wait_for(lambda: second.is_leader)  # takes over without waiting for the lease to expire
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(InspectionTask)) == 5
    finally:
        first.stop()
        second.stop()


def test_stop_is_bounded_while_a_job_is_stuck_on_a_database_lock(engine: Engine) -> None:
    svc = service(engine, at(2026, 11, 27, 8), config=replace(FAST, stop_timeout_s=0.5))
    svc.start()
    try:
        wait_for(lambda: caught_up(svc))
        with lease_locked(engine):
            wait_for(lambda: svc.status()["jobs_running"].get("lease", 0) > 1)  # stuck
            started = time.monotonic()
            svc.stop()
            took = time.monotonic() - started
    finally:
        svc.stop()
    assert took < 2 * 0.5 + 2  # the job and the lease release waited for 0.5 s each
    counts = svc.status()["counts"]
    assert counts["stop_timeouts"] == 1
    assert counts["failures.release_lease"] == 1  # still locked: the lease expires instead
    assert not svc.is_leader
    wait_for(lambda: not svc.status()["jobs_running"])  # the lock is gone: the tick ends
    with Session(engine) as session:
        lease = session.scalars(select(MaintenanceLease)).one()
        assert lease.holder == svc.holder  # not taken again by the tick that was stuck
        assert lease.expires_at <= at(2026, 11, 27, 8) + timedelta(seconds=FAST.lease_ttl_s)


def test_stop_gives_up_on_a_stuck_job_and_still_releases_the_lease(engine: Engine) -> None:
    svc = service(engine, at(2026, 11, 27, 8), config=replace(FAST, stop_timeout_s=2))
    svc.start()
    stopping = threading.Thread(target=svc.stop, name="test-stop")
    try:
        wait_for(lambda: caught_up(svc))
        with lease_locked(engine):
            wait_for(lambda: svc.status()["jobs_running"].get("lease", 0) > 1)  # stuck
            started = time.monotonic()
            stopping.start()
            wait_for(lambda: svc.status()["counts"].get("stop_timeouts") == 1)
        stopping.join(timeout=20)  # the lock is gone within stop()'s wait for the database
        took = time.monotonic() - started
        assert not stopping.is_alive()
    finally:
        svc.stop()
    assert took < 2 * 2 + 2
    assert not svc.is_leader
    assert "failures.release_lease" not in svc.status()["counts"]
    wait_for(lambda: not svc.status()["jobs_running"])
    with Session(engine) as session:
        assert session.scalars(select(MaintenanceLease)).all() == []  # released, not retaken


def test_lease_expiry_and_renewal(engine: Engine) -> None:
    ttl = timedelta(seconds=30)
    t0 = at(2026, 11, 27, 8)
    with Session(engine) as session, session.begin():
        assert acquire_lease(session, "m", "a", t0, ttl)
    with Session(engine) as session, session.begin():
        assert not acquire_lease(session, "m", "b", t0 + timedelta(seconds=29), ttl)
    with Session(engine) as session, session.begin():
        assert acquire_lease(session, "m", "a", t0 + timedelta(seconds=29), ttl)  # renewed
    with Session(engine) as session, session.begin():
        assert not acquire_lease(session, "m", "b", t0 + timedelta(seconds=58), ttl)
        assert acquire_lease(session, "m", "b", t0 + timedelta(seconds=59), ttl)  # expired
    with Session(engine) as session, session.begin():
        release_lease(session, "m", "a")  # not the holder: nothing happens
        assert not acquire_lease(session, "m", "a", t0 + timedelta(seconds=60), ttl)


def test_run_once_reports_and_counts(engine: Engine) -> None:
    add_device(engine, "ext-old", "office", agent="water", manufacture_date="2020-12-01")
    add_device(engine, "ext-bad", "office", agent="halon", manufacture_date="2020-12-01")
    svc = service(engine, at(2026, 11, 27, 19))
    result = svc.run_once()
    assert result.created == 7  # 5 extinguishers, 1 lane, 1 site
    assert result.service_created == 2  # ext-old: service 2025-12-01 and scrap 2026-12-01
    assert result.register_problems == 4  # ext-bad's agent; small_park's three have no dates
    assert result.overdue == 2  # the lane (due 18:00) and the 2025 service
    assert result.failures == []
    assert svc.status()["counts"]["tasks_created"] == 9


def test_bad_plan_file_stops_start_and_reload_keeps_the_plans_in_force(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / PLANS_FILE
    path.write_text("version: 1\nplans:\n  - id: x\n    frequency: hourly\n", encoding="utf-8")
    svc = MaintenanceService(
        engine=engine, sessions=session_factory(engine), plans_path=path, config=FAST
    )
    with pytest.raises(PlanError, match=f"{PLANS_FILE}: plan 'x' \\(plans\\[0\\]\\)"):
        svc.start()
    path.write_text(PLANS, encoding="utf-8")
    assert [p.id for p in svc.reload_plans().plans] == ["ext", "lane", "inspection"]
    path.write_text("plans: [", encoding="utf-8")
    with pytest.raises(PlanError, match="not valid YAML"):
        svc.reload_plans()
    assert [p.id for p in svc.plans.plans] == ["ext", "lane", "inspection"]


def test_from_settings_reads_the_site_folder(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / PLANS_FILE).write_text(PLANS, encoding="utf-8")
    settings = Settings(site=tmp_path, timezone="Asia/Shanghai")
    svc = MaintenanceService.from_settings(
        settings, engine=engine, sessions=session_factory(engine)
    )
    assert svc.plans_path == tmp_path / PLANS_FILE
    assert len(svc.plans.plans) == 3
    no_site = MaintenanceService.from_settings(
        Settings(site=None), engine=engine, sessions=session_factory(engine)
    )
    assert no_site.plans.plans == ()


def test_config_from_env() -> None:
    config = MaintenanceConfig.from_env(
        {"PARKGUARD_PHOTO_DIR": "/srv/photos", "PARKGUARD_PHOTO_MAX_BYTES": "1048576"}
    )
    assert config.photo_dir == Path("/srv/photos") and config.photo_max_bytes == 1048576
    assert MaintenanceConfig.from_env({}).photo_dir is None
    with pytest.raises(ValueError, match="PARKGUARD_PHOTO_MAX_BYTES"):
        MaintenanceConfig.from_env({"PARKGUARD_PHOTO_MAX_BYTES": "lots"})

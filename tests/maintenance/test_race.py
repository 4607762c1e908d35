"""Several scheduler instances against one PostgreSQL never create the same task twice."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from sqlalchemy import Engine, func, select

from core.db import make_engine, session_factory, session_scope
from core.models_maintenance import InspectionTask
from maintenance.schedule import generate_tasks
from tests.maintenance.builders import add_device, at, plans, small_park

pytestmark = pytest.mark.postgres
DEVICES = 300


def big_park(engine: Engine) -> None:
    small_park(engine)
    for n in range(DEVICES):
        add_device(engine, f"ext-{n:04d}", "store" if n % 3 == 0 else "office")


def count(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.scalar(select(func.count()).select_from(InspectionTask)) or 0)


def duplicate_keys(engine: Engine) -> int:
    with engine.connect() as c:
        keys = (
            select(InspectionTask.plan_id, InspectionTask.subject, InspectionTask.period_start)
            .group_by(InspectionTask.plan_id, InspectionTask.subject, InspectionTask.period_start)
            .having(func.count() > 1)
        )
        return len(c.execute(keys).all())


def generate_once(url: str, now: datetime, barrier: object) -> int:
    """One scheduler instance's run: its own engine, started on the barrier."""
    engine = make_engine(url)
    try:
        barrier.wait(timeout=30)  # type: ignore[attr-defined]
        with session_scope(session_factory(engine)) as session:
            return generate_tasks(session, plans(), now).created
    finally:
        engine.dispose()


def test_two_threads_racing_create_each_task_once(pg_url: str) -> None:
    engine = make_engine(pg_url)
    big_park(engine)
    expected_total = 0
    # a first run, then days of catch-up and period turns, each raced by two instances
    for now in (
        at(2026, 11, 1, 0, 0),
        at(2026, 11, 16, 0, 0),
        at(2026, 11, 20, 3),
        at(2026, 12, 1),
    ):
        barrier = threading.Barrier(2)
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(generate_once, pg_url, now, barrier) for _ in range(2)]
            created = [future.result(timeout=60) for future in futures]
        expected_total += sum(created)
        assert count(engine) == expected_total
        assert duplicate_keys(engine) == 0
    # 1 Nov: 303 extinguishers + lane + site; 16 Nov: the 101 hazmat ones' second half, lanes
    # of 2..16 Nov; 20 Nov: lanes 17..20; 1 Dec: all months, lanes 21 Nov..1 Dec
    assert count(engine) == expected_total > 303
    engine.dispose()


def _process_worker(url: str, now: datetime, barrier: object, out: object) -> None:
    out.put(generate_once(url, now, barrier))  # type: ignore[attr-defined]


def test_two_processes_racing_create_each_task_once(pg_url: str) -> None:
    engine = make_engine(pg_url)
    big_park(engine)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    now = at(2026, 11, 27, 0, 0)
    procs = [
        ctx.Process(target=_process_worker, args=(pg_url, now, barrier, out)) for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    created = [out.get(timeout=5), out.get(timeout=5)]
    assert sum(created) == count(engine) == DEVICES + 3 + 1 + 1
    assert duplicate_keys(engine) == 0
    engine.dispose()

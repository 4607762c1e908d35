"""The demo park's own plans against its own register: what the crew would see on day one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.catalogue import load_catalogue
from core.db import session_factory
from core.models import Device, Zone
from core.models_maintenance import InspectionTask
from core.site import import_site, load_site
from maintenance.plans import PLANS_FILE, load_plans
from maintenance.schedule import generate_tasks
from maintenance.service_dates import generate_service_tasks
from maintenance.work_orders import FAULT_RULES
from tests.conftest import DEMO_SITE
from tests.maintenance.builders import at, engine_for, run_in_session

HALF_MONTHLY_KINDS = {"hazmat", "warehouse", "public"}


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = engine_for(sqlite_url)
    import_site(session_factory(engine), load_site(DEMO_SITE))
    yield engine
    engine.dispose()


def test_demo_plans_generate_for_the_demo_register(engine: Engine) -> None:
    plans = load_plans(DEMO_SITE / PLANS_FILE, load_catalogue())
    now = at(2026, 11, 27, 8)
    result = run_in_session(engine, generate_tasks, plans, now)
    assert result.created > 0 and result.skipped == []
    with Session(engine) as session:
        kinds: dict[str, str] = {z: k for z, k in session.execute(select(Zone.id, Zone.kind))}
        extinguishers = session.scalars(select(Device).where(Device.type == "extinguisher")).all()
        tasks = session.scalars(select(InspectionTask)).all()
    by_plan = Counter(task.plan_id for task in tasks)
    assert by_plan["extinguisher-check"] == len(extinguishers) > 0
    for task in tasks:
        if task.plan_id == "extinguisher-check":
            strict = kinds[task.zone_id or ""] in HALF_MONTHLY_KINDS
            assert task.frequency == ("half_monthly" if strict else "monthly"), task.subject
    lanes = [zone for zone, kind in kinds.items() if kind == "fire_lane"]
    assert by_plan["fire-lane-patrol"] == len(lanes) > 0
    assert by_plan["fire-inspection"] == 1


def test_demo_register_dates_are_all_usable(engine: Engine) -> None:
    plans = load_plans(DEMO_SITE / PLANS_FILE, load_catalogue())
    result = run_in_session(
        engine, generate_service_tasks, plans.extinguisher_service, at(2026, 11, 27, 8)
    )
    assert result.problems == []


def test_fault_rules_name_rules_of_the_demo_park() -> None:
    rules = yaml.safe_load((DEMO_SITE / "rules.yaml").read_text(encoding="utf-8"))
    ids = {rule["id"] for rule in rules["rules"]}
    assert set(FAULT_RULES) <= ids, set(FAULT_RULES) - ids

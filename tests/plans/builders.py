"""Plain builders for plan and incident tests: plan dicts and sets, a clock moved by hand,
and the real services (collector, rules, incidents) started and stopped around a block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from collector.client import BrokerAddress
from collector.service import Collector
from core.catalogue import load_catalogue
from core.db import make_engine
from core.readings import SqlReadingsStore
from core.settings import Settings
from rules.incident_service import IncidentService
from rules.plans import Plan, PlanSet
from rules.service import RulesService
from rules.spec import RuleSet
from tests.collector.helpers import wait_for
from tests.conftest import unique


def plan_dict(**fields: Any) -> dict[str, Any]:
    """A small valid plan: three steps, one needing a note and one evidence."""
    body: dict[str, Any] = {
        "id": "p1",
        "type": "fire",
        "title": {"zh": "火灾预案", "en": "Fire plan"},
        "steps": [
            {
                "id": "verify",
                "role": "patrol",
                "deadline": "1m",
                "text": {"zh": "到{zone}核实", "en": "Verify in {zone}"},
            },
            {
                "id": "call",
                "role": "security_room",
                "deadline": "2m",
                "requires": "note",
                "text": {"zh": "拨打119", "en": "Call 119"},
            },
            {
                "id": "recover",
                "role": "maintenance",
                "deadline": "10m",
                "requires": "evidence",
                "text": {"zh": "恢复{site}设施", "en": "Restore {site} facilities"},
            },
        ],
    }
    return body | fields


def plan(**fields: Any) -> Plan:
    return Plan.model_validate(plan_dict(**fields))


def plans(*made: Plan) -> PlanSet:
    return PlanSet(made)


class Clock:
    """A clock the test moves by hand (epoch milliseconds)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> int:
        self.ms += round(seconds * 1000)
        return self.ms


@contextmanager
def running_rules(url: str, rules: RuleSet, **kwargs: Any) -> Iterator[RulesService]:
    service = RulesService(url, rules, tick_s=0.05, **kwargs)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@contextmanager
def running_incidents(url: str, plan_set: PlanSet, **kwargs: Any) -> Iterator[IncidentService]:
    kwargs.setdefault("tick_s", 0.05)
    service = IncidentService(url, plan_set, **kwargs)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@contextmanager
def running_collector(url: str, broker: tuple[str, int], rules: RulesService) -> Iterator[None]:
    """A collector on the real broker handing its committed batches to the rules service."""
    engine = make_engine(url)
    collector = Collector(
        Settings(database_url=url, mqtt_client_id=unique("col"), flush_interval_ms=50),
        engine,
        SqlReadingsStore(engine),
        load_catalogue(),
        BrokerAddress(*broker),
        listeners=[rules.on_batch],
    )
    collector.start()
    try:
        wait_for(lambda: collector.status().broker_connected, what="collector connected")
        yield
    finally:
        collector.stop()
        engine.dispose()

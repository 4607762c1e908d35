"""Plain builders for plan and incident tests: plan dicts and plan sets."""

from __future__ import annotations

from typing import Any

from rules.plans import Plan, PlanSet


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

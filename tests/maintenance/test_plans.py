"""Inspection plans as data: the demo file loads, and every mistake names file, plan and field."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.catalogue import load_catalogue
from maintenance.errors import PlanError
from maintenance.plans import PLANS_FILE, load_plans, parse_plans
from tests.conftest import DEMO_SITE

SHANGHAI = ZoneInfo("Asia/Shanghai")

GOOD_PLAN = """
version: 1
plans:
  - id: ext
    name: {zh: 灭火器检查, en: Extinguisher check}
    device_types: [extinguisher]
    frequency: monthly
    checklist:
      - {id: gauge_green, zh: 压力表在绿区, en: Gauge in the green band}
"""


def plan_yaml(**fields: str) -> str:
    """One plan, with ``fields`` replacing or adding top-level plan keys (YAML snippets)."""
    base = {
        "id": "ext",
        "name": "{zh: 灭火器检查, en: Extinguisher check}",
        "device_types": "[extinguisher]",
        "frequency": "monthly",
        "checklist": "[{id: gauge_green, zh: 压力表在绿区, en: Gauge green}]",
    }
    base.update(fields)
    body = "".join(f"    {k}: {v}\n" for k, v in base.items() if v != "<drop>")
    return "version: 1\nplans:\n  - " + body.lstrip()


def test_demo_plans_load_and_follow_the_standards() -> None:
    plans = load_plans(DEMO_SITE / PLANS_FILE, load_catalogue())
    ext = plans.get("extinguisher-check")
    assert ext is not None
    assert ext.schedule_for("office", SHANGHAI).label == "monthly"
    for kind in ("hazmat", "warehouse", "public"):  # GB 50444 §5.2.2
        assert ext.schedule_for(kind, SHANGHAI).label == "half_monthly"
    lane = plans.get("fire-lane-patrol")
    assert lane is not None and lane.per == "zone" and lane.frequency == "daily"
    alarm = plans.get("fire-alarm-annual-test")
    assert alarm is not None and alarm.frequency == "yearly"
    assert plans.extinguisher_service.lead_days == 30
    for plan in plans.plans:
        for item in plan.checklist:
            assert item.zh and item.en


def test_checklist_items_can_be_limited_to_a_device_type() -> None:
    text = plan_yaml(
        device_types="[extinguisher, hydrant_pressure]",
        checklist="[{id: a, zh: 甲, en: A}, {id: b, zh: 乙, en: B, device_types: [extinguisher]}]",
    )
    plan = parse_plans(text, "p.yaml", load_catalogue()).plans[0]
    assert [i.id for i in plan.checklist_for("extinguisher")] == ["a", "b"]
    assert [i.id for i in plan.checklist_for("hydrant_pressure")] == ["a"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"frequency": "fortnightly"}, "plan 'ext' (plans[0]): frequency: must be one of daily"),
        ({"frequency": "<drop>"}, "plan 'ext' (plans[0]): plan: give exactly one of frequency"),
        ({"cron": "'0 8 * * 1'"}, "give exactly one of frequency or cron"),
        ({"frequency": "<drop>", "cron": "'*/5 * * * *'"}, "more often than once an hour"),
        ({"frequency": "<drop>", "cron": "'0 8 1 * 1'"}, "restricts both day of month"),
        ({"device_types": "[fire_engine]"}, "device_types: unknown device type 'fire_engine'"),
        ({"zone_kinds": "[moon]"}, "unknown zone kind 'moon'"),
        ({"checklist": "[]"}, "checklist: Tuple should have at least 1 item"),
        ({"checklist": "[{id: a, zh: 甲}]"}, "checklist.0.en: Field required"),
        ({"checklist": "[{id: a, zh: 甲, en: A}, {id: a, zh: 乙, en: B}]"}, "'a' appears twice"),
        ({"checklist": "[{id: 'A B', zh: 甲, en: A}]"}, "checklist.0.id: String should match"),
        ({"checklist": "[{id: a, zh: '', en: A}]"}, "checklist.0.zh: must not be empty"),
        ({"name": '{zh: "甲\\x00", en: A}'}, "name.zh: must be one line without control"),
        ({"id": "'Bad Id!'"}, "plan 'Bad Id!' (plans[0]): id: String should match pattern"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"per": "zone"}, "a per-zone plan takes no device_types"),
        ({"per": "building"}, "per: Input should be 'device', 'zone' or 'site'"),
        ({"due_within_hours": "0"}, "due_within_hours: Input should be greater than or equal"),
        (
            {"stricter": "[{zone_kinds: [hazmat], frequency: quarterly}]"},
            "stricter frequency 'quarterly' for hazmat is not more frequent than 'monthly'",
        ),
        (
            {
                "stricter": "[{zone_kinds: [hazmat], frequency: daily}, {zone_kinds: [hazmat], "
                "frequency: weekly}]"
            },
            "zone kind 'hazmat' is in two stricter rules",
        ),
        (
            {"checklist": "[{id: a, zh: 甲, en: A, device_types: [hydrant_pressure]}]"},
            "names device type 'hydrant_pressure', which the plan does not cover",
        ),
    ],
)
def test_bad_plans_name_file_plan_and_field(fields: dict[str, str], message: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plans(plan_yaml(**fields), "site/inspection-plans.yaml", load_catalogue())
    text = str(caught.value)
    assert text.startswith("site/inspection-plans.yaml: ")
    assert message in text


def test_duplicate_plan_ids_are_refused() -> None:
    text = GOOD_PLAN + GOOD_PLAN.split("plans:\n", 1)[1]
    with pytest.raises(PlanError, match="plan id 'ext' appears twice"):
        parse_plans(text, "p.yaml")


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / PLANS_FILE
    path.write_text("version: 1\nplans:\n  - id: [unclosed\n", encoding="utf-8")
    with pytest.raises(PlanError, match=rf"{PLANS_FILE}: not valid YAML at line \d+, column \d+"):
        load_plans(path)


def test_missing_or_wrong_shaped_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no such inspection-plan file"):
        load_plans(tmp_path / PLANS_FILE)
    with pytest.raises(PlanError, match="must be a mapping with a 'plans' list"):
        parse_plans("- just\n- a list\n", "p.yaml")
    with pytest.raises(PlanError, match="version: Input should be 1"):
        parse_plans("version: 2\n", "p.yaml")


def test_an_empty_file_is_no_plans() -> None:
    assert parse_plans("", "p.yaml").plans == ()


def test_hostile_strings_in_names_are_kept_verbatim() -> None:
    text = plan_yaml(name='{zh: "<script>alert(1)</script>", en: "\'; DROP TABLE x; --"}')
    plan = parse_plans(text, "p.yaml").plans[0]
    assert plan.name.zh == "<script>alert(1)</script>"
    assert plan.name.en == "'; DROP TABLE x; --"

"""Plan files: the demo park's six plans, and errors that name the file, plan, step and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rules.plans import (
    REQUIRED_TYPES,
    PlanFileError,
    load_plan_files,
    load_site_plans,
)
from rules.spec import load_site_rules
from tests.conftest import DEMO_SITE
from tests.plans.builders import plan_dict


def write(folder: Path, name: str, body: Any) -> Path:
    path = folder / name
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body, allow_unicode=True))
    return path


def problems_of(*paths: Path, rules: set[str] | None = None) -> list[str]:
    with pytest.raises(PlanFileError) as caught:
        load_plan_files(paths, rules)
    return caught.value.problems


def test_the_demo_park_has_a_plan_for_every_emergency_of_clause_5_5_2() -> None:
    rules = load_site_rules(DEMO_SITE)
    plans = load_site_plans(DEMO_SITE, rules.by_id)
    assert plans.missing_types() == []
    assert {p.type for p in plans.plans} >= set(REQUIRED_TYPES)
    for plan in plans.plans:
        roles = {s.role for s in plan.steps}
        assert len(plan.steps) >= 8, plan.id
        assert len(roles) >= 3, plan.id
        assert all(s.text.zh and s.text.en for s in plan.steps)
        assert any(s.requires != "nothing" for s in plan.steps), plan.id
        assert any("report" in s.id for s in plan.steps), plan.id
        assert plan.contacts, plan.id


def test_the_demo_triggers_name_the_demo_rules() -> None:
    plans = load_site_plans(DEMO_SITE, load_site_rules(DEMO_SITE).by_id)
    assert [p.id for p in plans.for_alert("fire-confirmed", "critical")] == ["fire"]
    assert [p.id for p in plans.for_alert("gas-50-lel", "critical")] == ["chemical-leak"]
    assert plans.for_alert("gas-25-lel", "major") == []
    assert plans.for_alert("hazmat-vapour", "major") == []
    assert [p.id for p in plans.for_alert("hazmat-vapour", "critical")] == ["chemical-leak"]
    fire = plans.by_id["fire"]
    assert fire.step("call-119") is not None and fire.step("call-119").deadline == 240  # type: ignore[union-attr]
    assert fire.drill_interval_s == 182 * 86400
    assert plans.by_id["earthquake"].drill_interval_s == 365 * 86400


def test_a_step_error_names_the_file_the_plan_the_step_and_the_field(tmp_path: Path) -> None:
    body = plan_dict()
    body["steps"][1]["deadline"] = "soon"
    body["steps"][1]["role"] = "janitor"
    problems = problems_of(write(tmp_path, "fire.yaml", body))
    assert len(problems) == 2
    assert problems[0].startswith("fire.yaml: plan 'p1', step 'call', field 'role':")
    assert "'security_room'" in problems[0]
    assert problems[1].startswith("fire.yaml: plan 'p1', step 'call', field 'deadline':")
    assert "'soon' is not a duration" in problems[1]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": "flood"}, "plan 'p1', field 'type': Input should be"),
        ({"title": {"zh": "火"}}, "plan 'p1', field 'title.en': Field required"),
        ({"steps": []}, "plan 'p1', field 'steps': Tuple should have at least 1 item"),
        ({"surprise": 1}, "plan 'p1', field 'surprise': Extra inputs are not permitted"),
        ({"triggers": ["Not A Rule!"]}, "field 'triggers.0.rule': String should match pattern"),
        ({"triggers": [{"rule": "fire", "min_severity": "huge"}]}, "triggers.0.min_severity"),
        ({"id": "../etc"}, "plan '../etc', field 'id': String should match pattern"),
    ],
)
def test_plan_field_errors(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    problems = problems_of(write(tmp_path, "x.yaml", plan_dict() | change))
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("x.yaml: plan ") for p in problems)


def test_step_level_problems(tmp_path: Path) -> None:
    body = plan_dict()
    body["steps"].append(dict(body["steps"][0]))
    assert problems_of(write(tmp_path, "a.yaml", body)) == [
        "a.yaml: plan 'p1', field '(the whole plan)': step id 'verify' is used twice"
    ]
    body = plan_dict()
    body["steps"][0]["text"]["zh"] = "疏散{building}"
    (problem,) = problems_of(write(tmp_path, "b.yaml", body))
    assert problem.startswith("b.yaml: plan 'p1', step 'verify', field 'text.zh': unknown")
    body = plan_dict()
    body["steps"][0]["text"]["en"] = "a { brace"
    (problem,) = problems_of(write(tmp_path, "c.yaml", body))
    assert "step 'verify', field 'text.en': a brace" in problem
    body = plan_dict()
    body["steps"][0]["requires"] = "photo"
    (problem,) = problems_of(write(tmp_path, "d.yaml", body))
    assert "step 'verify', field 'requires'" in problem
    body = plan_dict()
    body["steps"][0]["deadline"] = 0
    (problem,) = problems_of(write(tmp_path, "e.yaml", body))
    assert "step 'verify', field 'deadline': Input should be greater than 0" in problem


def test_file_level_problems(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, "a.yaml", "id: [unclosed\n"))[0].startswith(
        "a.yaml: not valid YAML: line 2"
    )
    assert problems_of(write(tmp_path, "b.yaml", "- a list\n")) == [
        "b.yaml: the top level must be a mapping (one plan: id, type, steps...)"
    ]
    twice = "id: p1\nid: p2\n"
    assert "key 'id' given twice" in problems_of(write(tmp_path, "c.yaml", twice))[0]
    (tmp_path / "d.yaml").write_bytes(b"\xff\xfe not utf-8")
    assert problems_of(tmp_path / "d.yaml")[0].startswith("d.yaml: cannot be read")


def test_two_plans_with_one_id_and_unknown_trigger_rules(tmp_path: Path) -> None:
    first = write(tmp_path, "one.yaml", plan_dict())
    second = write(tmp_path, "two.yaml", plan_dict())
    assert problems_of(first, second) == [
        "two.yaml: plan 'p1', field 'id': also defined in one.yaml"
    ]
    triggered = write(tmp_path, "t.yaml", plan_dict(triggers=["fire-confirmed", "nope"]))
    assert problems_of(triggered, rules={"fire-confirmed"}) == [
        "t.yaml: plan 'p1', field 'triggers.1.rule': no rule 'nope' in the site's rules"
    ]


def test_every_problem_of_every_file_is_listed_at_once(tmp_path: Path) -> None:
    bad = plan_dict()
    bad["severity"] = "loud"
    paths = [
        write(tmp_path, "1.yaml", bad),
        write(tmp_path, "2.yaml", "{"),
        write(tmp_path, "3.yaml", plan_dict(id="ok")),
    ]
    problems = problems_of(*paths)
    assert [p.split(":")[0] for p in problems] == ["1.yaml", "2.yaml"]
    assert str(PlanFileError(problems)).count("\n") == 1


def test_a_bad_plan_in_the_site_folder_stops_start_up(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "plans").mkdir(parents=True)
    for source in (DEMO_SITE / "plans").glob("*.yaml"):
        (site / "plans" / source.name).write_text(source.read_text())
    text = (site / "plans" / "fire.yaml").read_text().replace("deadline: 4m", "deadline: 4 minutes")
    (site / "plans" / "fire.yaml").write_text(text)
    with pytest.raises(PlanFileError) as caught:
        load_site_plans(site, load_site_rules(DEMO_SITE).by_id)
    assert str(caught.value) == (
        "fire.yaml: plan 'fire', step 'call-119', field 'deadline': "
        "'4 minutes' is not a duration such as 500ms, 30s, 5m, 1h, 1d"
    )


def test_no_plans_folder_is_no_plans(tmp_path: Path) -> None:
    assert len(load_site_plans(tmp_path)) == 0
    assert load_site_plans(tmp_path).missing_types() == list(REQUIRED_TYPES)

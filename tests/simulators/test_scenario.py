"""Scenario files: the built-in ones parse and fit the demo park; a bad one is refused with a
sentence naming the file, the line, the step and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.spec import load_site_rules
from simulators.devices import SimDevice
from simulators.fleet import read_site
from simulators.scenario import (
    Scenario,
    ScenarioError,
    list_scenarios,
    load_scenario,
    parse_scenario,
    resolve,
)
from tests.conftest import DEMO_SITE

REQUIRED = {
    "warehouse-fire",
    "extinguisher-removed",
    "fire-lane-blocked",
    "hazmat-leak",
    "typhoon-power-loss",
    "gateway-mass-offline",
    "normal-day",
}


@pytest.fixture(scope="module")
def demo() -> dict[str, SimDevice]:
    return {d.device_id: d for d in read_site(DEMO_SITE).devices()}


def test_the_required_scenarios_ship() -> None:
    assert set(list_scenarios()) >= REQUIRED


@pytest.mark.parametrize("name", list_scenarios())
def test_each_scenario_parses_and_fits_the_demo_park(name: str, demo: dict[str, SimDevice]) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.title.zh and scenario.title.en and scenario.description
    steps = resolve(scenario, demo)  # raises if a step does not fit
    assert all(s.step.at < scenario.length_s for s in steps)
    rules = set(load_site_rules(DEMO_SITE).by_id)
    assert set(scenario.expects.alerts) <= rules, "expects a rule the demo park does not have"
    assert scenario.expects.quiet or scenario.expects.alerts or scenario.expects.events


def test_a_selection_picks_the_same_devices_every_time(demo: dict[str, SimDevice]) -> None:
    text = """
title: {zh: 测试, en: Test}
steps:
  - {at: 0, select: {building: D, type: smoke_detector, share: 0.5}, fault: last_will_storm}
  - {at: 1m, select: {building: D, type: smoke_detector, share: 0.5}, clear: last_will_storm}
  - {at: 2m, select: {zone: [A1-W1, A1-W2], type: smoke_detector, count: 3}, event: test}
"""
    first, second, third = resolve(parse_scenario(text, "t.yaml"), demo)
    assert first.devices == second.devices
    in_d = [d for d in demo.values() if d.building == "D" and d.device_type == "smoke_detector"]
    assert len(first.devices) == round(len(in_d) / 2)
    assert [d.device_id for d in third.devices] == ["A1-W1-SD001", "A1-W1-SD002", "A1-W1-SD003"]


def test_steps_may_combine_actions_and_durations_read_naturally() -> None:
    text = """
title: {zh: 测试, en: Test}
duration: 1h30m
steps:
  - at: 2m30s
    devices: [FL-C-FLM001]
    set: {obstructed: true}
    event: obstruction_start
    fault: {mode: clock_skew, offset: -90s}
    for: 10m
"""
    scenario = parse_scenario(text, "t.yaml")
    (step,) = scenario.steps
    assert (step.at, step.for_, scenario.length_s) == (150.0, 600.0, 5400.0)
    assert step.fault is not None and step.fault.offset == -90.0  # type: ignore[union-attr]


BAD = [
    (
        "title: {zh: 测试, en: Test}\nsteps:\n  - at: 0\n    devices: [A1-W1-SD001]\n"
        "    event: fire_alarm\n  - at: 30s\n    devices: [A1-W1-SD001]\n    evnt: test\n",
        "bad.yaml, line 8, step 2 (at 30s), field 'evnt': Extra inputs are not permitted",
    ),
    (
        "title: {zh: 测试, en: Test}\nsteps:\n  - at: soon\n    devices: [A1-W1-SD001]\n"
        "    event: fire_alarm\n",
        "bad.yaml, line 3, step 1 (at soon), field 'at': 'soon' is not a duration",
    ),
    (
        "title: {zh: 测试, en: Test}\nsteps:\n  - at: 0\n    devices: [A1-W1-SD001]\n"
        "    ramp: {obscuration_db_m: 1}\n",
        "bad.yaml, line 3, step 1 (at 0): a ramp needs 'over'",
    ),
    (
        "title: {zh: 测试, en: Test}\nsteps:\n  - {at: 2m, devices: [X1], event: test}\n"
        "  - {at: 1m, devices: [X1], event: test}\n",
        "step 2 (at 1m) comes before step 1 (at 2m)",
    ),
    (
        "title: {zh: 测试, en: Test}\nsteps:\n  - at: 0\n    devices: [A1-W1-SD001]\n"
        "    fault: meltdown\n",
        "bad.yaml, line 5, step 1 (at 0), field 'fault': Input tag 'meltdown' found using "
        "'mode' does not match any of the expected tags",
    ),
    (
        "title: {zh: 测试, en: Test}\nsteps:\n  - at: 0\n    event: test\n",
        "bad.yaml, line 3, step 1 (at 0): give exactly one of 'devices' or 'select'",
    ),
    ("steps: []\n", "bad.yaml, line 1, field 'title': Field required"),
    ("title: [unclosed\n", "bad.yaml, line 2: not valid YAML"),
    ("- just a list\n", "bad.yaml: a scenario is a mapping"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_file_is_refused_naming_file_line_step_and_field(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "bad.yaml")
    assert message in str(caught.value)


UNFIT = [
    (
        {"devices": ["A1W1-SD008"], "event": "fire_alarm"},
        "field 'devices': no device 'A1W1-SD008' in the fleet (did you mean 'A1-W1-SD008'?)",
    ),
    (
        {"devices": ["A1-W1-SD001"], "event": "gas_alarm"},
        "field 'event': a smoke_detector does not send 'gas_alarm'",
    ),
    (
        {"devices": ["A1-DOCK-HD001"], "set": {"temperature_c": 250}},
        "field 'set.temperature_c': device A1-DOCK-HD001: temperature_c=250 is outside -40..200",
    ),
    (
        {"devices": ["FL-E-FLM001"], "ramp": {"obstructed": 1}, "over": "1m"},
        "field 'ramp.obstructed': device FL-E-FLM001: only a number can ramp",
    ),
    (
        {"devices": ["A1-W1-SD001"], "fault": {"mode": "stuck", "metric": "pressure_mpa"}},
        "field 'fault': device A1-W1-SD001: a smoke_detector has no metric 'pressure_mpa'",
    ),
    (
        {"devices": ["FL-E-FLM001"], "fault": "battery_low"},
        "field 'fault': device FL-E-FLM001: a fire_lane has no battery",
    ),
    (
        {"select": {"building": "Z"}, "event": "test"},
        "field 'select': matches no device of the fleet",
    ),
]


@pytest.mark.parametrize(("step", "message"), UNFIT)
def test_a_step_that_does_not_fit_the_fleet_is_refused_before_anything_runs(
    step: dict[str, object], message: str, demo: dict[str, SimDevice]
) -> None:
    scenario = Scenario.model_validate(
        {
            "name": "unfit",
            "title": {"zh": "测试", "en": "Test"},
            "steps": [{"at": 0, "note": "fine"}, {"at": "30s", **step}],
            "source": "unfit.yaml",
        }
    )
    with pytest.raises(ScenarioError) as caught:
        resolve(scenario, demo)
    assert f"unfit.yaml, step 2 (at 30s), {message}" in str(caught.value)


def test_a_missing_scenario_lists_the_built_in_ones(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"no such scenario file .*warehouse-fire"):
        load_scenario("warehouse-flood")
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "none.yaml")


def test_a_file_anywhere_can_be_a_scenario(tmp_path: Path) -> None:
    path = tmp_path / "my-drill.yaml"
    path.write_text("title: {zh: 演练, en: Drill}\ndrill: true\n", encoding="utf-8")
    scenario = load_scenario(path)
    assert (scenario.name, scenario.drill, scenario.length_s) == ("my-drill", True, 60.0)

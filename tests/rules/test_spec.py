"""Rule files: the demo park's rules load; every bad input names file, rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.spec import RuleFileError, Scope, load_rule_files, load_site_rules
from tests.conftest import DEMO_SITE

GOOD = """
defaults:
  escalate_after: 30s
rules:
  - id: fire
    kind: event
    severity: critical
    title: {zh: 火警, en: Fire alarm}
    events: [fire_alarm]
    scope: {device_types: [smoke_detector]}
"""


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        load_rule_files([write(tmp_path, text)])
    return caught.value.problems


def test_a_good_file_loads(tmp_path: Path) -> None:
    rules = load_rule_files([write(tmp_path, GOOD)])
    assert [r.id for r in rules.rules] == ["fire"]
    assert rules.defaults.escalate_after == 30
    assert rules.escalate_after_s("fire", "critical") == 30
    assert rules.escalate_after_s("fire", "major") is None


def test_the_demo_park_rules_load_and_cover_the_standard() -> None:
    rules = load_site_rules(DEMO_SITE)
    kinds = {r.kind for r in rules.rules}
    assert kinds == {
        "event",
        "threshold",
        "state_for",
        "rate_of_rise",
        "absence",
        "correlation",
        "location",
    }
    events = {e for r in rules.rules if r.kind == "event" for e in r.events}
    for name in (
        "fire_alarm",
        "fault",
        "supervisory",
        "removed",
        "discharged",
        "blocked",
        "mains_lost",
    ):
        assert name in events, name
    gas = sorted(
        (r.above, r.severity)
        for r in rules.rules
        if r.kind == "threshold"
        and r.metric == "gas_lel_pct"
        and "warehouse_env" in (r.scope.device_types or ())
    )
    assert gas == [(25, "major"), (50, "critical")]
    for r in rules.rules:
        assert r.title.zh and r.title.en


def test_a_site_without_rules_has_none(tmp_path: Path) -> None:
    assert len(load_site_rules(tmp_path)) == 0


def test_rules_dir_beside_rules_yaml_is_read_and_ids_must_be_unique(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    (tmp_path / "rules").mkdir()
    write(tmp_path / "rules", GOOD.replace("defaults:\n  escalate_after: 30s\n", ""), "x.yaml")
    with pytest.raises(RuleFileError) as caught:
        load_site_rules(tmp_path)
    assert caught.value.problems == [
        "x.yaml (line 3): rule 'fire', field 'id': also defined in rules.yaml"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("severity: critical", "severity: urgent"),
            "rules.yaml (line 5): rule 'fire', field 'severity': Input should be 'critical', "
            "'major', 'minor' or 'warning'",
        ),
        (
            ("kind: event", "kind: magic"),
            "rules.yaml (line 5): rule 'fire', field 'kind': 'magic' is not a kind; one of event, "
            "threshold, state_for, rate_of_rise, absence, correlation, location",
        ),
        (("    kind: event\n", ""), "rules.yaml (line 5): rule 'fire', field 'kind': missing; "),
        (
            ("events: [fire_alarm]", "events: [fire_alarm, no_such_event]"),
            "rules.yaml (line 5): rule 'fire', field 'events': no device type in scope sends "
            "event 'no_such_event'",
        ),
        (
            ("[smoke_detector]", "[smoke_detecter]"),
            "rules.yaml (line 5): rule 'fire', field 'scope.device_types': unknown device type(s) "
            "smoke_detecter",
        ),
        (
            ("title: {zh: 火警, en: Fire alarm}", "title: {zh: 火警}"),
            "rules.yaml (line 5): rule 'fire', field 'title.en': Field required",
        ),
        (("id: fire", "id: Fire Alarm!"), "rules.yaml (line 5): rule 'Fire Alarm!', field 'id'"),
        (
            ("    events: [fire_alarm]\n", "    events: [fire_alarm]\n    colour: red\n"),
            "rules.yaml (line 5): rule 'fire', field 'colour': Extra inputs are not permitted",
        ),
        (
            ("escalate_after: 30s", "escalate_after: soon"),
            "rules.yaml: defaults, field 'escalate_after': Value error, 'soon' is not a duration",
        ),
    ],
)
def test_bad_rule_fields_name_file_rule_and_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    found = problems(tmp_path, GOOD.replace(*change))
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize(
    ("rule", "field", "says"),
    [
        (
            "kind: threshold\n    metric: gas_lel_pct\n    above: 25\n    below: 5",
            "(the whole entry)",
            "exactly one of 'above' or 'below'",
        ),
        (
            "kind: threshold\n    metric: gas_lel_pct\n    above: 25\n    clear: 30",
            "(the whole entry)",
            "'clear' must be at or below 'above'",
        ),
        ("kind: threshold\n    metric: gas_lel_pct\n    above: high", "above", "valid number"),
        ("kind: threshold\n    metric: smoke\n    above: 1", "metric", "not a number metric"),
        ("kind: threshold\n    metric: flux\n    above: 1", "metric", "has metric 'flux'"),
        (
            "kind: state_for\n    metric: smoke\n    equals: true",
            "(the whole entry)",
            "'for' must be more than 0",
        ),
        ("kind: state_for\n    metric: smoke\n    equals: true\n    for: -5s", "for", ""),
        (
            "kind: state_for\n    metric: smoke\n    equals: true\n    for: 60s\n"
            "    stages: [{after: 30s, severity: critical}]",
            "(the whole entry)",
            "stages[0].after must be later",
        ),
        ("kind: rate_of_rise\n    metric: temperature_c\n    rise: 0", "rise", "greater than 0"),
        ("kind: correlation\n    events: [fire_alarm]\n    min_devices: 1", "min_devices", ""),
        ("kind: location\n    allowed_zone_kinds: [moon]", "allowed_zone_kinds.0", ""),
        ("kind: absence\n    after: 5 fortnights", "after", "not a duration"),
    ],
)
def test_bad_rules_of_each_kind(tmp_path: Path, rule: str, field: str, says: str) -> None:
    text = (
        "rules:\n  - id: r1\n    severity: major\n    title: {zh: 规则, en: Rule}\n"
        "    scope: {device_types: [warehouse_env]}\n    " + rule + "\n"
    )
    found = problems(tmp_path, text)
    assert any(
        p.startswith(f"rules.yaml (line 2): rule 'r1', field '{field}'") and says in p
        for p in found
    ), found


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rules: [", "rules.yaml: not valid YAML"),
        ("- just\n- a list", "rules.yaml: the top level must be a mapping"),
        ("rules: {}", "rules.yaml: 'rules' must be a list"),
        ("rulez: []", "rules.yaml: unknown top-level key(s) rulez"),
        (
            "rules:\n  - id: a\n    id: b",
            "rules.yaml: not valid YAML: line 3, column 5: key 'id' given twice",
        ),
        ("rules:\n  - 42", "rules.yaml (line 2): rule #1, field '(the whole entry)'"),
        (
            "rules: []\nwebhooks:\n  - {name: w, url: ftp://x}",
            "rules.yaml: webhook 'w', field 'url'",
        ),
        (
            "rules: []\nwebhooks:\n  - {name: w, url: 'http://x/${PARKGUARD_NO_SUCH_VAR}'}",
            "environment variable PARKGUARD_NO_SUCH_VAR is not set",
        ),
    ],
)
def test_bad_files(tmp_path: Path, text: str, says: str) -> None:
    found = problems(tmp_path, text)
    assert any(says in p for p in found), found


def test_a_duplicate_key_is_refused_not_silently_overwritten(tmp_path: Path) -> None:
    found = problems(
        tmp_path, GOOD.replace("severity: critical", "severity: critical\n    severity: warning")
    )
    assert "given twice" in found[0]


def test_hostile_strings_are_refused_or_kept_verbatim(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("id: fire", 'id: "<script>alert(1)</script>"'))
    assert "field 'id'" in found[0]
    rules = load_rule_files([write(tmp_path, GOOD.replace("Fire alarm", "'<b>Fire</b> 🔥'"))])
    assert rules.rules[0].title.en == "<b>Fire</b> 🔥"
    assert problems(tmp_path, GOOD.replace("Fire alarm", "'" + "x" * 201 + "'"))


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"\xff\xfe rules")
    with pytest.raises(RuleFileError) as caught:
        load_rule_files([path])
    assert caught.value.problems[0].startswith("rules.yaml: cannot be read")


def test_every_problem_is_listed_not_only_the_first(tmp_path: Path) -> None:
    text = (
        GOOD
        + GOOD.split("rules:\n")[1].replace("id: fire", "id: fire2").replace("critical", "bad")
        + "  - {id: x3, kind: event}\n"
    )
    found = problems(tmp_path, text)
    assert any("'fire2'" in p for p in found) and any("'x3'" in p for p in found)


def test_scope_matches_every_given_list() -> None:
    scope = Scope(device_types=frozenset({"smoke_detector"}), zone_kinds=frozenset({"hazmat"}))
    assert scope.matches("smoke_detector", "z", "hazmat", "d")
    assert not scope.matches("smoke_detector", "z", "warehouse", "d")
    assert Scope().matches("anything", "z", "office", "d")

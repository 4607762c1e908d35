"""Rule definitions: YAML files in the site folder, validated once at start-up with pydantic.

A rules file holds ``defaults`` (escalation, flapping), ``rules`` (a list, each with a stable
``id``, a ``kind``, a ``severity``, a bilingual ``title`` and a ``scope``) and ``webhooks``.
Any error stops start-up with a RuleFileError whose lines name the file, the rule and the
field. Durations are seconds or ``500ms``, ``30s``, ``5m``, ``1h``, ``1d``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from core.catalogue import Catalogue, load_catalogue
from core.models import ZONE_KINDS

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITY_RANK: dict[str, int] = {"warning": 0, "minor": 1, "major": 2, "critical": 3}
ZoneKind = Literal["general", "warehouse", "hazmat", "fire_lane", "office", "public"]
assert set(ZoneKind.__args__) == set(ZONE_KINDS)  # type: ignore[attr-defined]

RULE_ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
NAME = r"^[a-z][a-z0-9_]{0,63}$"
ID = r"^[A-Za-z0-9_-]{1,64}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_DURATION_S = 366 * 86400


class RuleFileError(ValueError):
    """Rules that cannot be used; each line names the file, the rule and the field."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def _duration(value: Any) -> Any:
    """Seconds from a number or a string such as ``90s``, ``5m``, ``1h``; else left to fail."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as 30s, 5m, 1h")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value[:40]!r} is not a duration such as 500ms, 30s, 5m, 1h, 1d")
        return float(match[1]) * _UNIT_S[match[2] or "s"]
    raise ValueError("a duration is a number of seconds or a string such as 30s, 5m, 1h")


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0, le=MAX_DURATION_S)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), Field(gt=0, le=MAX_DURATION_S)]
Name = Annotated[str, Field(pattern=NAME)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Title(_Strict):
    zh: Text
    en: Text


class Scope(_Strict):
    """Which devices a rule watches; every given list must match (an empty scope is all)."""

    device_types: frozenset[Name] | None = None
    zone_kinds: frozenset[ZoneKind] | None = None
    zones: frozenset[Annotated[str, Field(pattern=ID)]] | None = None
    devices: frozenset[Annotated[str, Field(pattern=ID)]] | None = None

    def matches(self, device_type: str, zone_id: str, zone_kind: str, device_id: str) -> bool:
        return (
            (self.device_types is None or device_type in self.device_types)
            and (self.zone_kinds is None or zone_kind in self.zone_kinds)
            and (self.zones is None or zone_id in self.zones)
            and (self.devices is None or device_id in self.devices)
        )


class Flapping(_Strict):
    """Raised ``count`` times within ``window``: marked flapping and held open."""

    count: int = Field(default=4, ge=2, le=100)
    window: PositiveDuration = 600.0


class Stage(_Strict):
    """A later severity for a condition that has held for ``after`` seconds."""

    after: PositiveDuration
    severity: Severity


class _Rule(_Strict):
    id: Annotated[str, Field(pattern=RULE_ID)]
    title: Title
    severity: Severity
    scope: Scope = Scope()
    enabled: bool = True
    description: Annotated[str, Field(max_length=2000)] | None = None
    escalate_after: Duration | None = None
    """Overrides defaults.escalate_after for this rule's alerts."""
    flapping: Flapping | None = None
    """Overrides defaults.flapping for this rule's alerts."""


class _Condition(_Rule):
    """Fields every condition rule shares: a ``for`` delay, a ``hold`` before clearing, and
    optional later ``stages`` that raise the severity while the condition keeps holding."""

    for_: Duration = Field(default=0.0, alias="for")
    hold: Duration = 0.0
    stages: tuple[Stage, ...] = ()

    @model_validator(mode="after")
    def _stages_ordered(self) -> _Condition:
        previous_after, previous_rank = self.for_, SEVERITY_RANK[self.severity]
        for index, stage in enumerate(self.stages):
            if stage.after <= previous_after:
                raise ValueError(
                    f"stages[{index}].after must be later than 'for' and the stage before it"
                )
            if SEVERITY_RANK[stage.severity] <= previous_rank:
                raise ValueError(f"stages[{index}].severity must be higher than the one before")
            previous_after, previous_rank = stage.after, SEVERITY_RANK[stage.severity]
        return self


class EventRule(_Rule):
    """A device event raises the alert; a clear event (or ``clear_after`` quiet) resolves it."""

    kind: Literal["event"]
    events: Annotated[frozenset[Name], Field(min_length=1)]
    clear_events: frozenset[Name] = frozenset()
    clear_after: PositiveDuration | None = None

    @model_validator(mode="after")
    def _disjoint(self) -> EventRule:
        both = self.events & self.clear_events
        if both:
            raise ValueError(f"events and clear_events share {sorted(both)}")
        return self


class ThresholdRule(_Condition):
    """A number above (or below) a level; clears at ``clear`` (hysteresis), after ``hold``."""

    kind: Literal["threshold"]
    metric: Name
    above: float | None = None
    below: float | None = None
    clear: float | None = None

    @model_validator(mode="after")
    def _one_direction(self) -> ThresholdRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' or 'below'")
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError("'clear' must be at or below 'above' (hysteresis)")
            if self.below is not None and self.clear < self.below:
                raise ValueError("'clear' must be at or above 'below' (hysteresis)")
        return self

    @property
    def clear_level(self) -> float:
        level = self.above if self.above is not None else self.below
        assert level is not None
        return self.clear if self.clear is not None else level


class StateForRule(_Condition):
    """A boolean or string metric equal to ``equals`` for ``for`` seconds (fires on time)."""

    kind: Literal["state_for"]
    metric: Name
    equals: Annotated[bool, Field(strict=True)] | Annotated[str, Field(max_length=64)]

    @model_validator(mode="after")
    def _needs_time(self) -> StateForRule:
        if self.for_ <= 0:
            raise ValueError("'for' must be more than 0 for a state_for rule (use threshold)")
        return self


class RateOfRiseRule(_Condition):
    """A number rising at least ``rise`` per ``per`` over the last ``window`` of readings."""

    kind: Literal["rate_of_rise"]
    metric: Name
    rise: Annotated[float, Field(gt=0)]
    per: PositiveDuration = 60.0
    window: PositiveDuration = 60.0
    min_span: Duration = 10.0
    """Readings must span at least this long before a rate is computed (noise guard)."""
    clear_rise: Annotated[float, Field(ge=0)] | None = None
    """Clears when the rate falls below this (default: ``rise``)."""

    @model_validator(mode="after")
    def _consistent(self) -> RateOfRiseRule:
        if self.min_span > self.window:
            raise ValueError("'min_span' must not be longer than 'window'")
        if self.clear_rise is not None and self.clear_rise > self.rise:
            raise ValueError("'clear_rise' must be at or below 'rise' (hysteresis)")
        return self


class AbsenceRule(_Rule):
    """A device silent for longer than ``after`` (default: its type's heartbeat window), or
    reported offline by its status message or the collector."""

    kind: Literal["absence"]
    after: PositiveDuration | None = None
    offline: bool = True
    """Also raise at once when the device is reported offline."""


class CorrelationRule(_Rule):
    """At least ``min_devices`` distinct devices of one zone raising ``events`` within
    ``window``: one alert per zone (e.g. a confirmed fire). Resolved by a person."""

    kind: Literal["correlation"]
    events: Annotated[frozenset[Name], Field(min_length=1)]
    min_devices: int = Field(default=2, ge=2, le=100)
    window: PositiveDuration = 120.0


class LocationRule(_Condition):
    """A tag whose goods are hazardous reported in a zone whose kind is not allowed."""

    kind: Literal["location"]
    zone_metric: Name = "zone"
    hazardous_metric: Name = "hazardous"
    allowed_zone_kinds: Annotated[frozenset[ZoneKind], Field(min_length=1)] = frozenset({"hazmat"})


Rule = Annotated[
    EventRule
    | ThresholdRule
    | StateForRule
    | RateOfRiseRule
    | AbsenceRule
    | CorrelationRule
    | LocationRule,
    Field(discriminator="kind"),
]
ConditionRule = ThresholdRule | StateForRule | RateOfRiseRule | LocationRule
KINDS = ("event", "threshold", "state_for", "rate_of_rise", "absence", "correlation", "location")
_RULE = TypeAdapter[Any](Rule)


class Defaults(_Strict):
    escalate_after: Duration = 60.0
    """An unacknowledged alert of an escalating severity escalates after this long."""
    escalate_repeat: PositiveDuration | None = None
    """Escalate again every this long while still unacknowledged (default: once)."""
    escalate_severities: frozenset[Severity] = frozenset({"critical"})
    flapping: Flapping = Flapping()
    max_shelve: PositiveDuration = 7 * 86400.0
    """The longest a person may shelve an alert for."""


class Webhook(_Strict):
    """Where alert transitions are POSTed; ``${VAR}`` in the url is read from the environment."""

    name: Annotated[str, Field(pattern=ID)]
    url: Annotated[str, Field(max_length=2000)]
    format: Literal["json", "wecom", "dingtalk"] = "json"
    min_severity: Severity = "warning"
    retries: int = Field(default=4, ge=0, le=20)
    backoff: PositiveDuration = 1.0
    """The first retry waits this long; each next one twice as long (at most 60 s)."""
    timeout: PositiveDuration = 5.0
    secret: Annotated[str, Field(max_length=200)] | None = None
    """DingTalk robot signing secret (adds timestamp and sign to the url)."""

    @field_validator("url")
    @classmethod
    def _expand(cls, value: str) -> str:
        def lookup(match: re.Match[str]) -> str:
            name = match[1]
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set")
            return os.environ[name]

        url = _ENV.sub(lookup, value)
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("must be an http:// or https:// url")
        return url


class RuleSet:
    """The rules in force, with the defaults and webhooks, indexed by id."""

    def __init__(
        self,
        rules: Iterable[Any] = (),
        defaults: Defaults | None = None,
        webhooks: Iterable[Webhook] = (),
        sources: Sequence[str] = (),
    ) -> None:
        self.rules: tuple[Any, ...] = tuple(r for r in rules if r.enabled)
        self.defaults = defaults or Defaults()
        self.webhooks = tuple(webhooks)
        self.sources = tuple(sources)
        self.by_id: dict[str, Any] = {r.id: r for r in self.rules}

    def __len__(self) -> int:
        return len(self.rules)

    def escalate_after_s(self, rule_id: str, severity: str) -> float | None:
        """Seconds until an unacknowledged alert of this rule and severity escalates, or None."""
        if severity not in self.defaults.escalate_severities:
            return None
        rule = self.by_id.get(rule_id)
        if rule is not None and rule.escalate_after is not None:
            return float(rule.escalate_after)
        return self.defaults.escalate_after

    def flapping(self, rule_id: str) -> Flapping:
        rule = self.by_id.get(rule_id)
        if rule is not None and rule.flapping is not None:
            return rule.flapping
        return self.defaults.flapping

    def check_register(self, devices: set[str], zones: set[str]) -> list[str]:
        """Scope entries naming devices or zones that are not in the site register."""
        problems = []
        for rule in self.rules:
            for field_name, known in (("zones", zones), ("devices", devices)):
                wanted = getattr(rule.scope, field_name)
                missing = sorted((wanted or set()) - known)
                if missing:
                    shown = ", ".join(missing[:5])
                    problems.append(
                        f"rule {rule.id!r}, field 'scope.{field_name}': not in the site "
                        f"register: {shown}"
                    )
        return problems


# ---- loading --------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice (PyYAML silently keeps the last)."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping,
)

_TOP_KEYS = {"defaults", "rules", "webhooks"}


def load_rule_files(paths: Sequence[Path | str], catalogue: Catalogue | None = None) -> RuleSet:
    """Read and validate every file; raise RuleFileError listing every problem found."""
    catalogue = catalogue or load_catalogue()
    problems: list[str] = []
    rules: list[Any] = []
    defaults: Defaults | None = None
    webhooks: list[Webhook] = []
    where: dict[str, str] = {}
    for path in paths:
        name = Path(path).name
        loaded = _load_file(Path(path), problems)
        if loaded is None:
            continue
        raw, lines = loaded
        if "defaults" in raw:
            if defaults is not None:
                problems.append(f"{name}: 'defaults' is given in more than one file")
            defaults = _validate(Defaults, raw["defaults"], f"{name}: defaults", problems)
        for index, item in enumerate(_as_list(raw.get("webhooks"), name, "webhooks", problems)):
            label = f"{name}: webhook {_label(item, index)}"
            hook = _validate(Webhook, item, label, problems)
            if hook is not None:
                webhooks.append(hook)
        for index, item in enumerate(_as_list(raw.get("rules"), name, "rules", problems)):
            line = f" (line {lines[index]})" if index < len(lines) else ""
            label = f"{name}{line}: rule {_label(item, index)}"
            rule = _validate(_RULE, item, label, problems)
            if rule is None:
                continue
            if rule.id in where:
                problems.append(f"{label}, field 'id': also defined in {where[rule.id]}")
                continue
            where[rule.id] = name
            problems.extend(f"{label}, {p}" for p in check_catalogue(rule, catalogue))
            rules.append(rule)
    names = [w.name for w in webhooks]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"webhook {duplicate!r}: name used more than once")
    if problems:
        raise RuleFileError(problems)
    return RuleSet(rules, defaults, webhooks, [str(p) for p in paths])


def load_site_rules(site: Path | str, catalogue: Catalogue | None = None) -> RuleSet:
    """``rules.yaml`` of a site folder and every ``rules/*.yaml`` beside it (none: no rules)."""
    folder = Path(site)
    paths = [folder / "rules.yaml"] if (folder / "rules.yaml").is_file() else []
    if (folder / "rules").is_dir():
        paths.extend(sorted((folder / "rules").glob("*.yaml")))
    return load_rule_files(paths, catalogue)


def check_catalogue(rule: Any, catalogue: Catalogue) -> list[str]:
    """Metric and event names the rule's device types do not have, and kind mismatches."""
    types = catalogue.device_types
    problems = []
    if rule.scope.device_types is not None:
        unknown = sorted(rule.scope.device_types - types.keys())
        if unknown:
            problems.append(
                f"field 'scope.device_types': unknown device type(s) {', '.join(unknown)}"
            )
        scoped = [types[t] for t in sorted(rule.scope.device_types) if t in types]
    else:
        scoped = list(types.values())
    if not scoped:
        return problems
    for field_name in ("events", "clear_events"):
        for event in sorted(getattr(rule, field_name, ())):
            if not any(event in t.events for t in scoped):
                problems.append(
                    f"field '{field_name}': no device type in scope sends event {event!r}"
                )
    wanted: dict[str, str] = {}
    if isinstance(rule, ThresholdRule | RateOfRiseRule):
        wanted[rule.metric] = "number"
    elif isinstance(rule, StateForRule):
        wanted[rule.metric] = "boolean" if isinstance(rule.equals, bool) else "string"
    elif isinstance(rule, LocationRule):
        wanted[rule.zone_metric] = "string"
        wanted[rule.hazardous_metric] = "boolean"
    for metric, kind in wanted.items():
        having = [t.metrics[metric] for t in scoped if metric in t.metrics]
        field_name = "metric" if "metric" in type(rule).model_fields else "zone_metric"
        if isinstance(rule, LocationRule) and metric == rule.hazardous_metric:
            field_name = "hazardous_metric"
        if not having:
            problems.append(f"field '{field_name}': no device type in scope has metric {metric!r}")
        elif any(m.kind != kind for m in having):
            problems.append(f"field '{field_name}': metric {metric!r} is not a {kind} metric")
    return problems


def _load_file(path: Path, problems: list[str]) -> tuple[dict[str, Any], list[int]] | None:
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{name}: cannot be read: {exc}")
        return None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        loader = _UniqueKeyLoader(text)
        try:
            raw = loader.construct_document(node) if node is not None else {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        problems.append(f"{name}: not valid YAML: {_yaml_problem(exc)}")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{name}: the top level must be a mapping with 'rules'")
        return None
    extra = sorted(str(k) for k in raw.keys() - _TOP_KEYS)
    if extra:
        problems.append(f"{name}: unknown top-level key(s) {', '.join(extra)}")
    return raw, _rule_lines(node)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return _one_line(exc)
    return f"line {mark.line + 1}, column {mark.column + 1}: {_one_line(problem)}"


def _rule_lines(node: Any) -> list[int]:
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if key.value == "rules" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _as_list(value: Any, name: str, key: str, problems: list[str]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{name}: '{key}' must be a list")
        return []
    return value


def _label(item: Any, index: int) -> str:
    name = item.get("id", item.get("name")) if isinstance(item, dict) else None
    return repr(name[:64]) if isinstance(name, str) else f"#{index + 1}"


def _validate(model: Any, raw: Any, label: str, problems: list[str]) -> Any:
    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(p) for p in error["loc"]]
            if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
                given = raw.get("kind") if isinstance(raw, dict) else None
                what = "missing" if given is None else f"{str(given)[:40]!r} is not a kind"
                problems.append(f"{label}, field 'kind': {what}; one of {', '.join(KINDS)}")
                continue
            if loc and loc[0] in KINDS and isinstance(raw, dict) and raw.get("kind") == loc[0]:
                loc = loc[1:]  # the discriminator's own level says nothing to a reader
            field_name = ".".join(loc) or "(the whole entry)"
            problems.append(f"{label}, field '{field_name}': {_one_line(error['msg'])}")
        return None


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())[:300]

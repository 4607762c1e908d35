"""Emergency plans: timed step checklists, one YAML file each in ``<site>/plans/``.

A plan follows the on-site response plan (现场处置方案, GB/T 29639-2020 ch. 8): what it is
for (``type``, ``level``, a bilingual ``title`` and ``risk``), the alert rules that start it by
themselves (``triggers``), the people to call (``contacts``) and ordered ``steps``. A step has
an ``id``, bilingual ``text``, a ``role`` (security_room, patrol, maintenance, manager,
all_staff), a ``deadline`` after activation (``3m``, ``1h``) and what completing it
``requires`` (nothing, a note, or evidence). ``{zone}`` and ``{site}`` in a step's text are
replaced by the names of the zone and site the incident is in.

Validated once at start-up with pydantic: any problem stops start-up with a PlanFileError
whose lines name the file, the plan, the step and the field.
"""

from __future__ import annotations

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

from rules.spec import (
    RULE_ID,
    SEVERITY_RANK,
    PositiveDuration,
    Severity,
    _one_line,
    _UniqueKeyLoader,
    _yaml_problem,
)

PLANS_FOLDER = "plans"
PlanType = Literal[
    "fire", "public_health", "chemical_leak", "typhoon", "earthquake", "riot", "other"
]
PLAN_TYPES: tuple[str, ...] = PlanType.__args__  # type: ignore[attr-defined]
REQUIRED_TYPES = ("fire", "public_health", "chemical_leak", "typhoon", "earthquake", "riot")
"""The kinds of emergency clause 5.5.2 of the park standard requires a plan for."""
Level = Literal["on_site", "special", "comprehensive"]
Role = Literal["security_room", "patrol", "maintenance", "manager", "all_staff"]
ROLES: dict[str, tuple[str, str]] = {
    "security_room": ("消防控制室值班员", "Security room"),
    "patrol": ("巡逻队", "Patrol"),
    "maintenance": ("维修班组", "Maintenance"),
    "manager": ("园区负责人", "Manager"),
    "all_staff": ("全体员工", "All staff"),
}
DRILL_EVERY_S: dict[str, float] = {
    "on_site": 182 * 86400.0,
    "special": 365 * 86400.0,
    "comprehensive": 365 * 86400.0,
}
"""Legal minimum drill frequency by plan level (应急预案管理办法 Art. 33): an on-site plan at
least every half-year, a special or comprehensive plan at least once a year."""
PLACEHOLDERS = frozenset({"zone", "site"})
STEP_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_BRACES = re.compile(r"\{([^{}]*)\}")


class PlanFileError(ValueError):
    """Plans that cannot be used; each line names the file, the plan, the step and the field."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _placeholders(text: str) -> str:
    names = set(_BRACES.findall(text))
    unknown = sorted(names - PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0][:20]}}}; only {{zone}} and {{site}}")
    if _BRACES.sub("", text).count("{") or _BRACES.sub("", text).count("}"):
        raise ValueError("a brace that is not part of {zone} or {site}")
    return text


ShortText = Annotated[str, Field(min_length=1, max_length=200)]
StepText = Annotated[str, Field(min_length=1, max_length=500)]


class Title(_Strict):
    zh: ShortText
    en: ShortText


class Words(_Strict):
    """Bilingual text of a step (``{zone}`` and ``{site}`` are filled in at activation)."""

    zh: StepText
    en: StepText

    _check = field_validator("zh", "en")(_placeholders)


class Risk(_Strict):
    zh: Annotated[str, Field(min_length=1, max_length=2000)]
    en: Annotated[str, Field(min_length=1, max_length=2000)]


def _trigger(value: Any) -> Any:
    return {"rule": value} if isinstance(value, str) else value


class Trigger(_Strict):
    """An alert of ``rule`` (at ``min_severity`` or above, when given) starts the plan."""

    rule: Annotated[str, Field(pattern=RULE_ID)]
    min_severity: Severity | None = None

    def matches(self, rule_id: str, severity: str) -> bool:
        if rule_id != self.rule:
            return False
        return self.min_severity is None or (
            SEVERITY_RANK.get(severity, -1) >= SEVERITY_RANK[self.min_severity]
        )


class Contact(_Strict):
    name: Title
    phone: Annotated[str, Field(pattern=r"^[0-9+][0-9 -]{1,30}$")]


class Step(_Strict):
    id: Annotated[str, Field(pattern=STEP_ID)]
    role: Role
    text: Words
    deadline: PositiveDuration
    """Seconds after activation by which the step should be done."""
    requires: Literal["nothing", "note", "evidence"] = "nothing"
    """What a person must give to mark the step done."""


class Plan(_Strict):
    id: Annotated[str, Field(pattern=RULE_ID)]
    type: PlanType
    level: Level = "on_site"
    title: Title
    risk: Risk | None = None
    severity: Severity = "critical"
    """How loud its notifications are (webhooks filter on it like on an alert's)."""
    triggers: tuple[Annotated[Trigger, BeforeValidator(_trigger)], ...] = ()
    drill_every: PositiveDuration | None = None
    """How often it must be drilled (default: by level, the legal minimum)."""
    contacts: tuple[Contact, ...] = ()
    steps: Annotated[tuple[Step, ...], Field(min_length=1, max_length=100)]

    @model_validator(mode="after")
    def _unique_steps(self) -> Plan:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice")
            seen.add(step.id)
        return self

    @property
    def drill_interval_s(self) -> float:
        return self.drill_every if self.drill_every is not None else DRILL_EVERY_S[self.level]

    def triggered_by(self, rule_id: str, severity: str) -> bool:
        return any(t.matches(rule_id, severity) for t in self.triggers)

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)


_PLAN = TypeAdapter(Plan)


class PlanSet:
    """The plans in force, indexed by id."""

    def __init__(self, plans: Iterable[Plan] = (), sources: Sequence[str] = ()) -> None:
        self.plans = tuple(plans)
        self.sources = tuple(sources)
        self.by_id = {p.id: p for p in self.plans}
        self.trigger_rules = frozenset(t.rule for p in self.plans for t in p.triggers)

    def __len__(self) -> int:
        return len(self.plans)

    def for_alert(self, rule_id: str, severity: str) -> list[Plan]:
        """The plans an alert of this rule and severity starts."""
        if rule_id not in self.trigger_rules:
            return []
        return [p for p in self.plans if p.triggered_by(rule_id, severity)]

    def missing_types(self) -> list[str]:
        """Kinds of clause 5.5.2 that no plan covers."""
        have = {p.type for p in self.plans}
        return [t for t in REQUIRED_TYPES if t not in have]


def load_plan_files(paths: Sequence[Path | str], rule_ids: Iterable[str] | None = None) -> PlanSet:
    """Read and validate every file (one plan each); raise PlanFileError listing every
    problem. With ``rule_ids``, a trigger naming a rule that does not exist is a problem."""
    known = set(rule_ids) if rule_ids is not None else None
    problems: list[str] = []
    plans: list[Plan] = []
    where: dict[str, str] = {}
    for path in paths:
        name = Path(path).name
        raw = _load(Path(path), problems)
        if raw is None:
            continue
        label = f"{name}: plan {_label(raw)}"
        plan = _validate(raw, label, problems)
        if plan is None:
            continue
        if plan.id in where:
            problems.append(f"{label}, field 'id': also defined in {where[plan.id]}")
            continue
        where[plan.id] = name
        if known is not None:
            for index, trigger in enumerate(plan.triggers):
                if trigger.rule not in known:
                    problems.append(
                        f"{label}, field 'triggers.{index}.rule': no rule {trigger.rule!r} "
                        "in the site's rules"
                    )
        plans.append(plan)
    if problems:
        raise PlanFileError(problems)
    return PlanSet(plans, [str(p) for p in paths])


def load_site_plans(site: Path | str, rule_ids: Iterable[str] | None = None) -> PlanSet:
    """Every ``plans/*.yaml`` of a site folder (no folder: no plans)."""
    folder = Path(site) / PLANS_FOLDER
    paths = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    return load_plan_files(paths, rule_ids)


def _load(path: Path, problems: list[str]) -> dict[str, Any] | None:
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{name}: cannot be read: {_one_line(exc)}")
        return None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        problems.append(f"{name}: not valid YAML: {_yaml_problem(exc)}")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{name}: the top level must be a mapping (one plan: id, type, steps...)")
        return None
    return raw


def _label(raw: dict[str, Any]) -> str:
    name = raw.get("id")
    return repr(name[:64]) if isinstance(name, str) else "(no id)"


def _validate(raw: dict[str, Any], label: str, problems: list[str]) -> Plan | None:
    try:
        return _PLAN.validate_python(raw)
    except ValidationError as exc:
        for error in exc.errors():
            problems.append(f"{label}, {_where(raw, list(error['loc']))}: {_msg(error)}")
        return None


def _where(raw: dict[str, Any], loc: list[Any]) -> str:
    """``step 'call-119', field 'deadline'`` for a step's field, else ``field 'a.b'``."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = raw.get("steps")
        item = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
        step_id = item.get("id") if isinstance(item, dict) else None
        step = repr(step_id[:64]) if isinstance(step_id, str) else f"#{loc[1] + 1}"
        rest = ".".join(str(p) for p in loc[2:]) or "(the whole step)"
        return f"step {step}, field '{rest}'"
    return f"field '{'.'.join(str(p) for p in loc) or '(the whole plan)'}'"


def _msg(error: Any) -> str:
    message = _one_line(error["msg"])
    return message.removeprefix("Value error, ")


def role_title(role: str) -> dict[str, str]:
    zh, en = ROLES.get(role, (role, role))
    return {"zh": zh, "en": en}


def fill(text: str, zone: str, site: str) -> str:
    """A step's text with ``{zone}`` and ``{site}`` replaced (never str.format on names)."""
    return text.replace("{zone}", zone).replace("{site}", site)

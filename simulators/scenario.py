"""Scenarios: YAML timelines of what happens to which devices, played into a running fleet.

A scenario file (``simulators/scenarios/NAME.yaml``)::

    title: {zh: 仓库火灾, en: Warehouse fire}
    description: Smoke in bonded storage west; a second detector confirms it.
    drill: false               # true: every event says {"drill": true, "scenario": NAME}
    duration: 10m              # scenario time; default: the last step + 1 min
    expects:                   # what the demo park's rules and store should show afterwards
      alerts: [fire-prealarm, fire-confirmed]
      events: {fire_alarm: 2}
    steps:
      - at: 0s                 # scenario time since the start, steps in time order
        note: A pallet starts to smoulder        # logged when the step runs
        devices: [A1-W1-SD008]                    # or select: {type, zone, zone_kind,
        ramp: {obscuration_db_m: 0.6}             #   building, floor, count, share}
        over: 60s              # a ramp reaches its target after this; reports every `every`
      - at: 40s
        devices: [A1-W1-SD008]
        event: fire_alarm      # with optional detail: {...}
      - at: 5m
        select: {building: C}
        fault: last_will_storm # or {mode: flapping, metric: ..., around: ...}; see faults.py
        for: 3m                # the fault clears itself after this (else `clear: MODE|all`)

A step may combine actions; they run in the order clear, fault, release, set, ramp, then one
telemetry report of each touched device, then the event.

Time: ``at``, ``over``, ``every``, ``for`` and ``duration`` are scenario time, compressed by
the playback's speed (at 60, ten minutes take ten seconds). Message timestamps stay real. So a
rule that needs a condition to *last* (a lane blocked for 60 s) sees it last 60/speed seconds:
at speed 1 the scenario is what it says; faster, compare it with rules whose durations are
divided by the same speed (the tests do), or it will not fire.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from simulators.devices import SimDevice
from simulators.durations import Duration, show
from simulators.faults import MODES, FaultSpec, check, value_problem

MAX_STEPS = 10_000
DEFAULT_TAIL_S = 60.0
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class ScenarioError(ValueError):
    """A scenario that cannot be played; each problem names the file, the step and the field."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Names = Annotated[tuple[str, ...], BeforeValidator(_listed)]


class Select(_Spec):
    """Devices by what they are and where; all given fields must match. ``count`` takes the
    first ones in register order, ``share`` a seeded random part of them."""

    type: Names | None = None
    zone: Names | None = None
    zone_kind: Names | None = None
    building: Names | None = None
    floor: Names | None = None
    count: int | None = Field(default=None, ge=1)
    share: float | None = Field(default=None, gt=0, le=1)

    def pick(self, devices: Sequence[SimDevice], seed: str) -> list[SimDevice]:
        def matches(d: SimDevice) -> bool:
            return all(
                wanted is None or value in wanted
                for wanted, value in (
                    (self.type, d.device_type),
                    (self.zone, d.zone),
                    (self.zone_kind, d.zone_kind),
                    (self.building, d.building),
                    (self.floor, d.floor),
                )
            )

        found = [d for d in devices if matches(d)]
        if self.share is not None and found:
            keep = max(1, round(len(found) * self.share))
            chosen = set(random.Random(seed).sample(range(len(found)), keep))
            found = [d for i, d in enumerate(found) if i in chosen]
        if self.count is not None:
            found = found[: self.count]
        return found


def _fault(value: Any) -> Any:
    return {"mode": value} if isinstance(value, str) else value


Value = Annotated[bool, Field(strict=True)] | float | Annotated[str, Field(max_length=64)]


class Step(_Spec):
    at: Duration = Field(ge=0)
    note: str | None = Field(default=None, max_length=500)
    devices: Names | None = None
    select: Select | None = None
    set: dict[str, Value] | None = None
    ramp: dict[str, float] | None = None
    over: Duration | None = Field(default=None, gt=0)
    every: Duration = Field(default=10.0, gt=0)
    release: Names | None = None
    event: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,63}$")
    detail: dict[str, Any] | None = None
    fault: Annotated[FaultSpec, BeforeValidator(_fault)] | None = None
    for_: Duration | None = Field(default=None, gt=0, alias="for")
    clear: Names | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Step:
        acts = (self.set, self.ramp, self.release, self.event, self.fault, self.clear)
        acting = any(a is not None for a in acts)
        if not acting and self.note is None:
            raise ValueError("a step needs an action (set, ramp, release, event, fault, clear)")
        if acting and (self.devices is None) == (self.select is None):
            raise ValueError("give exactly one of 'devices' or 'select'")
        if self.ramp is not None and self.over is None:
            raise ValueError("a ramp needs 'over' (how long it takes)")
        if self.over is not None and self.ramp is None:
            raise ValueError("'over' belongs to a ramp")
        if self.for_ is not None and self.fault is None:
            raise ValueError("'for' belongs to a fault")
        if self.detail is not None and self.event is None:
            raise ValueError("'detail' belongs to an event")
        both = set(self.set or ()) & set(self.ramp or ())
        if both:
            raise ValueError(f"{sorted(both)} both set and ramped")
        for mode in self.clear or ():
            if mode != "all" and mode not in MODES:
                raise ValueError(f"cannot clear {mode!r}: not a fault mode ({', '.join(MODES)})")
        return self


class Title(_Spec):
    zh: str = Field(min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=200)


class Expect(_Spec):
    """What a run through ParkGuard with the demo park's rules should show afterwards."""

    alerts: tuple[str, ...] = ()
    """Rule ids that raise an alert."""
    events: dict[str, int] = {}
    """Event name: at least this many stored."""
    offline: int = Field(default=0, ge=0)
    """At least this many devices reported offline."""
    quiet: bool = False
    """No alert at all (a normal day)."""


class Scenario(_Spec):
    name: str = Field(pattern=NAME_PATTERN)
    title: Title
    description: str = Field(default="", max_length=4000)
    drill: bool = False
    duration: Duration | None = Field(default=None, gt=0)
    expects: Expect = Expect()
    steps: tuple[Step, ...] = Field(default=(), max_length=MAX_STEPS)
    source: str = Field(default="<scenario>", exclude=True)

    @model_validator(mode="after")
    def _in_time_order(self) -> Scenario:
        for index in range(1, len(self.steps)):
            before, step = self.steps[index - 1], self.steps[index]
            if step.at < before.at:
                raise ValueError(
                    f"step {index + 1} (at {show(step.at)}) comes before step {index} "
                    f"(at {show(before.at)}): list steps in time order"
                )
        return self

    @property
    def length_s(self) -> float:
        """Scenario seconds from the start to the end."""
        if self.duration is not None:
            return self.duration
        return (self.steps[-1].at if self.steps else 0.0) + DEFAULT_TAIL_S


# ---- loading -------------------------------------------------------------------------------


def builtin_dir() -> Path:
    return Path(str(resources.files("simulators").joinpath("scenarios")))


def list_scenarios() -> list[str]:
    """Names of the scenarios that ship with ParkGuard."""
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def scenario_path(name: str | Path) -> Path:
    """A built-in scenario's file, or the given file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        return path
    return builtin_dir() / f"{name}.yaml"


def load_scenario(name: str | Path) -> Scenario:
    """Read and validate a scenario by built-in name or path; ScenarioError on any problem."""
    path = scenario_path(name)
    if not path.is_file():
        known = ", ".join(list_scenarios())
        raise ScenarioError([f"{path}: no such scenario file (built in: {known})"])
    return parse_scenario(path.read_text(encoding="utf-8"), path.name, default_name=path.stem)


def parse_scenario(text: str, source: str, default_name: str = "scenario") -> Scenario:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError([f"{source}{where}: not valid YAML: {problem}"]) from exc
    if not isinstance(raw, dict):
        raise ScenarioError([f"{source}: a scenario is a mapping (title, steps, ...)"])
    raw.setdefault("name", default_name)
    try:
        return Scenario.model_validate(raw | {"source": source})
    except ValidationError as exc:
        raise ScenarioError(
            [_describe(source, root, raw, error) for error in exc.errors()]
        ) from exc


def _describe(source: str, root: Any, raw: dict[str, Any], error: Any) -> str:
    loc = [p for p in error["loc"] if not (isinstance(p, str) and p.endswith("Spec"))]
    message = str(error["msg"]).removeprefix("Value error, ")
    line = _line(root, loc)
    where = f"{source}, line {line}" if line else source
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        where += f", {_step_label(raw, loc[1])}"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc)
    return f"{where}, field '{field}': {message}" if field else f"{where}: {message}"


def _step_label(raw: dict[str, Any], index: int) -> str:
    label = f"step {index + 1}"
    steps = raw.get("steps")
    if isinstance(steps, list) and index < len(steps) and isinstance(steps[index], dict):
        at = steps[index].get("at")
        if at is not None:
            label += f" (at {at})"
    return label


def _line(node: Any, loc: Sequence[Any]) -> int | None:
    """The line of the deepest YAML node the error's location reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part or (part == "for_" and key.value == "for"):
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


# ---- resolving against a fleet -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedStep:
    index: int
    step: Step
    devices: tuple[SimDevice, ...]


def resolve(scenario: Scenario, devices: Mapping[str, SimDevice]) -> list[ResolvedStep]:
    """Each step with the fleet's devices it touches; ScenarioError naming every step, field
    and device that does not fit (unknown ids, empty selections, metrics, events, values)."""
    problems: list[str] = []
    resolved: list[ResolvedStep] = []
    ordered = list(devices.values())
    for index, step in enumerate(scenario.steps):
        label = f"{scenario.source}, step {index + 1} (at {show(step.at)})"
        targets: list[SimDevice] = []
        if step.devices is not None:
            for device_id in step.devices:
                if device_id in devices:
                    targets.append(devices[device_id])
                else:
                    problems.append(
                        f"{label}, field 'devices': no device {device_id!r} in the fleet"
                        + _did_you_mean(device_id, devices)
                    )
        elif step.select is not None:
            # the same selection picks the same devices in every step of the scenario
            targets = step.select.pick(ordered, f"{scenario.name}/{step.select!r}")
            if not targets:
                problems.append(f"{label}, field 'select': matches no device of the fleet")
        for device in targets:
            problems.extend(f"{label}, {p}" for p in _step_problems(step, device))
        resolved.append(ResolvedStep(index, step, tuple(targets)))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ScenarioError(unique[:50])
    return resolved


def _step_problems(step: Step, device: SimDevice) -> list[str]:
    problems: list[str] = []
    who = f"device {device.device_id}"
    for name, value in (step.set or {}).items():
        problem = value_problem(device, name, value)
        if problem:
            problems.append(f"field 'set.{name}': {who}: {problem}")
    for name, value in (step.ramp or {}).items():
        model = device.behaviour.metrics.get(name)
        if model is not None and model.kind != "number":
            problems.append(f"field 'ramp.{name}': {who}: only a number can ramp")
            continue
        problem = value_problem(device, name, value)
        if problem:
            problems.append(f"field 'ramp.{name}': {who}: {problem}")
    for name in step.release or ():
        if name != "all" and name not in device.behaviour.metrics:
            problems.append(f"field 'release': {who} has no metric {name!r}")
    if step.event is not None and step.event not in device.behaviour.events:
        known = ", ".join(sorted(device.behaviour.events))
        problems.append(
            f"field 'event': a {device.device_type} does not send {step.event!r} ({known})"
        )
    if step.fault is not None:
        problem = check(step.fault, device)
        if problem:
            problems.append(f"field 'fault': {who}: {problem}")
    return problems


def _did_you_mean(value: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(value, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

"""The ways real devices misbehave, as modes any scenario step can switch on and off.

=================  ============================================================================
mode               what the device does
=================  ============================================================================
silence            sends nothing at all; its connection stays up, so no last will either
flapping           a metric jumps across a threshold on every report (``around`` ±
                   ``amplitude``; a boolean toggles), reporting every ``every``
stuck              a metric (or every number metric) keeps the value it had, or ``value``
duplicates         every message goes out twice with the same seq and ts (a QoS 1 redelivery)
out_of_order       messages are held back and sent newest first, ``depth`` at a time
clock_skew         timestamps are off by ``offset`` (e.g. ``-90s``; past +5 min the collector
                   dead-letters them as from the future)
malformed          payloads the contract rejects (``kind``, or each kind in turn)
battery_low        the battery reads ``level`` % (a panel: battery_ok false) and the device
                   says battery_low once
last_will_storm    the connection is closed without DISCONNECT, so the broker publishes the
                   device's last will (offline); clearing the fault reconnects it
=================  ============================================================================

A fault is built for one device by :func:`build`; the fleet applies it. ``values`` rewrites
what the device reads, ``wire`` rewrites what it sends.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field

from core.contract import MetricValue
from simulators.devices import Outgoing, SimDevice
from simulators.durations import Duration

MalformedKind = Literal[
    "not_json", "not_utf8", "not_object", "missing_field", "wrong_type", "too_large", "bad_topic"
]
MALFORMED_KINDS: tuple[str, ...] = get_args(MalformedKind)


class Fault:
    """A misbehaviour of one device. The defaults change nothing."""

    mode: ClassVar[str]
    drops_connection: ClassVar[bool] = False

    def on_apply(self, device: SimDevice) -> list[Outgoing]:
        """Messages the device sends when the fault starts."""
        return []

    def on_clear(self, device: SimDevice) -> list[Outgoing]:
        """Messages the device sends when the fault ends."""
        return []

    def values(self, device: SimDevice, values: dict[str, MetricValue]) -> dict[str, MetricValue]:
        return values

    def wire(self, device: SimDevice, messages: list[Outgoing]) -> list[Outgoing]:
        return messages

    def report_every_s(self) -> float | None:
        """Real seconds between reports the fault needs, if it needs them more often."""
        return None


class Silence(Fault):
    mode = "silence"

    def wire(self, device: SimDevice, messages: list[Outgoing]) -> list[Outgoing]:
        return []


class Flapping(Fault):
    mode = "flapping"

    def __init__(self, metric: str, around: float | None, amplitude: float, every_s: float):
        self.metric = metric
        self.around = around
        self.amplitude = amplitude
        self.every_s = every_s
        self._high = itertools.cycle((True, False))

    def values(self, device: SimDevice, values: dict[str, MetricValue]) -> dict[str, MetricValue]:
        high = next(self._high)
        model = device.behaviour.metrics[self.metric]
        if model.kind == "boolean":
            return values | {self.metric: high}
        assert self.around is not None
        level = self.around + self.amplitude if high else self.around - self.amplitude
        return values | {self.metric: model.clamp(level)}

    def report_every_s(self) -> float | None:
        return self.every_s


class Stuck(Fault):
    mode = "stuck"

    def __init__(self, metric: str | None, value: MetricValue | None) -> None:
        self.metric = metric
        self.value = value
        self.frozen: dict[str, MetricValue] | None = None

    def values(self, device: SimDevice, values: dict[str, MetricValue]) -> dict[str, MetricValue]:
        if self.frozen is None:
            if self.metric is not None:
                names = [self.metric]
            else:
                names = [n for n, m in device.behaviour.metrics.items() if m.kind == "number"]
            self.frozen = {n: values[n] for n in names}
            if self.value is not None and self.metric is not None:
                self.frozen[self.metric] = self.value
        return values | self.frozen


class Duplicates(Fault):
    mode = "duplicates"

    def wire(self, device: SimDevice, messages: list[Outgoing]) -> list[Outgoing]:
        doubled: list[Outgoing] = []
        for message in messages:
            doubled.append(message)
            if message.channel != "status":
                doubled.append(replace(message))
        return doubled


class OutOfOrder(Fault):
    mode = "out_of_order"

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.held: list[Outgoing] = []

    def wire(self, device: SimDevice, messages: list[Outgoing]) -> list[Outgoing]:
        out = [m for m in messages if m.channel == "status"]
        self.held.extend(m for m in messages if m.channel != "status")
        if len(self.held) >= self.depth:
            out.extend(reversed(self.held))
            self.held = []
        return out

    def on_clear(self, device: SimDevice) -> list[Outgoing]:
        held, self.held = self.held, []
        return list(reversed(held))


class ClockSkew(Fault):
    mode = "clock_skew"

    def __init__(self, offset_s: float) -> None:
        self.offset_ms = round(offset_s * 1000)

    def wire(self, device: SimDevice, messages: list[Outgoing]) -> list[Outgoing]:
        return [replace(m, ts_ms=max(0, m.ts_ms + self.offset_ms)) for m in messages]


class Malformed(Fault):
    mode = "malformed"

    def __init__(self, kind: str | None) -> None:
        self.kinds = itertools.cycle([kind] if kind else MALFORMED_KINDS)

    def wire(self, device: SimDevice, messages: list[Outgoing]) -> list[Outgoing]:
        return [self.spoil(m, next(self.kinds)) if m.channel != "status" else m for m in messages]

    @staticmethod
    def spoil(message: Outgoing, kind: str) -> Outgoing:
        """The message as a buggy firmware would send it; core.contract.decode rejects it."""
        good = orjson.loads(message.payload())
        raw: bytes
        topic = message.topic
        if kind == "not_json":
            raw = message.payload()[:-7]  # cut off mid-object
        elif kind == "not_utf8":
            raw = b'{"ts": ' + str(message.ts_ms).encode() + b', "note": "\xff\xfe"}'
        elif kind == "not_object":
            raw = orjson.dumps([good])
        elif kind == "missing_field":
            raw = orjson.dumps({k: v for k, v in good.items() if k != "seq"})
        elif kind == "wrong_type":
            raw = orjson.dumps(good | {"seq": str(good["seq"])})
        elif kind == "too_large":
            raw = orjson.dumps(good | {"padding": "x" * (70 * 1024)})
        elif kind == "bad_topic":
            raw = message.payload()
            topic = topic.replace("/telemetry", "/telemetri").replace("/event", "/evnt")
        else:
            raise ValueError(f"unknown malformed kind {kind!r}")
        return replace(message, raw=raw, topic=topic)


class BatteryLow(Fault):
    mode = "battery_low"

    def __init__(self, level: float) -> None:
        self.level = level

    def on_apply(self, device: SimDevice) -> list[Outgoing]:
        name = device.behaviour.low_battery_event
        return [device.event(name, {"battery_pct": self.level})] if name else []

    def values(self, device: SimDevice, values: dict[str, MetricValue]) -> dict[str, MetricValue]:
        if "battery_pct" in values:
            return values | {"battery_pct": self.level}
        return values | {"battery_ok": False}


class LastWillStorm(Fault):
    mode = "last_will_storm"
    drops_connection = True


# ---- the YAML side: what a scenario step may say -------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SilenceSpec(_Spec):
    mode: Literal["silence"]


class FlappingSpec(_Spec):
    mode: Literal["flapping"]
    metric: str
    around: float | None = None
    amplitude: float = Field(default=1.0, gt=0)
    every: Duration = 10.0


class StuckSpec(_Spec):
    mode: Literal["stuck"]
    metric: str | None = None
    value: Annotated[bool, Field(strict=True)] | float | str | None = None


class DuplicatesSpec(_Spec):
    mode: Literal["duplicates"]


class OutOfOrderSpec(_Spec):
    mode: Literal["out_of_order"]
    depth: int = Field(default=2, ge=2, le=100)


class ClockSkewSpec(_Spec):
    mode: Literal["clock_skew"]
    offset: Duration


class MalformedSpec(_Spec):
    mode: Literal["malformed"]
    kind: MalformedKind | None = None


class BatteryLowSpec(_Spec):
    mode: Literal["battery_low"]
    level: float = Field(default=12.0, ge=0, le=100)


class LastWillStormSpec(_Spec):
    mode: Literal["last_will_storm"]


FaultSpec = Annotated[
    SilenceSpec
    | FlappingSpec
    | StuckSpec
    | DuplicatesSpec
    | OutOfOrderSpec
    | ClockSkewSpec
    | MalformedSpec
    | BatteryLowSpec
    | LastWillStormSpec,
    Field(discriminator="mode"),
]
MODES = (
    "silence",
    "flapping",
    "stuck",
    "duplicates",
    "out_of_order",
    "clock_skew",
    "malformed",
    "battery_low",
    "last_will_storm",
)


def check(spec: Any, device: SimDevice) -> str | None:
    """Why this fault cannot apply to this device, or None."""
    metrics = device.behaviour.metrics
    metric = getattr(spec, "metric", None)
    if metric is not None and metric not in metrics:
        known = ", ".join(metrics)
        return f"a {device.device_type} has no metric {metric!r} ({known})"
    if isinstance(spec, FlappingSpec):
        kind = metrics[spec.metric].kind
        if kind == "string":
            return f"{spec.metric} is a string; flapping needs a number or a boolean"
        if kind == "number" and spec.around is None:
            return f"flapping a number metric ({spec.metric}) needs 'around'"
    if isinstance(spec, StuckSpec) and spec.value is not None:
        if spec.metric is None:
            return "a stuck 'value' needs a 'metric'"
        problem = value_problem(device, spec.metric, spec.value)
        if problem:
            return problem
    if (
        isinstance(spec, BatteryLowSpec)
        and "battery_pct" not in metrics
        and "battery_ok" not in metrics
    ):
        return f"a {device.device_type} has no battery"
    return None


def value_problem(device: SimDevice, metric: str, value: Any) -> str | None:
    """Why ``value`` is not a value ``metric`` of this device can read, or None."""
    model = device.behaviour.metrics.get(metric)
    if model is None:
        known = ", ".join(device.behaviour.metrics)
        return f"a {device.device_type} has no metric {metric!r} ({known})"
    if model.kind == "boolean":
        return None if isinstance(value, bool) else f"{metric} is true or false, not {value!r}"
    if model.kind == "string":
        ok = isinstance(value, str) and len(value) <= 64
        return None if ok else f"{metric} is a string of at most 64 characters, not {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{metric} is a number, not {value!r}"
    assert model.min is not None and model.max is not None
    if not model.min <= value <= model.max:
        return f"{metric}={value:g} is outside {model.min:g}..{model.max:g}"
    return None


def build(spec: Any, speed: float) -> Fault:
    """The fault a checked spec describes, its durations compressed by ``speed``."""
    if isinstance(spec, SilenceSpec):
        return Silence()
    if isinstance(spec, FlappingSpec):
        return Flapping(spec.metric, spec.around, spec.amplitude, spec.every / speed)
    if isinstance(spec, StuckSpec):
        return Stuck(spec.metric, spec.value)
    if isinstance(spec, DuplicatesSpec):
        return Duplicates()
    if isinstance(spec, OutOfOrderSpec):
        return OutOfOrder(spec.depth)
    if isinstance(spec, ClockSkewSpec):
        return ClockSkew(spec.offset)  # a skew is a wrong clock, not scenario time
    if isinstance(spec, MalformedSpec):
        return Malformed(spec.kind)
    if isinstance(spec, BatteryLowSpec):
        return BatteryLow(spec.level)
    if isinstance(spec, LastWillStormSpec):
        return LastWillStorm()
    raise TypeError(f"not a fault spec: {spec!r}")

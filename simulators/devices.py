"""A simulated device: its state, the values it reads, and the messages it sends.

A device knows only the MQTT contract (``core.contract``). It reports its whole state as
telemetry every period of its type (the report is also its heartbeat), sends events when a
scenario says something happens, and a retained status (online on connect, offline as its last
will). Each message gets the device's next sequence number and a timestamp of *now*: simulated
time drives the physics (the daily cycle, an extinguisher's slow leak), never the timestamps,
so a fleet running at 60x still sends messages a collector accepts.

What a device reads, strongest first: a value a fault forces (stuck, flapping, battery low), a
value a scenario holds or ramps, else its type's behaviour (behaviours.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from core.contract import (
    Channel,
    MetricValue,
    encode_event,
    encode_status,
    encode_telemetry,
    now_ms,
    topic_for,
)
from simulators.behaviours import CLIMATE, MetricModel, TypeBehaviour, behaviour_of

if TYPE_CHECKING:
    from simulators.faults import Fault


class SimClock:
    """Simulated time: starts at the wall clock and runs ``speed`` times as fast.

    Used for physics only (hour of day, days of drift); message timestamps stay real.
    """

    def __init__(
        self,
        speed: float = 1.0,
        timezone: str = "Asia/Shanghai",
        start: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be more than 0, not {speed!r}")
        self.speed = speed
        self.zone = ZoneInfo(timezone)
        self.start = start or datetime.now(UTC)
        self._monotonic = monotonic
        self._t0 = monotonic()

    def elapsed_s(self) -> float:
        """Simulated seconds since the clock started."""
        return (self._monotonic() - self._t0) * self.speed

    def now(self) -> datetime:
        return (self.start + timedelta(seconds=self.elapsed_s())).astimezone(self.zone)

    def hour(self) -> float:
        moment = self.now()
        return moment.hour + moment.minute / 60 + moment.second / 3600

    def days(self) -> float:
        return self.elapsed_s() / 86400


@dataclass(slots=True)
class Outgoing:
    """One message on its way out. Faults may rewrite it (ts, raw payload) or multiply it."""

    topic: str
    channel: Channel
    ts_ms: int
    seq: int | None = None
    metrics: dict[str, MetricValue] | None = None
    event: str | None = None
    detail: dict[str, Any] | None = None
    online: bool | None = None
    retain: bool = False
    raw: bytes | None = None
    """A payload to send as is instead of encoding the fields (the malformed fault)."""

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.channel == "telemetry":
            assert self.seq is not None and self.metrics is not None
            return encode_telemetry(self.ts_ms, self.seq, self.metrics)
        if self.channel == "event":
            assert self.seq is not None and self.event is not None
            return encode_event(self.ts_ms, self.seq, self.event, self.detail)
        assert self.online is not None
        return encode_status(self.ts_ms, self.online)


@dataclass(slots=True)
class Ramp:
    """A value moving linearly to ``target`` over ``duration_s`` real seconds."""

    start_value: float
    target: float
    start_s: float
    duration_s: float
    every_s: float
    """Real seconds between two reports while the ramp runs."""

    def value(self, now_s: float) -> float:
        if self.duration_s <= 0:
            return self.target
        share = min(1.0, max(0.0, (now_s - self.start_s) / self.duration_s))
        return self.start_value + (self.target - self.start_value) * share

    def running(self, now_s: float) -> bool:
        return now_s < self.start_s + self.duration_s


@dataclass(slots=True)
class SimDevice:
    """One device of the fleet. Only the fleet's thread touches it."""

    device_id: str
    device_type: str
    site: str
    zone: str
    zone_kind: str = "general"
    building: str | None = None
    floor: str | None = None
    hazardous: bool = False
    behaviour: TypeBehaviour = field(init=False)
    seq: int = 0
    held: dict[str, MetricValue] = field(default_factory=dict)
    ramps: dict[str, Ramp] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    _offset: dict[str, float] = field(default_factory=dict)
    _drift: dict[str, float] = field(default_factory=dict)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.behaviour = behaviour_of(self.device_type)
        rng = self._rng = random.Random(f"{self.site}/{self.device_id}")
        for name, model in self.behaviour.metrics.items():
            if model.kind != "number":
                continue
            self._offset[name] = model.spread * rng.uniform(-1.0, 1.0)
            leaks = model.leak_share > 0 and rng.random() < model.leak_share
            self._drift[name] = model.leak_per_day if leaks else model.drift_per_day
        self.seq = 0

    # ---- topics and sequence ---------------------------------------------------------------

    def topic(self, channel: Channel) -> str:
        return topic_for(self.site, self.device_id, channel)

    def next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    # ---- reading ---------------------------------------------------------------------------

    def natural(self, name: str, clock: SimClock) -> MetricValue:
        """What the metric reads when nothing is wrong and no scenario touches it."""
        model = self.behaviour.metrics[name]
        if model.kind == "string":
            return self.zone  # the asset tag's only string metric: where it is
        if model.kind == "boolean":
            if name == "hazardous":
                return self.hazardous
            assert isinstance(model.base, bool)
            return model.base
        return model.clamp(self._number(name, model, clock))

    def _number(self, name: str, model: MetricModel, clock: SimClock) -> float:
        assert isinstance(model.base, int | float)
        value = model.base + self._offset[name]
        if model.daily:
            climate = CLIMATE.get(self.zone_kind, 0.6)
            phase = 2 * math.pi * (clock.hour() - model.peak_hour) / 24
            value += model.daily * climate * math.cos(phase)
        value += self._drift[name] * clock.days()
        if model.noise:
            value += self._rng.gauss(0.0, model.noise)
        return value

    def read(self, clock: SimClock, now_s: float) -> dict[str, MetricValue]:
        """Every metric of the device as it reads now (faults applied)."""
        values: dict[str, MetricValue] = {}
        for name, model in self.behaviour.metrics.items():
            if name in self.held:
                values[name] = self.held[name]
            elif name in self.ramps:
                values[name] = model.clamp(self.ramps[name].value(now_s))
            else:
                values[name] = self.natural(name, clock)
        for fault in self.faults.values():
            values = fault.values(self, values)
        return values

    def settle_ramps(self, now_s: float) -> None:
        """A ramp that has reached its target holds it."""
        for name, ramp in list(self.ramps.items()):
            if not ramp.running(now_s):
                self.held[name] = self.behaviour.metrics[name].clamp(ramp.target)
                del self.ramps[name]

    def report_every_s(self, fleet_speed: float, now_s: float) -> float:
        """Real seconds until the next report: the type's period at the fleet's speed, or
        sooner while a ramp runs or a fault asks for it."""
        every = self.behaviour.period_s / fleet_speed
        for ramp in self.ramps.values():
            if ramp.running(now_s):
                every = min(every, ramp.every_s)
        for fault in self.faults.values():
            wanted = fault.report_every_s()
            if wanted is not None:
                every = min(every, wanted)
        return every

    # ---- messages --------------------------------------------------------------------------

    def telemetry(self, clock: SimClock, now_s: float) -> Outgoing:
        return Outgoing(
            self.topic("telemetry"),
            "telemetry",
            now_ms(),
            self.next_seq(),
            metrics=self.read(clock, now_s),
        )

    def event(self, name: str, detail: dict[str, Any] | None = None) -> Outgoing:
        return Outgoing(
            self.topic("event"), "event", now_ms(), self.next_seq(), event=name, detail=detail
        )

    def status(self, online: bool, ts_ms: int | None = None) -> Outgoing:
        return Outgoing(
            self.topic("status"),
            "status",
            now_ms() if ts_ms is None else ts_ms,
            online=online,
            retain=True,
        )

    def shape(self, messages: list[Outgoing]) -> list[Outgoing]:
        """Pass outgoing messages through the device's faults (silence, duplicates...)."""
        for fault in list(self.faults.values()):
            messages = fault.wire(self, messages)
        return messages

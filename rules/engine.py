"""The rule engine: readings, events, presence and the clock in, decisions out. No I/O.

The engine keeps the live state of every (rule, subject) — a condition pending its ``for``,
raised, clearing during its ``hold``, a correlation window, a device's silence deadline — and
answers each input with decisions: Raise, Clear, Timer (persist this clock) and CancelTimer.
Whatever must survive a restart leaves the engine as a Timer decision; ``restore`` takes those
back with the open alerts, so a clock started before a restart fires on time after it.

Times are server epoch milliseconds (``now_ms``) except rate of rise, which uses the devices'
own timestamps between readings. A subject is ``device:<id>`` or ``zone:<id>``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from core.contract import Event, MetricValue, Telemetry
from core.ingest import PresenceUpdate
from rules.spec import (
    AbsenceRule,
    ConditionRule,
    CorrelationRule,
    EventRule,
    LocationRule,
    RateOfRiseRule,
    RuleSet,
    StateForRule,
    ThresholdRule,
)

Key = tuple[str, str]
TimerKind = Literal["for", "stage", "hold", "clear_after", "absence"]
Level = Literal["on", "off", "band"]
ABSENCE_FLUSH_MS = 2000
"""Silence deadlines move with every message; they are persisted at most this often, and only
when they moved by half their window (see ``flush_absence``)."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    site_id: str
    type: str
    zone_id: str
    zone_kind: str
    heartbeat_s: float


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    id: str
    site_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class Directory:
    """The site register as the engine needs it."""

    devices: Mapping[str, DeviceInfo] = field(default_factory=dict)
    zones: Mapping[str, ZoneInfo] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Raise:
    rule_id: str
    subject: str
    severity: str
    at_ms: int
    site_id: str
    device_id: str | None
    zone_id: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Clear:
    rule_id: str
    subject: str
    at_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class Timer:
    """Set (or replace) the one persisted clock of (rule, subject)."""

    rule_id: str
    subject: str
    kind: TimerKind
    due_ms: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CancelTimer:
    rule_id: str
    subject: str


Decision = Raise | Clear | Timer | CancelTimer


@dataclass(slots=True)
class _Cond:
    """A condition rule's state for one device: pending its ``for``, raised, or clearing."""

    phase: Literal["pending", "raised", "clearing"]
    since_ms: int
    stage: int = 0
    clear_since_ms: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


def device_subject(device_id: str) -> str:
    return f"device:{device_id}"


def zone_subject(zone_id: str) -> str:
    return f"zone:{zone_id}"


class Engine:
    """Single-threaded: the rules service calls it from one worker thread only."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.directory = Directory()
        self.unknown_devices = 0
        self._by_event: dict[tuple[str, str], tuple[EventRule | CorrelationRule, ...]] = {}
        self._by_clear_event: dict[tuple[str, str], tuple[EventRule, ...]] = {}
        self._by_metric: dict[tuple[str, str], tuple[ConditionRule, ...]] = {}
        self._absence: dict[str, tuple[AbsenceRule, ...]] = {}
        self._cond: dict[Key, _Cond] = {}
        self._timers: dict[Key, Timer] = {}
        self._absence_due: dict[Key, int] = {}
        self._absence_saved: dict[Key, int] = {}
        self._absent: set[Key] = set()
        self._next_absence_flush = 0
        self._samples: dict[tuple[Key, str], deque[tuple[int, float]]] = {}
        self._values: dict[str, dict[str, MetricValue]] = {}
        self._windows: dict[Key, deque[tuple[int, str]]] = {}
        self._located: dict[Key, str] = {}

    # ---- set-up ----------------------------------------------------------------------------

    def set_directory(self, directory: Directory, now_ms: int) -> list[Decision]:
        """Index the rules per device; new devices start a silence clock now."""
        self.directory = directory
        by_event: dict[tuple[str, str], list[EventRule | CorrelationRule]] = {}
        by_clear: dict[tuple[str, str], list[EventRule]] = {}
        by_metric: dict[tuple[str, str], list[ConditionRule]] = {}
        absence: dict[str, list[AbsenceRule]] = {}
        for device in directory.devices.values():
            for rule in self.rules.rules:
                scope = rule.scope
                if not scope.matches(device.type, device.zone_id, device.zone_kind, device.id):
                    continue
                if isinstance(rule, EventRule | CorrelationRule):
                    for name in rule.events:
                        by_event.setdefault((device.id, name), []).append(rule)
                if isinstance(rule, EventRule):
                    for name in rule.clear_events:
                        by_clear.setdefault((device.id, name), []).append(rule)
                elif isinstance(rule, LocationRule):
                    for name in (rule.zone_metric, rule.hazardous_metric):
                        by_metric.setdefault((device.id, name), []).append(rule)
                elif isinstance(rule, ThresholdRule | StateForRule | RateOfRiseRule):
                    by_metric.setdefault((device.id, rule.metric), []).append(rule)
                elif isinstance(rule, AbsenceRule):
                    absence.setdefault(device.id, []).append(rule)
        self._by_event = {k: tuple(v) for k, v in by_event.items()}
        self._by_clear_event = {k: tuple(v) for k, v in by_clear.items()}
        self._by_metric = {k: tuple(v) for k, v in by_metric.items()}
        self._absence = {k: tuple(v) for k, v in absence.items()}
        wanted = {
            (rule.id, device_subject(device_id))
            for device_id, rules in self._absence.items()
            for rule in rules
        }
        out: list[Decision] = []
        for key in set(self._absence_due) - wanted:
            del self._absence_due[key]
            self._absent.discard(key)
            if self._absence_saved.pop(key, None) is not None:
                out.append(CancelTimer(*key))
        for device_id, rules in self._absence.items():
            for rule in rules:
                key = (rule.id, device_subject(device_id))
                if key not in self._absence_due:
                    self._absence_due[key] = now_ms + self._after_ms(rule, device_id)
        return out

    def restore(
        self,
        now_ms: int,
        open_keys: Iterable[Key] = (),
        timers: Iterable[Timer] = (),
        last_values: Mapping[str, Mapping[str, MetricValue]] | None = None,
        last_seen_ms: Mapping[str, int] | None = None,
        recent_events: Iterable[tuple[int, str, str]] = (),
    ) -> list[Decision]:
        """Take back the state a previous run left: open alerts, persisted timers, each
        device's last values and last-seen time, and recent events ``(at_ms, device, event)``
        for correlation windows. Call after ``set_directory``; returns decisions (clean-up of
        timers of rules no longer in force, and conditions true on the last stored values)."""
        out: list[Decision] = []
        by_id = self.rules.by_id
        for key in open_keys:
            rule = by_id.get(key[0])
            if isinstance(rule, AbsenceRule):
                self._absent.add(key)
            elif isinstance(rule, ThresholdRule | StateForRule | RateOfRiseRule | LocationRule):
                self._cond[key] = _Cond("raised", now_ms, stage=len(rule.stages))
        for timer in timers:
            key = (timer.rule_id, timer.subject)
            rule = by_id.get(timer.rule_id)
            if rule is None:
                out.append(CancelTimer(*key))
                continue
            data = timer.data
            if timer.kind == "absence":
                if key in self._absence_due:
                    self._absence_due[key] = timer.due_ms
                    self._absence_saved[key] = timer.due_ms
                else:
                    out.append(CancelTimer(*key))
                continue
            self._timers[key] = timer
            if timer.kind in ("for", "stage", "hold"):
                phase = {"for": "pending", "stage": "raised", "hold": "clearing"}[timer.kind]
                self._cond[key] = _Cond(
                    phase,  # type: ignore[arg-type]
                    int(data.get("since", now_ms)),
                    stage=int(data.get("stage", 0)),
                    clear_since_ms=int(data.get("clear_since", 0)),
                    detail=dict(data.get("detail", {})),
                )
        for key in self._absence_due:
            device_id = key[1].removeprefix("device:")
            seen = (last_seen_ms or {}).get(device_id)
            rule = by_id[key[0]]
            if seen is not None:
                self._absence_due[key] = max(
                    self._absence_due[key], seen + self._after_ms(rule, device_id)
                )
        for device_id, values in (last_values or {}).items():
            self._values[device_id] = dict(values)
            device = self.directory.devices.get(device_id)
            if device is None:
                continue
            seen_rules: set[str] = set()
            for metric, value in values.items():
                for rule in self._by_metric.get((device_id, metric), ()):
                    key = (rule.id, device_subject(device_id))
                    if rule.id in seen_rules or key in self._cond:
                        continue
                    if isinstance(rule, RateOfRiseRule):
                        continue
                    seen_rules.add(rule.id)
                    self._evaluate(rule, device, metric, value, now_ms, now_ms, out)
        windows = {r.id: r for r in self.rules.rules if isinstance(r, CorrelationRule)}
        for at_ms, device_id, name in sorted(recent_events):
            device = self.directory.devices.get(device_id)
            if device is None:
                continue
            for rule in self._by_event.get((device_id, name), ()):
                if rule.id in windows:
                    key = (rule.id, zone_subject(device.zone_id))
                    self._windows.setdefault(key, deque()).append((at_ms, device_id))
        return out

    # ---- inputs ----------------------------------------------------------------------------

    def on_event(self, event: Event, now_ms: int, out: list[Decision]) -> None:
        """A device event. Kept cheap: fire alarms come first."""
        device = self.directory.devices.get(event.device_id)
        if device is None:
            self.unknown_devices += 1
            return
        for rule in self._by_event.get((device.id, event.event), ()):
            if isinstance(rule, EventRule):
                subject = device_subject(device.id)
                out.append(
                    Raise(
                        rule.id,
                        subject,
                        rule.severity,
                        now_ms,
                        device.site_id,
                        device.id,
                        device.zone_id,
                        {"event": event.event, "seq": event.seq, "ts_ms": event.ts_ms},
                    )
                )
                if rule.clear_after is not None:
                    self._set_timer(
                        Timer(rule.id, subject, "clear_after", now_ms + _ms(rule.clear_after), {}),
                        out,
                    )
            else:
                self._correlate(rule, device, event, now_ms, out)
        for clearing in self._by_clear_event.get((device.id, event.event), ()):
            key = (clearing.id, device_subject(device.id))
            out.append(Clear(*key, now_ms, f"event {event.event}"))
            self._cancel_timer(key, out)
        self._heard(device, now_ms, out)

    def on_telemetry(self, telemetry: Telemetry, now_ms: int, out: list[Decision]) -> None:
        device = self.directory.devices.get(telemetry.device_id)
        if device is None:
            self.unknown_devices += 1
            return
        self._heard(device, now_ms, out)
        located: list[LocationRule] = []
        for metric, value in telemetry.metrics.items():
            rules = self._by_metric.get((device.id, metric))
            if not rules:
                continue
            for rule in rules:
                if isinstance(rule, LocationRule):
                    self._values.setdefault(device.id, {})[metric] = value
                    if rule not in located:
                        located.append(rule)
                else:
                    self._evaluate(rule, device, metric, value, telemetry.ts_ms, now_ms, out)
        for rule in located:
            self._evaluate(rule, device, rule.zone_metric, None, telemetry.ts_ms, now_ms, out)

    def on_presence(self, update: PresenceUpdate, now_ms: int, out: list[Decision]) -> None:
        device = self.directory.devices.get(update.device_id)
        if device is None:
            self.unknown_devices += 1
            return
        if update.presence == "online":
            self._heard(device, now_ms, out)
        elif update.presence == "offline":
            for rule in self._absence.get(device.id, ()):
                if rule.offline:
                    self._raise_absent(rule, device, now_ms, update.cause, out)

    def on_tick(self, now_ms: int, out: list[Decision]) -> None:
        """Fire every clock that is due; persist moved silence deadlines now and then."""
        for key, timer in [(k, t) for k, t in self._timers.items() if t.due_ms <= now_ms]:
            del self._timers[key]
            self._fire(key, timer, now_ms, out)
        devices = self.directory.devices
        for key, due in self._absence_due.items():
            if due <= now_ms and key not in self._absent:
                device = devices.get(key[1].removeprefix("device:"))
                rule = self.rules.by_id.get(key[0])
                if device is not None and isinstance(rule, AbsenceRule):
                    self._raise_absent(rule, device, now_ms, "silence", out)
        if now_ms >= self._next_absence_flush:
            self._next_absence_flush = now_ms + ABSENCE_FLUSH_MS
            self.flush_absence(out)

    def flush_absence(self, out: list[Decision], everything: bool = False) -> None:
        """Persist silence deadlines: new ones, ones that moved by half their window or more,
        or (``everything``, when stopping) every one that moved at all. Between flushes the
        collector's device_state.last_seen_ms, read back by ``restore``, is the exact record."""
        rules = self.rules.by_id
        for key, due in self._absence_due.items():
            saved = self._absence_saved.get(key)
            if saved == due:
                continue
            if not everything and saved is not None and due > saved:
                device_id = key[1].removeprefix("device:")
                if due - saved < self._after_ms(rules[key[0]], device_id) // 2:
                    continue
            self._absence_saved[key] = due
            out.append(Timer(*key, "absence", due, {}))

    def forget(self, rule_id: str, subject: str, now_ms: int, out: list[Decision]) -> None:
        """A person resolved the alert: start over. A condition that still holds is pending
        again (it re-raises after its ``for``); a silent device gets another full window."""
        key = (rule_id, subject)
        rule = self.rules.by_id.get(rule_id)
        cond = self._cond.pop(key, None)
        had_timer = self._timers.pop(key, None) is not None
        self._located.pop(key, None)
        if key in self._absent:
            self._absent.discard(key)
            device_id = subject.removeprefix("device:")
            if isinstance(rule, AbsenceRule):
                self._absence_due[key] = now_ms + self._after_ms(rule, device_id)
        if (
            cond is not None
            and cond.phase == "raised"
            and rule is not None
            and not isinstance(rule, LocationRule)
            and getattr(rule, "for_", 0) > 0
        ):
            self._cond[key] = _Cond("pending", now_ms, detail=cond.detail)
            self._set_timer(self._for_timer(rule, key, self._cond[key]), out)
        elif had_timer:
            out.append(CancelTimer(*key))

    def next_due_ms(self) -> int | None:
        """The earliest clock (for a ticker that sleeps until then)."""
        dues = [t.due_ms for t in self._timers.values()]
        dues.extend(d for k, d in self._absence_due.items() if k not in self._absent)
        return min(dues, default=None)

    # ---- conditions ------------------------------------------------------------------------

    def _evaluate(
        self,
        rule: ConditionRule,
        device: DeviceInfo,
        metric: str,
        value: MetricValue | None,
        ts_ms: int,
        now_ms: int,
        out: list[Decision],
    ) -> None:
        key = (rule.id, device_subject(device.id))
        detail: dict[str, Any]
        zone_id = device.zone_id
        if isinstance(rule, ThresholdRule):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return
            detail = {"metric": metric, "value": value}
            if rule.above is not None:
                detail["above"] = rule.above
                level: Level = (
                    "on" if value >= rule.above else "off" if value < rule.clear_level else "band"
                )
            else:
                assert rule.below is not None
                detail["below"] = rule.below
                level = (
                    "on" if value <= rule.below else "off" if value > rule.clear_level else "band"
                )
        elif isinstance(rule, StateForRule):
            same = type(value) is type(rule.equals) and value == rule.equals
            level = "on" if same else "off"
            detail = {"metric": metric, "value": value, "for_s": rule.for_}
        elif isinstance(rule, RateOfRiseRule):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return
            level, detail = self._rate(rule, key, metric, float(value), ts_ms)
        else:
            level, detail, zone_id = self._location(rule, device)
        self._step(rule, key, device, zone_id, level, detail, now_ms, out)

    def _rate(
        self, rule: RateOfRiseRule, key: Key, metric: str, value: float, ts_ms: int
    ) -> tuple[Level, dict[str, Any]]:
        samples = self._samples.setdefault((key, metric), deque())
        if samples and ts_ms <= samples[-1][0]:
            return "band", {}  # out of order or repeated: says nothing about the rate
        samples.append((ts_ms, value))
        horizon = ts_ms - _ms(rule.window)
        while samples and samples[0][0] < horizon:
            samples.popleft()
        first_ts, first_value = samples[0]
        span = ts_ms - first_ts
        if span <= 0 or span < _ms(rule.min_span):
            return "band", {}
        rate = (value - first_value) / span * _ms(rule.per)
        detail = {"metric": metric, "value": value, "rate": round(rate, 3), "per_s": rule.per}
        clear_rise = rule.rise if rule.clear_rise is None else rule.clear_rise
        if rate >= rule.rise:
            return "on", detail
        return ("off" if rate < clear_rise else "band"), detail

    def _location(
        self, rule: LocationRule, device: DeviceInfo
    ) -> tuple[Level, dict[str, Any], str]:
        values = self._values.get(device.id, {})
        hazardous = values.get(rule.hazardous_metric)
        zone = values.get(rule.zone_metric)
        if hazardous is False:
            return "off", {}, device.zone_id
        if hazardous is not True or not isinstance(zone, str):
            return "band", {}, device.zone_id
        known = self.directory.zones.get(zone)
        kind = known.kind if known is not None else None
        detail = {"zone": zone, "zone_kind": kind, "allowed": sorted(rule.allowed_zone_kinds)}
        where = zone if known is not None else device.zone_id
        return ("off" if kind in rule.allowed_zone_kinds else "on"), detail, where

    def _step(
        self,
        rule: ConditionRule,
        key: Key,
        device: DeviceInfo,
        zone_id: str,
        level: Level,
        detail: dict[str, Any],
        now_ms: int,
        out: list[Decision],
    ) -> None:
        cond = self._cond.get(key)
        if cond is None:
            if level != "on":
                return
            cond = self._cond[key] = _Cond("pending", now_ms, detail=detail)
            if rule.for_ > 0:
                self._set_timer(self._for_timer(rule, key, cond), out)
            else:
                self._raise_stage(rule, key, cond, 0, now_ms, device, zone_id, out)
        elif cond.phase == "pending":
            if level == "on":
                cond.detail = detail
            else:
                del self._cond[key]
                self._cancel_timer(key, out)
        elif cond.phase == "raised":
            if level == "on" and isinstance(rule, LocationRule):
                if self._located.get(key) != detail.get("zone"):
                    cond.detail = detail
                    self._raise_stage(rule, key, cond, cond.stage, now_ms, device, zone_id, out)
            elif level == "off":
                if rule.hold > 0:
                    cond.phase = "clearing"
                    cond.clear_since_ms = now_ms
                    due = now_ms + _ms(rule.hold)
                    self._set_timer(Timer(*key, "hold", due, self._data(cond)), out)
                else:
                    self._clear(rule, key, now_ms, out)
            if level != "off":
                cond.detail = detail or cond.detail
        elif level != "off":  # clearing, and the condition is back: raised again, no new alert
            cond.phase = "raised"
            if level == "on":
                cond.detail = detail
            self._cancel_timer(key, out)
            self._stage_timer(rule, key, cond, out)

    def _raise_stage(
        self,
        rule: ConditionRule,
        key: Key,
        cond: _Cond,
        stage: int,
        now_ms: int,
        device: DeviceInfo,
        zone_id: str,
        out: list[Decision],
    ) -> None:
        cond.phase = "raised"
        cond.stage = stage
        severity = rule.severity if stage == 0 else rule.stages[stage - 1].severity
        detail = dict(cond.detail)
        if stage:
            detail["held_s"] = round((now_ms - cond.since_ms) / 1000, 3)
        if isinstance(rule, LocationRule):
            self._located[key] = str(cond.detail.get("zone"))
        out.append(
            Raise(rule.id, key[1], severity, now_ms, device.site_id, device.id, zone_id, detail)
        )
        self._stage_timer(rule, key, cond, out)

    def _stage_timer(self, rule: ConditionRule, key: Key, cond: _Cond, out: list[Decision]) -> None:
        if cond.stage < len(rule.stages):
            due = cond.since_ms + _ms(rule.stages[cond.stage].after)
            data = self._data(cond) | {"stage": cond.stage}
            self._set_timer(Timer(*key, "stage", due, data), out)

    def _for_timer(self, rule: ConditionRule, key: Key, cond: _Cond) -> Timer:
        return Timer(*key, "for", cond.since_ms + _ms(rule.for_), self._data(cond))

    def _clear(self, rule: ConditionRule, key: Key, now_ms: int, out: list[Decision]) -> None:
        self._cond.pop(key, None)
        self._located.pop(key, None)
        self._cancel_timer(key, out)
        out.append(Clear(*key, now_ms, "condition cleared"))

    def _fire(self, key: Key, timer: Timer, now_ms: int, out: list[Decision]) -> None:
        rule = self.rules.by_id.get(key[0])
        out.append(CancelTimer(*key))
        if timer.kind == "clear_after":
            out.append(Clear(*key, now_ms, "no recurrence"))
            return
        cond = self._cond.get(key)
        if cond is None or rule is None or isinstance(rule, EventRule | AbsenceRule):
            return
        if isinstance(rule, CorrelationRule):
            return
        device = self.directory.devices.get(key[1].removeprefix("device:"))
        if device is None:
            return
        zone_id = device.zone_id
        if isinstance(rule, LocationRule):
            where = self.directory.zones.get(str(cond.detail.get("zone")))
            zone_id = where.id if where is not None else zone_id
        if timer.kind == "for" and cond.phase == "pending":
            self._raise_stage(rule, key, cond, 0, now_ms, device, zone_id, out)
        elif timer.kind == "stage" and cond.phase == "raised":
            self._raise_stage(rule, key, cond, cond.stage + 1, now_ms, device, zone_id, out)
        elif timer.kind == "hold" and cond.phase == "clearing":
            self._clear(rule, key, now_ms, out)

    @staticmethod
    def _data(cond: _Cond) -> dict[str, Any]:
        return {
            "since": cond.since_ms,
            "stage": cond.stage,
            "clear_since": cond.clear_since_ms,
            "detail": cond.detail,
        }

    # ---- correlation, absence, timers ------------------------------------------------------

    def _correlate(
        self,
        rule: CorrelationRule,
        device: DeviceInfo,
        event: Event,
        now_ms: int,
        out: list[Decision],
    ) -> None:
        key = (rule.id, zone_subject(device.zone_id))
        window = self._windows.setdefault(key, deque())
        window.append((now_ms, device.id))
        horizon = now_ms - _ms(rule.window)
        while window and window[0][0] < horizon:
            window.popleft()
        devices = sorted({d for _, d in window})
        if len(devices) >= rule.min_devices:
            detail = {"devices": devices, "event": event.event, "window_s": rule.window}
            out.append(
                Raise(
                    rule.id,
                    key[1],
                    rule.severity,
                    now_ms,
                    device.site_id,
                    None,
                    device.zone_id,
                    detail,
                )
            )

    def _heard(self, device: DeviceInfo, now_ms: int, out: list[Decision]) -> None:
        for rule in self._absence.get(device.id, ()):
            key = (rule.id, device_subject(device.id))
            self._absence_due[key] = now_ms + self._after_ms(rule, device.id)
            if key in self._absent:
                self._absent.discard(key)
                out.append(Clear(*key, now_ms, "device heard from"))

    def _raise_absent(
        self,
        rule: AbsenceRule,
        device: DeviceInfo,
        now_ms: int,
        cause: str,
        out: list[Decision],
    ) -> None:
        key = (rule.id, device_subject(device.id))
        if key in self._absent:
            return
        self._absent.add(key)
        window_ms = self._after_ms(rule, device.id)
        last_heard = self._absence_due.get(key, now_ms) - window_ms
        detail = {
            "cause": cause,
            "window_s": window_ms / 1000,
            "silent_s": round(max(0, now_ms - last_heard) / 1000, 3),
        }
        out.append(
            Raise(
                rule.id,
                key[1],
                rule.severity,
                now_ms,
                device.site_id,
                device.id,
                device.zone_id,
                detail,
            )
        )

    def _after_ms(self, rule: AbsenceRule, device_id: str) -> int:
        if rule.after is not None:
            return _ms(rule.after)
        device = self.directory.devices.get(device_id)
        return _ms(device.heartbeat_s if device is not None else 300.0)

    def _set_timer(self, timer: Timer, out: list[Decision]) -> None:
        self._timers[(timer.rule_id, timer.subject)] = timer
        out.append(timer)

    def _cancel_timer(self, key: Key, out: list[Decision]) -> None:
        if self._timers.pop(key, None) is not None:
            out.append(CancelTimer(*key))


def _ms(seconds: float) -> int:
    return round(seconds * 1000)

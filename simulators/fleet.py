"""A fleet: the devices of a site's register, connected and reporting, on one thread of its own.

    fleet = Fleet.from_site("examples/demo-park", "mqtt://127.0.0.1:1883")
    fleet.start()                       # returns at once; connects in the background
    fleet.wait_ready(30)                # every device connected (optional)
    run = fleet.play(load_scenario("warehouse-fire"), speed=60, drill=True)
    run.wait()
    fleet.stop()                        # offline statuses, then DISCONNECT

The fleet's thread owns every device, connection and timer; the public methods hand work to
it through a queue, so they may be called from any thread. See transport.py for the two ways
of connecting and scenario.py for what a scenario may say.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import logging
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.contract import now_ms
from simulators.behaviours import BEHAVIOURS, JITTER
from simulators.control import fleet_topic, parse_request, play_topic
from simulators.devices import Outgoing, Ramp, SimClock, SimDevice
from simulators.durations import show
from simulators.faults import Fault, build
from simulators.scenario import (
    ResolvedStep,
    Scenario,
    ScenarioError,
    list_scenarios,
    load_scenario,
    resolve,
)
from simulators.transport import PER_DEVICE_MAX, Broker, Connection, Link, Loop, Protocol

log = logging.getLogger(__name__)
STARTUP_SPREAD_S = 3.0
"""A starting fleet's first reports are spread over this many seconds (at most a period)."""
CONNECT_BATCH = 50
MISC_EVERY_S = 1.0
MIN_REPORT_S = 0.05
STOP_WAIT_S = 5.0
FLUSH_WAIT_S = 3.0
"""A graceful stop waits this long at most for the broker to acknowledge what was sent."""


class SiteReadError(ValueError):
    """A site folder the simulator cannot read (file and line named)."""


@dataclass(frozen=True, slots=True)
class ZonePlace:
    kind: str
    building: str | None
    floor: str | None


@dataclass(frozen=True, slots=True)
class Register:
    """What a simulator needs of a site folder: its id, time zone, zones and devices."""

    site_id: str
    timezone: str
    zones: dict[str, ZonePlace]
    rows: tuple[dict[str, str], ...]

    def devices(
        self, only: Iterable[str] | None = None, count: int | None = None
    ) -> list[SimDevice]:
        """Fresh simulated devices of the register (all, the given ids, or the first count)."""
        rows = list(self.rows)
        if only is not None:
            wanted = set(only)
            rows = [r for r in rows if r["id"] in wanted]
            missing = wanted - {r["id"] for r in rows}
            if missing:
                raise SiteReadError(f"no device {sorted(missing)[0]!r} in site {self.site_id}")
        if count is not None:
            if count > len(rows):
                raise SiteReadError(
                    f"site {self.site_id} has {len(rows)} devices; cannot simulate {count}"
                )
            rows = rows[:count]
        made = []
        for row in rows:
            place = self.zones.get(row["zone"], ZonePlace("general", None, None))
            made.append(
                SimDevice(
                    row["id"],
                    row["type"],
                    self.site_id,
                    row["zone"],
                    place.kind,
                    place.building,
                    place.floor,
                    hazardous=row.get("hazardous", "").strip().lower() in ("true", "1", "yes"),
                )
            )
        return made


def read_site(folder: str | Path) -> Register:
    """site.yaml (site id, time zone, zones) and devices.csv (id, type, zone, hazardous)."""
    folder = Path(folder)
    site_file, devices_file = folder / "site.yaml", folder / "devices.csv"
    try:
        doc = yaml.safe_load(site_file.read_text(encoding="utf-8"))
        site = doc["site"]
        zones = {
            str(z["id"]): ZonePlace(str(z["kind"]), z.get("building"), z.get("floor"))
            for z in doc.get("zones") or []
        }
        site_id, timezone = str(site["id"]), str(site.get("timezone", "Asia/Shanghai"))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SiteReadError(f"{site_file}: cannot read the site and its zones: {exc}") from exc
    rows = []
    try:
        with devices_file.open(encoding="utf-8", newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                if not row.get("id") or row.get("type") not in BEHAVIOURS:
                    raise SiteReadError(
                        f"{devices_file}, line {line}: needs an id and a known type, "
                        f"not {row.get('type')!r}"
                    )
                rows.append({k: (v or "") for k, v in row.items() if k is not None})
    except OSError as exc:
        raise SiteReadError(f"{devices_file}: cannot read: {exc}") from exc
    return Register(site_id, timezone, zones, tuple(rows))


@dataclass(frozen=True, slots=True)
class FleetStats:
    devices: int
    links: int
    links_up: int
    sent: int
    acked: int
    overflow: int
    suppressed: int
    """Messages a dropped or silenced device did not send."""
    by_channel: dict[str, int]
    errors: int
    dropped: int


class Playback:
    """A scenario being played into a fleet. ``wait()`` until it has run to its end."""

    def __init__(self, scenario: Scenario, steps: list[ResolvedStep], speed: float, drill: bool):
        self.scenario = scenario
        self.steps = steps
        self.speed = speed
        self.drill = drill
        self.done = threading.Event()
        self.cancelled = False
        self.ran: list[int] = []
        """Indexes of the steps that have run."""

    @property
    def length_s(self) -> float:
        """Real seconds the playback lasts."""
        return self.scenario.length_s / self.speed

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


class Fleet:
    """Simulated devices on a thread of their own. Construct, ``start()``, ``stop()``."""

    def __init__(
        self,
        devices: Iterable[SimDevice],
        broker: Broker | str,
        *,
        connection: Connection = "auto",
        clients: int = 4,
        speed: float = 1.0,
        timezone: str = "Asia/Shanghai",
        qos: int = 1,
        background: bool = True,
        protocol: Protocol = "3.1.1",
        control: bool = False,
    ) -> None:
        self.devices = {d.device_id: d for d in devices}
        self.site = next(iter(self.devices.values())).site if self.devices else "none"
        self.broker = broker if isinstance(broker, Broker) else Broker.from_url(broker, protocol)
        if connection == "auto":
            connection = "per_device" if len(self.devices) <= PER_DEVICE_MAX else "multiplexed"
        self.connection = connection
        self.clients = max(1, clients)
        self.clock = SimClock(speed, timezone)
        self.speed = speed
        self.qos = qos
        self.background = background
        self.control = control
        """Take play requests from other processes (control.py)."""
        self.control_rejected = 0
        self.tag = uuid.uuid4().hex[:6]
        self.ready = threading.Event()
        self.errors = 0
        self.suppressed = 0
        self.emulated_wills = 0
        """Offline statuses a multiplexed fleet published for dropped devices itself."""
        self.by_channel: Counter[str] = Counter()
        self.playbacks: list[Playback] = []
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._generation: dict[str, int] = dict.fromkeys(self.devices, 0)
        self._dropped: set[str] = set()
        self._links: list[Link] = []
        self._link_of: dict[str, Link] = {}
        self._control_link: Link | None = None
        self._loop: Loop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._disconnect_at: float | None = None
        self._closed_by = 0.0
        self._rng = random.Random(self.tag)

    @classmethod
    def from_site(
        cls,
        folder: str | Path,
        broker: Broker | str,
        *,
        only: Iterable[str] | None = None,
        count: int | None = None,
        scenario: Scenario | None = None,
        **options: Any,
    ) -> Fleet:
        """A fleet of a site folder's devices: all, the given ids, or the first ``count``, and
        with ``count`` also every device the scenario touches (so that it can be played)."""
        register = read_site(folder)
        options.setdefault("timezone", register.timezone)
        devices = register.devices(only, count)
        if scenario is not None and (only is not None or count is not None):
            everyone = {d.device_id: d for d in register.devices()}
            have = {d.device_id for d in devices}
            needed = {d.device_id for s in resolve(scenario, everyone) for d in s.devices}
            if needed - have:
                keep = have | needed
                devices = [d for d in everyone.values() if d.device_id in keep]
        return cls(devices, broker, **options)

    # ---- life cycle (any thread) -----------------------------------------------------------

    def start(self) -> None:
        """Start the fleet's thread; it connects every device and starts reporting."""
        if self._thread is not None:
            raise RuntimeError("the fleet is already started")
        self._thread = threading.Thread(target=self._run, name="sim-fleet", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Whether every connection is up within ``timeout`` seconds."""
        return self.ready.wait(timeout)

    def stop(self, graceful: bool = True, timeout: float = 15.0) -> None:
        """Stop the thread. Graceful: each device says offline (retained) and disconnects
        cleanly; else the connections are just closed, and the broker publishes the wills."""
        thread = self._thread
        if thread is None:
            return
        self.call(lambda: self._begin_stop(graceful))
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the fleet's thread did not stop within %.0f s", timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- control (any thread) --------------------------------------------------------------

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the fleet's thread."""
        self._commands.put(fn)
        if self._loop is not None:
            self._loop.wake()

    def play(
        self, scenario: Scenario, *, speed: float | None = None, drill: bool | None = None
    ) -> Playback:
        """Start playing a scenario now. Raises ScenarioError at once when a step names
        devices, metrics or events this fleet does not have."""
        steps = resolve(scenario, self.devices)
        chosen = self.speed if speed is None else speed
        if not chosen > 0:
            raise ValueError(f"speed must be more than 0, not {chosen!r}")
        playback = Playback(scenario, steps, chosen, scenario.drill if drill is None else drill)
        self.call(lambda: self._start_playback(playback))
        return playback

    def reset(self) -> None:
        """Clear every fault and scenario override; dropped devices come back."""
        self.call(self._reset)

    def stats(self) -> FleetStats:
        links = list(self._links)
        return FleetStats(
            devices=len(self.devices),
            links=len(links),
            links_up=sum(1 for link in links if link.up),
            sent=sum(link.sent for link in links),
            acked=sum(link.acked for link in links),
            overflow=sum(link.overflow for link in links),
            suppressed=self.suppressed,
            by_channel=dict(self.by_channel),
            errors=self.errors,
            dropped=len(self._dropped),
        )

    # ---- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop = Loop()
        self._make_links(loop)
        to_connect = list(self._links)
        next_misc = time.monotonic() + MISC_EVERY_S
        while True:
            now = time.monotonic()
            if to_connect and not self._stopping:
                for link in to_connect[:CONNECT_BATCH]:
                    link.connect()
                del to_connect[:CONNECT_BATCH]
            self._run_commands()
            self._run_timers(now)
            if now >= next_misc:
                next_misc = now + MISC_EVERY_S
                self._misc(now)
            if not self.ready.is_set() and not to_connect and self._all_up():
                self.ready.set()
            if self._stopping and self._stop_step(now):
                break
            wait = min(next_misc, self._timers[0][0] if self._timers else next_misc) - now
            if to_connect:
                wait = 0.0
            elif self._stopping:
                wait = min(wait, 0.05)
            loop.poll(wait)
        self._close_sockets()
        loop.close()
        self._loop = None

    def _stop_step(self, now: float) -> bool:
        """Stopping: wait (a little) for the goodbyes to be acknowledged, then DISCONNECT,
        then for the connections to close. True when done."""
        if self._disconnect_at is not None:
            flushed = all(link.acked >= link.sent for link in self._links if link.up)
            if flushed or now >= self._disconnect_at:
                self._disconnect_at = None
                self._closed_by = now + STOP_WAIT_S
                for link in self._links:
                    link.disconnect()
            return False
        done = all(link.state in ("closed", "dropped", "lost", "new") for link in self._links)
        return done or now >= self._closed_by

    def _make_links(self, loop: Loop) -> None:
        site = self.site
        if self.control:
            self._control_link = Link(
                loop,
                f"sim-{self.tag}-control",
                self.broker,
                [],
                lambda: self._presence(False),
                self._on_control_up,
                inflight=20,
                on_message=self._on_control,
            )
            self._links.append(self._control_link)
        if self.connection == "per_device":
            for device in self.devices.values():
                link = Link(
                    loop,
                    f"sim-{self.tag}-{device.device_id}",
                    self.broker,
                    [device.device_id],
                    lambda d=device: d.status(False),  # type: ignore[misc]
                    self._on_up,
                    inflight=20,
                )
                self._links.append(link)
                self._link_of[device.device_id] = link
            return
        ids = list(self.devices)
        count = min(self.clients, max(1, len(ids)))
        for index in range(count):
            mine = ids[index::count]
            link = Link(
                loop, f"sim-{self.tag}-{site}-{index}", self.broker, mine, None, self._on_up, 1000
            )
            self._links.append(link)
            self._link_of.update(dict.fromkeys(mine, link))

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._guarded(command)

    def _run_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _due, _n, fn = heapq.heappop(timers)
            if not self._stopping:
                self._guarded(fn)

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a simulator bug must not stop the other devices: counted, logged
            self.errors += 1
            log.exception("simulated fleet: a step or timer failed; the fleet carries on")

    def _misc(self, now: float) -> None:
        for link in self._links:
            if link.state in ("up", "connecting", "closing"):
                link.client.loop_misc()
            elif link.state == "lost" and now >= link.retry_at and not self._stopping:
                link.connect()

    def _all_up(self) -> bool:
        return all(link.up for link in self._links if link.state != "dropped")

    def _schedule(self, delay_s: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._order), fn))

    # ---- devices reporting -----------------------------------------------------------------

    def _on_up(self, link: Link) -> None:
        for device_id in link.devices:
            if device_id in self._dropped and self.connection != "per_device":
                continue
            device = self.devices[device_id]
            self._send(device, [device.status(True)])
            period = device.behaviour.period_s / self.speed
            if self.background:
                self._plan_report(device, self._rng.uniform(0, min(STARTUP_SPREAD_S, period)))
            elif device.ramps or device.faults:
                self._plan_report(device, 0.0)

    def _presence(self, online: bool) -> Outgoing:
        return Outgoing(fleet_topic(self.site), "status", now_ms(), online=online, retain=True)

    def _on_control_up(self, link: Link) -> None:
        link.client.subscribe(play_topic(self.site), qos=1)
        link.publish(self._presence(True), 1)

    def _on_control(self, _topic: str, payload: bytes) -> None:
        """(fleet thread) A play request from another process."""
        try:
            request = parse_request(payload)
            if request.reset:
                self._reset()
            if request.scenario is not None:
                if request.scenario not in list_scenarios():
                    raise ScenarioError([f"{request.scenario!r} is not a built-in scenario"])
                scenario = load_scenario(request.scenario)
                self.play(scenario, speed=request.speed, drill=request.drill)
        except (ValueError, ScenarioError) as exc:  # ScenarioError is a ValueError too
            self.control_rejected += 1
            log.warning("simulated fleet: refused a play request: %s", exc)

    def _plan_report(self, device: SimDevice, delay_s: float) -> None:
        generation = self._generation[device.device_id] = self._generation[device.device_id] + 1

        def report() -> None:
            if self._generation[device.device_id] == generation:
                self._report(device)

        self._schedule(delay_s, report)

    def _report(self, device: SimDevice) -> None:
        """Send the device's telemetry now and plan its next report."""
        now = time.monotonic()
        self._send(device, [device.telemetry(self.clock, now)])
        device.settle_ramps(now)
        every = device.report_every_s(self.speed, now)
        if not self.background and every >= device.behaviour.period_s / self.speed:
            self._generation[device.device_id] += 1  # nothing more until a step asks
            return
        jitter = self._rng.uniform(1 - JITTER, 1 + JITTER)
        self._plan_report(device, max(MIN_REPORT_S, every * jitter))

    def report_now(self, device: SimDevice) -> None:
        """(fleet thread) Report at once and restart the device's report timer."""
        self._generation[device.device_id] += 1
        self._report(device)

    def send(self, device: SimDevice, messages: list[Outgoing]) -> None:
        """(fleet thread) Publish through the device's faults; for load.py."""
        self._send(device, messages)

    def sending(self, device: SimDevice) -> bool:
        """Whether the device is connected (not dropped by a last-will storm)."""
        return device.device_id not in self._dropped

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """(fleet thread) Run ``fn`` on the fleet's thread after ``delay_s`` seconds."""
        self._schedule(delay_s, fn)

    def _send(self, device: SimDevice, messages: list[Outgoing], shaped: bool = True) -> None:
        if device.device_id in self._dropped:
            self.suppressed += len(messages)
            return
        shaped_messages = device.shape(messages) if shaped else messages
        self.suppressed += max(0, len(messages) - len(shaped_messages))
        link = self._link_of[device.device_id]
        for message in shaped_messages:
            link.publish(message, self.qos)
            self.by_channel[message.channel] += 1

    # ---- connections dropping and coming back ----------------------------------------------

    def _drop(self, device: SimDevice) -> None:
        if device.device_id in self._dropped:
            return
        link = self._link_of[device.device_id]
        if self.connection == "per_device":
            link.drop()
        else:  # a shared connection has no will per device: say it on the device's behalf
            self._send(device, [device.status(False)], shaped=False)
            self.emulated_wills += 1
        self._dropped.add(device.device_id)

    def _restore(self, device: SimDevice) -> None:
        if device.device_id not in self._dropped:
            return
        self._dropped.discard(device.device_id)
        link = self._link_of[device.device_id]
        if self.connection == "per_device":
            link.connect()  # on_up sends the online status and a report
        else:
            self._send(device, [device.status(True)])
            self.report_now(device)

    def _reset(self) -> None:
        for device in self.devices.values():
            touched = bool(device.held or device.ramps or device.faults)
            device.held.clear()
            device.ramps.clear()
            for fault in list(device.faults.values()):
                self._send(device, fault.on_clear(device))
            device.faults.clear()
            if device.device_id in self._dropped:
                self._restore(device)
            elif touched:
                self.report_now(device)

    def _begin_stop(self, graceful: bool) -> None:
        self._stopping = True
        for playback in self.playbacks:
            playback.cancelled = True
            playback.done.set()
        for link in self._links:
            if not graceful:
                if link.state in ("up", "connecting"):
                    link.drop()
            elif link.up:
                for device_id in link.devices:
                    if device_id not in self._dropped:
                        link.publish(self.devices[device_id].status(False), self.qos)
                        self.by_channel["status"] += 1
                if link is self._control_link:
                    link.publish(self._presence(False), 1)
        self._disconnect_at = time.monotonic() + (FLUSH_WAIT_S if graceful else 0.0)

    def _close_sockets(self) -> None:
        for link in self._links:
            sock = link.client.socket()
            if sock is not None and self._loop is not None:
                self._loop.forget(sock)
                sock.close()

    # ---- scenarios -------------------------------------------------------------------------

    def _start_playback(self, playback: Playback) -> None:
        self.playbacks = [p for p in self.playbacks if not p.done.is_set()] + [playback]
        title = playback.scenario.title.en
        log.info(
            "scenario %s (%s)%s starts: %d steps over %s at speed %g",
            playback.scenario.name,
            title,
            " [DRILL]" if playback.drill else "",
            len(playback.steps),
            show(playback.scenario.length_s),
            playback.speed,
        )
        for resolved in playback.steps:
            self._schedule(
                resolved.step.at / playback.speed,
                lambda r=resolved: self._apply(playback, r),  # type: ignore[misc]
            )
        self._schedule(playback.length_s, playback.done.set)

    def _apply(self, playback: Playback, resolved: ResolvedStep) -> None:
        if playback.cancelled:
            return
        step = resolved.step
        if step.note:
            log.info("scenario %s at %s: %s", playback.scenario.name, show(step.at), step.note)
        for device in resolved.devices:
            self._apply_to(playback, step, device)
        playback.ran.append(resolved.index)

    def _apply_to(self, playback: Playback, step: Any, device: SimDevice) -> None:
        now = time.monotonic()
        later: list[Outgoing] = []
        touched = False
        for mode in step.clear or ():
            for name in list(device.faults) if mode == "all" else [mode]:
                later += self._clear_fault(device, name)
                touched = True
        if step.fault is not None:
            fault = build(step.fault, playback.speed)
            later += self._clear_fault(device, fault.mode)
            device.faults[fault.mode] = fault
            later += fault.on_apply(device)
            if fault.drops_connection:
                self._drop(device)
            if step.for_ is not None:

                def expire(d: SimDevice = device, f: Fault = fault) -> None:
                    if d.faults.get(f.mode) is f:
                        self._send(d, self._clear_fault(d, f.mode))
                        self.report_now(d)

                self._schedule(step.for_ / playback.speed, expire)
            touched = True
        for name in step.release or ():
            names = list(device.behaviour.metrics) if name == "all" else [name]
            for metric in names:
                device.held.pop(metric, None)
                device.ramps.pop(metric, None)
            touched = True
        if step.set:
            for name in step.set:
                device.ramps.pop(name, None)
            device.held.update(step.set)
            touched = True
        for name, target in (step.ramp or {}).items():
            start = device.read(self.clock, now)[name]
            assert isinstance(start, int | float) and not isinstance(start, bool)
            device.held.pop(name, None)
            device.ramps[name] = Ramp(
                float(start), target, now, step.over / playback.speed, step.every / playback.speed
            )
            touched = True
        if touched:
            self.report_now(device)
        self._send(device, later)
        if step.event is not None:
            detail = dict(step.detail or {})
            if playback.drill:
                detail |= {"drill": True, "scenario": playback.scenario.name}
            self._send(device, [device.event(step.event, detail or None)])

    def _clear_fault(self, device: SimDevice, mode: str) -> list[Outgoing]:
        fault = device.faults.pop(mode, None)
        if fault is None:
            return []
        if fault.drops_connection:
            self._restore(device)
        return fault.on_clear(device)


def start_fleet(
    site: str | Path,
    broker: Broker | str,
    *,
    scenario: str | Path | None = "normal-day",
    speed: float = 1.0,
    connection: Connection = "auto",
    protocol: Protocol = "3.1.1",
    drill: bool | None = None,
    control: bool = True,
) -> tuple[Fleet, Playback | None]:
    """Start a site's whole fleet and play a scenario (by default a normal day) into it.

    Returns at once with the running fleet and the playback; trigger more scenarios with
    ``fleet.play(load_scenario(name))`` (or, from another process, ``parkguard simulate``:
    ``control`` lets it hand scenarios over) and end with ``fleet.stop()``. Raises
    SiteReadError or ScenarioError before anything starts."""
    fleet = Fleet.from_site(
        site, broker, speed=speed, connection=connection, protocol=protocol, control=control
    )
    loaded = load_scenario(scenario) if scenario is not None else None
    playback = fleet.play(loaded, drill=drill) if loaded is not None else None
    fleet.start()
    return fleet, playback

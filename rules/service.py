"""The rules service: the collector's batches and a clock in, alerts and fan-out out.

Wiring (``parkguard serve``)::

    rules = load_site_rules(settings.site)                # RuleFileError stops start-up
    service = RulesService(settings.database_url, rules, mqtt=MqttTarget.from_url(url))
    service.start()                                       # before the collector starts
    collector.add_listener(service.on_batch)
    ctx.extras["alerts"] = service.store                  # for api/routers/alerts.py
    ...
    service.stop()                                        # after the collector stopped

With ``bus=JournalBus(...)`` (``parkguard collect``, the API in a process of its own) the bus
also carries the alert changes other processes journal, e.g. a person resolving an alert in
the API: the engine forgets it, MQTT and webhooks carry it (core.journal).

One worker thread owns the engine and applies its decisions; events and presence are taken
before telemetry (fire alarms first), and a ticker thread makes time-based rules fire when
no message arrives. ``on_batch`` only hands the batch over; it never waits on the database.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from core.bus import Bus
from core.catalogue import Catalogue, load_catalogue
from core.contract import now_ms
from core.ingest import CommittedBatch
from core.journal import JournalBus
from core.models import Device, DeviceEvent, DeviceState, Zone
from rules.alerts import SYSTEM, AlertChange, AlertStore
from rules.engine import Decision, DeviceInfo, Directory, Engine, ZoneInfo
from rules.fanout import MqttFanout, MqttTarget, WebhookFanout
from rules.spec import CorrelationRule, RuleFileError, RuleSet

log = logging.getLogger(__name__)
URGENT, NORMAL, LAST = 0, 1, 9
DIRECTORY_REFRESH_S = 30.0
RETRY_MAX_S = 10.0
STOP_ATTEMPTS = 5
CHUNK = 64
"""Telemetry readings evaluated between two looks for urgent items (about 1 ms of work)."""


@dataclass(slots=True)
class RulesStats:
    batches: int = 0
    events: int = 0
    telemetry: int = 0
    decisions: int = 0
    ticks: int = 0
    directories: int = 0
    """Changed device registers handed to the engine (read every 30 s, used when changed)."""
    engine_errors: int = 0
    """Inputs the engine failed on (a bug): counted, logged, and the worker carries on."""
    worker_errors: int = 0
    """Items the worker failed on outside the engine (a bug): counted, logged, skipped."""
    db_errors: int = 0
    """Failed attempts to store decisions; each is retried until it succeeds."""
    lost_on_stop: int = 0
    """Decisions not stored because the service stopped while the database was down."""


class RulesService:
    """Construct, ``start()``, hand it batches with ``on_batch``, ``stop()``."""

    def __init__(
        self,
        database_url: str,
        rules: RuleSet,
        *,
        bus: Bus[AlertChange] | None = None,
        mqtt: MqttTarget | None = None,
        catalogue: Catalogue | None = None,
        tick_s: float = 0.25,
        clock: Callable[[], int] = now_ms,
        max_queued_telemetry: int = 1000,
    ) -> None:
        self.rules = rules
        self.bus: Bus[AlertChange] = bus if bus is not None else Bus()
        self.store = AlertStore(database_url, rules, self.bus, clock)
        self.engine = Engine(rules)
        self.mqtt = MqttFanout(self.bus, mqtt) if mqtt is not None else None
        self.webhooks = WebhookFanout(self.bus, rules.webhooks, self.store)
        self.catalogue = catalogue
        self.tick_s = tick_s
        self.clock = clock
        self.stats = RulesStats()
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._telemetry_slots = threading.BoundedSemaphore(max_queued_telemetry)
        self._stopping = threading.Event()
        self._tick_queued = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._last_directory = 0.0

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, load the register, restore the previous run's state, start the
        fan-out and the threads. Raises RuleFileError when the rules name unknown devices or
        zones of the register."""
        self.catalogue = self.catalogue or load_catalogue()
        self.store.open()
        try:
            if isinstance(self.bus, JournalBus):  # split roles: the API's changes come here too
                self.bus.start(self.store)
            directory = self._load_directory()
            if directory.devices:
                problems = self.rules.check_register(set(directory.devices), set(directory.zones))
                if problems:
                    raise RuleFileError(problems)
            now = self.clock()
            out = self.engine.set_directory(directory, now)
            out += self._restore(now)
            self.store.apply(out, now)
        except BaseException:
            self._close()
            raise
        self._last_directory = time.monotonic()
        self._stopping.clear()
        self._unsubscribe = self.bus.subscribe(self._on_change)
        if self.mqtt is not None:
            self.mqtt.start()
        self.webhooks.start()
        for target, name in ((self._work, "rules-worker"), (self._tick, "rules-ticker")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Finish what is queued, stop the threads and the fan-out, close the store."""
        self._stopping.set()
        self._put(LAST - 1, ("flush",))
        self._put(LAST, ("stop",))
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.webhooks.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        self._close()

    def _close(self) -> None:
        if isinstance(self.bus, JournalBus):
            self.bus.stop()
        self.store.close()

    # ---- inputs ----------------------------------------------------------------------------

    def on_batch(self, batch: CommittedBatch) -> None:
        """A BatchListener: hand the committed batch to the worker. Events and presence go
        ahead of any queued telemetry; telemetry waits (back-pressure) only when 1,000
        batches are already queued."""
        now = self.clock()
        if batch.events or batch.presence:
            self.store.gate.expect_urgent()  # telemetry waits until its alerts are stored
            self._put(URGENT, ("urgent", batch.events, batch.presence, now))
        if batch.telemetry:
            self._telemetry_slots.acquire()
            self._put(NORMAL, ("telemetry", batch.telemetry, now))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything handed in so far is processed (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def tick_now(self) -> None:
        """Run the clock once now (tests)."""
        self._put(NORMAL, ("tick",))

    # ---- the worker ------------------------------------------------------------------------

    def _put(self, priority: int, item: tuple[Any, ...]) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((priority, next(self._order), item))

    def _work(self) -> None:
        while True:
            _priority, _n, item = self._queue.get()
            if item[0] == "stop":
                self._done(item)
                return
            try:
                self._handle(item)
            except Exception:  # the worker must outlive any one failure, or alarms stop
                self.stats.worker_errors += 1
                log.exception("rules worker failed on a %s item; carrying on", item[0])
            finally:
                self._done(item)

    def _done(self, item: tuple[Any, ...]) -> None:
        if item[0] == "urgent":
            self.store.gate.urgent_settled()
        if item[0] == "telemetry":
            self._telemetry_slots.release()
        if item[0] == "tick":
            self._tick_queued.clear()
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        out: list[Decision] = []
        engine = self.engine
        now = item[-1] if kind in ("urgent", "telemetry") else self.clock()
        try:
            if kind == "urgent":
                _, events, presence, _ = item
                self._known({e.device_id for e in events} | {p.device_id for p in presence})
                self.stats.batches += 1
                self.stats.events += len(events)
                for event in events:
                    engine.on_event(event, now, out)
                for update in presence:
                    engine.on_presence(update, now, out)
            elif kind == "telemetry":
                telemetry = item[1]
                self._known({t.device_id for t in telemetry})
                self.stats.batches += 1
                self.stats.telemetry += len(telemetry)
                for start in range(0, len(telemetry), CHUNK):
                    if start:
                        self._urgent_first()
                    for reading in telemetry[start : start + CHUNK]:
                        engine.on_telemetry(reading, now, out)
            elif kind == "tick":
                self.stats.ticks += 1
                engine.on_tick(now, out)
            elif kind == "directory":
                out += self._set_directory(item[1], now)
            elif kind == "forget":
                engine.forget(item[1], item[2], now, out)
            elif kind == "flush":
                engine.flush_absence(out, everything=True)
        except Exception:  # a bug in one rule must not stop every other alarm
            self.stats.engine_errors += 1
            log.exception("rule engine failed on a %s item; carrying on", kind)
        self._store(out, now)
        if kind == "tick":
            self._housekeeping(now)

    def _urgent_first(self) -> None:
        """Between chunks of a telemetry batch, handle any event that arrived meanwhile, so
        a fire alarm waits for at most one chunk (a few milliseconds), not a whole batch."""
        while True:
            with self._queue.mutex:
                if not self._queue.queue or self._queue.queue[0][0] != URGENT:
                    return
            _priority, _n, item = self._queue.get_nowait()
            try:
                self._handle(item)
            except Exception:  # as in the worker loop: count, log, carry on
                self.stats.worker_errors += 1
                log.exception("rules worker failed on a %s item; carrying on", item[0])
            finally:
                self._done(item)

    def _store(self, out: list[Decision], now: int) -> None:
        """Store decisions, retrying while the database is away: an alarm is never dropped
        while the service runs."""
        if not out:
            return
        self.stats.decisions += len(out)
        delay = 0.2
        for attempt in itertools.count(1):
            try:
                self.store.apply(out, now)
                return
            except SQLAlchemyError:
                self.stats.db_errors += 1
                log.exception(
                    "storing %d rule decisions failed; retrying in %.1f s", len(out), delay
                )
                if self._stopping.is_set() and attempt >= STOP_ATTEMPTS:
                    self.stats.lost_on_stop += len(out)
                    log.error("stopping: %d rule decisions were not stored", len(out))
                    return
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _housekeeping(self, now: int) -> None:
        try:
            self.store.housekeeping(now)
        except SQLAlchemyError:
            self.stats.db_errors += 1
            log.exception("alert housekeeping failed; trying again at the next tick")

    def _tick(self) -> None:
        while not self._stopping.wait(self.tick_s):
            if not self._tick_queued.is_set():
                self._tick_queued.set()
                self._put(NORMAL, ("tick",))
            if time.monotonic() - self._last_directory > DIRECTORY_REFRESH_S:
                self._refresh_directory()

    def _refresh_directory(self) -> None:
        """Read the register on the ticker thread and hand it to the worker only when it
        changed: re-indexing the rules for every device holds the worker (about 100 ms for
        1,500 devices), and an alarm arriving meanwhile would wait for it."""
        directory = self._changed_directory()
        if directory is not None:
            self._put(NORMAL, ("directory", directory))

    def _on_change(self, change: AlertChange) -> None:
        """A person resolved an alert: the engine starts that (rule, subject) over."""
        if change.action == "resolved" and change.actor != SYSTEM:
            rule_id, subject = change.alert["rule"], change.alert["subject"]
            self._put(URGENT, ("forget", rule_id, subject))

    # ---- the register and the previous run -------------------------------------------------

    def _known(self, device_ids: set[str]) -> None:
        """Reload the register when a device appears that was imported after the start."""
        if device_ids <= self.engine.directory.devices.keys():
            return
        if time.monotonic() - self._last_directory < 1.0:
            return
        directory = self._changed_directory()
        if directory is not None:
            now = self.clock()
            self._store(self._set_directory(directory, now), now)

    def _changed_directory(self) -> Directory | None:
        """The register as stored now, or None if it is what the engine has (or unreadable)."""
        self._last_directory = time.monotonic()
        try:
            directory = self._load_directory()
        except SQLAlchemyError:
            self.stats.db_errors += 1
            log.exception("could not reload the device register")
            return None
        return None if directory == self.engine.directory else directory

    def _set_directory(self, directory: Directory, now: int) -> list[Decision]:
        self.stats.directories += 1
        return self.engine.set_directory(directory, now)

    def _load_directory(self) -> Directory:
        assert self.catalogue is not None
        types = self.catalogue.device_types
        with self.store.reading() as session:
            zones = {
                zone_id: ZoneInfo(zone_id, site_id, kind)
                for zone_id, site_id, kind in session.execute(
                    select(Zone.id, Zone.site_id, Zone.kind)
                )
            }
            devices = {}
            for device_id, site_id, type_, zone_id in session.execute(
                select(Device.id, Device.site_id, Device.type, Device.zone_id)
            ):
                zone = zones.get(zone_id)
                heartbeat = types[type_].heartbeat_s if type_ in types else 300
                devices[device_id] = DeviceInfo(
                    device_id,
                    site_id,
                    type_,
                    zone_id,
                    zone.kind if zone is not None else "general",
                    float(heartbeat),
                )
        return Directory(devices, zones)

    def _restore(self, now: int) -> list[Decision]:
        windows = [r for r in self.rules.rules if isinstance(r, CorrelationRule)]
        names = sorted({name for r in windows for name in r.events})
        horizon = now - round(max((r.window for r in windows), default=0) * 1000)
        with self.store.reading() as session:
            states = session.execute(
                select(DeviceState.device_id, DeviceState.last_values, DeviceState.last_seen_ms)
            ).all()
            recent: list[tuple[int, str, str]] = []
            if names:
                recent = [
                    (int(at), device_id, name)
                    for at, device_id, name in session.execute(
                        select(
                            DeviceEvent.received_ms, DeviceEvent.device_id, DeviceEvent.event
                        ).where(DeviceEvent.received_ms >= horizon, DeviceEvent.event.in_(names))
                    )
                ]
        return self.engine.restore(
            now,
            open_keys=self.store.open_keys(),
            timers=self.store.load_timers(),
            last_values={d: dict(v or {}) for d, v, _ in states},
            last_seen_ms={d: int(s) for d, _, s in states if s is not None},
            recent_events=recent,
        )

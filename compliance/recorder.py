"""Keeps the condition log current while ParkGuard runs: the collector's committed batches in,
condition spans out (compliance.conditions).

Wiring (``parkguard serve``), next to the rules service::

    recorder = ConditionRecorder(engine, catalogue)
    recorder.start()                                  # before the collector starts
    collector.add_listener(recorder.on_batch)
    ...
    recorder.stop()                                   # after the collector stopped

``on_batch`` only queues the batch's telemetry and notes that events arrived; it never waits on
the database. One worker thread writes value spans exactly as the readings came, catches up on
device events, and every ``interval_s`` looks at the last values of the devices heard from since
(a full look every hour): the safety net for anything a full queue dropped or that arrived while
no recorder ran. A database error is counted, logged and retried on the next round; the log is
idempotent, so a retry never duplicates a span. Without a recorder the API's own look before
each figure keeps the log right, only coarser (a start is as late as the last value seen).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from compliance.conditions import (
    ValueReading,
    catch_up_events,
    reconcile_values,
    record_values,
)
from core.catalogue import Catalogue
from core.contract import now_ms
from core.db import session_factory
from core.ingest import CommittedBatch

log = logging.getLogger(__name__)
BATCH_READINGS = 5000
FULL_LOOK_MS = 3_600_000


@dataclass(slots=True)
class RecorderStats:
    batches: int = 0
    readings: int = 0
    spans_changed: int = 0
    events_read: int = 0
    looks: int = 0
    db_errors: int = 0
    """Rounds that failed on the database; each is retried on the next round."""
    dropped: int = 0
    """Batches not queued because the queue was full (the next look at last values covers
    what they changed, at the values' own timestamps)."""


class ConditionRecorder:
    """Construct, ``start()``, hand it batches with ``on_batch``, ``stop()``."""

    def __init__(
        self,
        engine: Engine,
        catalogue: Catalogue,
        *,
        interval_s: float = 30.0,
        queue_max: int = 10_000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.engine = engine
        self.catalogue = catalogue
        self.interval_s = interval_s
        self.clock = clock
        self.stats = RecorderStats()
        self._sessions = session_factory(engine)
        self._queue: queue.Queue[CommittedBatch | None] = queue.Queue(queue_max)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._pending: list[ValueReading] = []
        self._events_due = True
        self._next_look_ms = 0
        self._next_full_ms = 0

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="condition-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the worker."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def on_batch(self, batch: CommittedBatch) -> None:
        """The collector's listener: queue and return at once."""
        if not (batch.telemetry or batch.events):
            return
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self.stats.dropped += 1
            log.error("condition recorder queue full: batch dropped (%d)", self.stats.dropped)

    def run_once(self) -> None:
        """Take every queued batch and do one round of writing (the worker's step)."""
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                break
            if batch is not None:
                self._take(batch)
        self._round()

    # ---- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                batch = self._queue.get(timeout=min(self.interval_s, 1.0))
            except queue.Empty:
                batch = None
            if batch is not None:
                self._take(batch)
            self.run_once()
        self.run_once()

    def _take(self, batch: CommittedBatch) -> None:
        self.stats.batches += 1
        for message in batch.telemetry:
            self._pending.append(ValueReading(message.device_id, message.ts_ms, message.metrics))
        self.stats.readings += len(batch.telemetry)
        if batch.events:
            self._events_due = True

    def _round(self) -> None:
        now = self.clock()
        try:
            with self._sessions() as session:
                while self._pending:
                    chunk = self._pending[:BATCH_READINGS]
                    self.stats.spans_changed += record_values(session, self.catalogue, chunk, now)
                    del self._pending[:BATCH_READINGS]
                if self._events_due or now >= self._next_look_ms:
                    while (read := catch_up_events(session, now)) > 0:
                        self.stats.events_read += read
                    self._events_due = False
                if now >= self._next_look_ms:
                    full = now >= self._next_full_ms
                    self.stats.spans_changed += reconcile_values(
                        session, self.catalogue, now, full=full
                    )
                    self.stats.looks += 1
                    self._next_look_ms = now + round(self.interval_s * 1000)
                    if full:
                        self._next_full_ms = now + FULL_LOOK_MS
        except SQLAlchemyError:
            self.stats.db_errors += 1
            log.exception("condition recorder: database error; retrying on the next round")
            self._stopping.wait(min(self.interval_s, 1.0))

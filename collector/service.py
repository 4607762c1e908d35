"""The collector process: MQTT source → inbox → writer thread → ack → listeners."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from collector.client import BrokerAddress, MqttSource
from collector.decode import Decoder, RegisteredDevice
from collector.inbox import Inbox, Item, Received
from collector.metrics import IngestMetrics
from collector.presence import DeviceStates
from collector.writer import Writer
from core.catalogue import Catalogue
from core.contract import now_ms
from core.ingest import BatchListener, IngestStatus
from core.models import Device
from core.readings import ReadingsStore
from core.settings import Settings

log = logging.getLogger(__name__)
REGISTER_REFRESH_S = 10.0
RETRY_MAX_S = 10.0


def load_register(engine: Engine) -> dict[str, RegisteredDevice]:
    with engine.connect() as connection:
        rows = connection.execute(select(Device.id, Device.site_id, Device.type))
        return {device_id: RegisteredDevice(site, kind) for device_id, site, kind in rows}


class Collector:
    """Owns the broker connection and the writer thread. Construct, then start(); stop()."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        readings: ReadingsStore,
        catalogue: Catalogue,
        address: BrokerAddress,
        metrics: IngestMetrics | None = None,
        listeners: Sequence[BatchListener] = (),
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.readings = readings
        self.catalogue = catalogue
        self.address = address
        self.metrics = metrics or IngestMetrics()
        self.listeners = list(listeners)
        self.inbox = Inbox(settings.queue_max, on_full=self.metrics.queue_full.inc)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: MqttSource | None = None
        self._writer: Writer | None = None
        self._last_message_ms: int | None = None

    def add_listener(self, listener: BatchListener) -> None:
        """Add a downstream listener; call before start()."""
        self.listeners.append(listener)

    def start(self) -> None:
        heartbeat = {n: t.heartbeat_s * 1000 for n, t in self.catalogue.device_types.items()}
        register = load_register(self.engine)
        decoder = Decoder(self.catalogue, register, self.settings.max_reading_age_s * 1000)
        states = DeviceStates(heartbeat)
        with self.engine.begin() as connection:
            states.load(connection, list(register))
        self._writer = Writer(
            self.engine, self.readings, decoder, states, self.metrics, self.listeners
        )
        states.all_unknown(now_ms(), "startup")
        self._writer.notify(self._writer.write([], now_ms()).committed)
        self._source = MqttSource(
            self.address,
            self.settings.mqtt_client_id,
            self.inbox,
            self.metrics,
            self.settings.mqtt_protocol,
            self.settings.mqtt_shared_group,
            self.settings.mqtt_session_expiry_s,
        )
        self._thread = threading.Thread(target=self._run, name="collector-writer", daemon=True)
        self._thread.start()
        self._source.start()

    def stop(self) -> None:
        """Disconnect, write what is already received, and stop. Unacked messages stay with
        the broker's session and are delivered again on the next start (stored once)."""
        if self._source is not None:
            self._source.stop()
        self._stop.set()
        self.inbox.close()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._thread = None

    def status(self) -> IngestStatus:
        m = self.metrics
        dead = {
            s.labels["reason"]: int(s.value)
            for metric in m.dead_letters.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        }
        stored = sum(
            int(s.value)
            for metric in m.stored.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        )
        return IngestStatus(
            broker_connected=bool(self._source and self._source.connected),
            broker=self.address.display(),
            queue_depth=len(self.inbox),
            queue_max=self.inbox.maxsize,
            messages_in=int(m.messages_in._value.get()),
            stored=stored,
            duplicates=int(m.duplicates._value.get()),
            dead_letters=dead,
            last_message_ms=self._last_message_ms,
        )

    def _run(self) -> None:
        assert self._writer is not None
        writer = self._writer
        settings = self.settings
        linger = settings.flush_interval_ms / 1000
        next_sweep = time.monotonic() + settings.presence_sweep_s
        next_refresh = time.monotonic() + REGISTER_REFRESH_S
        while True:
            items, urgent = self.inbox.take(settings.batch_size, linger)
            self.metrics.queue_depth.set(len(self.inbox))
            self._note_last_message(items)
            now = time.monotonic()
            sweep = now >= next_sweep
            if sweep:
                next_sweep = now + settings.presence_sweep_s
            if now >= next_refresh:
                next_refresh = now + REGISTER_REFRESH_S
                self._refresh_register(writer)
            if items or sweep:
                self._commit(writer, items, sweep, urgent)
            elif self._stop.is_set() and not len(self.inbox):
                return

    def _note_last_message(self, items: list[Item]) -> None:
        for item in reversed(items):
            if isinstance(item, Received):
                self._last_message_ms = item.received_ms
                return

    def _commit(self, writer: Writer, items: list[Item], sweep: bool, urgent: bool) -> None:
        delay = 0.2
        while True:
            try:
                written = writer.write(
                    items,
                    now_ms(),
                    sweep,
                    urgent=urgent,
                    yield_to=None if urgent else self._urgent_waits,
                    take_urgent=self.inbox.take_urgent,
                )
                break
            except SQLAlchemyError as exc:
                # an outage is not a bug: its message, not a traceback that pins connections
                log.error(
                    "writing a batch of %d failed, retrying in %.1f s: %s",
                    len(items),
                    delay,
                    str(exc).splitlines()[0],
                )
                if self._stop.wait(delay):
                    return  # not acknowledged: the broker delivers these again
                delay = min(delay * 2, RETRY_MAX_S)
                self._reload_states(writer)
        self.inbox.requeue(written.deferred)
        if self._source is not None:
            self._source.ack(written.done)
        writer.notify(written.committed)

    def _urgent_waits(self) -> bool:
        """Whether a telemetry transaction should commit early: an event or status message
        waits in the inbox, or another writer of this process has an alert to store."""
        assert self._writer is not None
        return self.inbox.has_urgent() or self._writer.gate.urgent_waiting

    def _reload_states(self, writer: Writer) -> None:
        try:
            with self.engine.begin() as connection:
                writer.states.load(connection, list(writer.decoder.register))
        except SQLAlchemyError:
            log.warning("database still unavailable")

    def _refresh_register(self, writer: Writer) -> None:
        """Pick up devices imported while running."""
        try:
            register = load_register(self.engine)
        except SQLAlchemyError:
            log.warning("could not refresh the device register")
            return
        if register.keys() != writer.decoder.register.keys():
            with self.engine.begin() as connection:
                writer.states.load(connection, list(register))
        writer.decoder.register = register

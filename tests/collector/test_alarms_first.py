"""Fire alarms first (GB 26875.1): an alarm never waits behind a whole batch of telemetry.

The writer stores a telemetry batch a chunk at a time and commits early when urgent work
waits; the rest goes back to the front of the inbox. Writers of one process share a gate
to their SQLite file, urgent ones first. Real SQLite files and PostgreSQL, no broker: the
items are handed to the writer as the MQTT thread would hand them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from collector.decode import Decoder
from collector.inbox import Control, Inbox, Item, Received
from collector.metrics import IngestMetrics
from collector.presence import DeviceStates
from collector.service import load_register
from collector.writer import CHUNK, Writer
from core.catalogue import load_catalogue
from core.contract import encode_event, encode_telemetry, now_ms, topic_for
from core.db import WriteGate, make_engine, write_gate
from core.readings import SqlReadingsStore
from tests.builders import make_site
from tests.collector.helpers import count
from tests.conftest import unique


@pytest.fixture
def park(db_url: str) -> Iterator[tuple[Engine, str]]:
    engine = make_engine(db_url)
    site = unique("s")
    make_site(engine, site, {f"{site}-env": "warehouse_env", f"{site}-sd": "smoke_detector"})
    yield engine, site
    engine.dispose()


def writer_for(engine: Engine) -> Writer:
    catalogue = load_catalogue()
    register = load_register(engine)
    heartbeat = {n: t.heartbeat_s * 1000 for n, t in catalogue.device_types.items()}
    states = DeviceStates(heartbeat)
    with engine.begin() as connection:
        states.load(connection, list(register))
    decoder = Decoder(catalogue, register, 24 * 3600 * 1000)
    return Writer(engine, SqlReadingsStore(engine), decoder, states, IngestMetrics())


def telemetry(site: str, n: int, start_mid: int = 1) -> list[Item]:
    t0 = now_ms() - n
    topic = topic_for(site, f"{site}-env", "telemetry")
    return [
        Received(topic, encode_telemetry(t0 + i, i, {"temperature_c": 20.0 + i % 7}), mid, 1, t0)
        for i, mid in enumerate(range(start_mid, start_mid + n))
    ]


def alarm(site: str, mid: int) -> Received:
    payload = encode_event(now_ms(), 1, "fire_alarm", {"loop": 1})
    return Received(topic_for(site, f"{site}-sd", "event"), payload, mid, 1, now_ms())


def readings(engine: Engine, site: str) -> int:
    return count(engine, "select count(*) from readings where device_id = :d", d=f"{site}-env")


def test_a_batch_yields_to_urgent_work_after_one_chunk_and_nothing_is_lost_or_doubled(
    park: tuple[Engine, str],
) -> None:
    engine, site = park
    writer = writer_for(engine)
    items = telemetry(site, 3 * CHUNK + 10)
    asked: list[int] = []

    def urgent_waits() -> bool:
        asked.append(1)
        return True

    first = writer.write(items, now_ms(), yield_to=urgent_waits)
    assert len(asked) == 1, "asked once, after the first chunk"
    assert first.done == items[:CHUNK]
    assert first.deferred == items[CHUNK:]
    assert len(first.committed.telemetry) == CHUNK
    assert readings(engine, site) == CHUNK

    second = writer.write(first.deferred, now_ms(), yield_to=lambda: False)
    assert second.deferred == []
    assert second.done == items[CHUNK:]
    assert len(second.committed.telemetry) == len(items) - CHUNK
    assert readings(engine, site) == len(items)

    again = writer.write(items, now_ms())  # the broker redelivers all: stored once
    assert again.committed.telemetry == []
    assert readings(engine, site) == len(items)


def test_an_alarm_in_the_inbox_cuts_a_telemetry_batch_short(park: tuple[Engine, str]) -> None:
    engine, site = park
    writer = writer_for(engine)
    inbox = Inbox(100_000)
    items = telemetry(site, 4 * CHUNK)
    for item in items:
        inbox.put(item)
    batch, urgent = inbox.take(len(items), linger_s=0)
    assert not urgent and len(batch) == len(items)
    inbox.put(alarm(site, 99_999))  # arrives while the batch is being written

    written = writer.write(batch, now_ms(), yield_to=inbox.has_urgent)
    inbox.requeue(written.deferred)
    assert len(written.done) == CHUNK

    taken, urgent = inbox.take(len(items), linger_s=10)
    assert urgent and [i.mid for i in taken if isinstance(i, Received)] == [99_999]
    stored = writer.write(taken, now_ms(), urgent=True)
    assert [e.event for e in stored.committed.events] == ["fire_alarm"]

    rest, urgent = inbox.take(len(items), linger_s=10)  # due at once: no linger
    assert not urgent and rest == items[CHUNK:]
    writer.write(rest, now_ms())
    assert readings(engine, site) == len(items)


def test_an_urgent_batch_is_written_whole() -> None:
    inbox = Inbox(10)
    controls: list[Item] = [Control("connected", i) for i in range(3)]
    inbox.requeue(controls)
    taken, urgent = inbox.take(10, linger_s=0)
    assert urgent and taken == controls


def test_requeue_keeps_order_and_never_blocks_a_full_inbox() -> None:
    inbox = Inbox(2)
    waiting = telemetry("s", 2)
    for item in waiting:
        inbox.put(item)
    back = telemetry("s", 3, start_mid=100)
    inbox.requeue(back)  # over maxsize: these were counted once already
    assert len(inbox) == 5
    taken, _ = inbox.take(10, linger_s=10)
    assert taken == back + waiting


def test_the_gate_lets_an_urgent_writer_go_before_waiting_telemetry() -> None:
    gate = WriteGate()
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def writer(name: str, urgent: bool, started: threading.Event) -> None:
        started.set()
        with gate.hold(urgent):
            order.append(name)

    def holder() -> None:
        with gate.hold():
            holding.set()
            release.wait(10)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    assert holding.wait(10)
    for name, urgent in (("telemetry", False), ("alert", True)):
        started = threading.Event()
        thread = threading.Thread(target=writer, args=(name, urgent, started))
        thread.start()
        started.wait(10)
        threads.append(thread)
    for _ in range(1000):  # the urgent writer has queued (it shows) before the release
        if gate.urgent_waiting:
            break
        threading.Event().wait(0.01)
    assert gate.urgent_waiting
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["alert", "telemetry"]
    assert not gate.urgent_waiting


def test_engines_on_one_sqlite_file_share_a_gate_and_postgresql_has_none(
    sqlite_url: str, pg_url: str
) -> None:
    engines: list[Any] = [make_engine(sqlite_url), make_engine(sqlite_url), make_engine(pg_url)]
    try:
        a, b, pg = (write_gate(e) for e in engines)
        assert a is b and a.exclusive
        assert not pg.exclusive
        with pg.hold(), pg.hold(urgent=True):  # no waiting at all
            pass
    finally:
        for engine in engines:
            engine.dispose()

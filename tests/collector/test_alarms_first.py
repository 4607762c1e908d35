"""Fire alarms first (GB 26875.1): an alarm never waits behind a whole batch of telemetry.

The writer looks for urgent work before each telemetry message it reads; when an alarm
waits it stores it in the same transaction and commits early; the rest goes back to the
front of the inbox. Writers of one process share a gate
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
from core.contract import encode_event, encode_status, encode_telemetry, now_ms, topic_for
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


def events(engine: Engine, site: str) -> int:
    return count(engine, "select count(*) from device_events where device_id = :d", d=f"{site}-sd")


def test_a_batch_yields_to_urgent_work_within_one_message_and_nothing_is_lost_or_doubled(
    park: tuple[Engine, str],
) -> None:
    engine, site = park
    writer = writer_for(engine)
    items = telemetry(site, 3 * CHUNK + 10)
    asked: list[int] = []

    def urgent_after_seven() -> bool:
        asked.append(1)
        return len(asked) >= 7

    first = writer.write(items, now_ms(), yield_to=urgent_after_seven)
    assert len(asked) == 7, "asked before each message but the first"
    assert first.done == items[:7]
    assert first.deferred == items[7:]
    assert len(first.committed.telemetry) == 7
    assert readings(engine, site) == 7

    second = writer.write(first.deferred, now_ms(), yield_to=lambda: False)
    assert second.deferred == []
    assert second.done == items[7:]
    assert len(second.committed.telemetry) == len(items) - 7
    assert readings(engine, site) == len(items)

    again = writer.write(items, now_ms())  # the broker redelivers all: stored once
    assert again.committed.telemetry == []
    assert readings(engine, site) == len(items)


def test_a_batch_always_stores_its_first_message(park: tuple[Engine, str]) -> None:
    engine, site = park
    writer = writer_for(engine)
    items = telemetry(site, 3)
    written = writer.write(items, now_ms(), yield_to=lambda: True)
    assert written.done == items[:1] and written.deferred == items[1:]
    assert readings(engine, site) == 1


def test_an_alarm_arriving_during_a_batch_joins_its_commit(park: tuple[Engine, str]) -> None:
    engine, site = park
    writer = writer_for(engine)
    inbox = Inbox(100_000)
    items = telemetry(site, 4 * CHUNK)
    for item in items:
        inbox.put(item)
    batch, urgent = inbox.take(len(items), linger_s=0)
    assert not urgent and len(batch) == len(items)
    fire = alarm(site, 99_999)
    asked: list[int] = []

    def alarm_arrives() -> bool:
        asked.append(1)
        if len(asked) == CHUNK + 5:  # the MQTT thread hands it over while the batch is written
            inbox.put(fire)
        return inbox.has_urgent()

    written = writer.write(batch, now_ms(), yield_to=alarm_arrives, take_urgent=inbox.take_urgent)
    inbox.requeue(written.deferred)
    read = CHUNK + 5
    assert written.done == [*batch[:read], fire]
    assert [e.event for e in written.committed.events] == ["fire_alarm"]
    assert events(engine, site) == 1, "the alarm is committed with the telemetry read so far"
    assert readings(engine, site) == read

    rest, urgent = inbox.take(len(items), linger_s=10)  # due at once: no linger
    assert not urgent and rest == items[read:]
    writer.write(rest, now_ms())
    assert readings(engine, site) == len(items)


def test_an_alert_waiting_for_the_file_ends_a_batch_without_taking_anything_in(
    park: tuple[Engine, str],
) -> None:
    engine, site = park
    writer = writer_for(engine)
    items = telemetry(site, 2 * CHUNK)
    taken: list[int] = []

    def take_urgent() -> list[Item]:
        taken.append(1)
        return []

    written = writer.write(items, now_ms(), yield_to=lambda: True, take_urgent=take_urgent)
    assert taken == [1] and written.done == items[:1] and written.deferred == items[1:]


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


def test_engines_on_one_database_share_its_gate_exclusive_on_sqlite_shared_on_postgresql(
    sqlite_url: str, pg_url: str
) -> None:
    other_user = pg_url.replace("postgres@", "someone:secret@")
    engines: list[Any] = [make_engine(u) for u in (sqlite_url, sqlite_url, pg_url, other_user)]
    try:
        a, b, pg, pg_too = (write_gate(e) for e in engines)
        assert a is b and a.exclusive
        assert pg is pg_too and not pg.exclusive
        assert write_gate(make_engine(pg_url.rsplit("/", 1)[0] + "/test")) is not pg
        with pg.hold(), pg.hold(), pg.hold(urgent=True):  # writers go together
            pass
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("exclusive", [True, False], ids=["sqlite", "postgresql"])
def test_telemetry_waits_for_an_announced_alert_until_it_is_settled(exclusive: bool) -> None:
    """Between an alarm's commit and its alert's write the rules service announces the alert
    (``expect_urgent``): a telemetry batch must not take the file in that gap. PostgreSQL's
    writers need no turns, but one process's writers share an interpreter: a telemetry batch
    decoded meanwhile would slow the alert it competes with."""
    gate = WriteGate(exclusive)
    gate.expect_urgent()
    entered = threading.Event()

    def telemetry_writer() -> None:
        with gate.hold():
            entered.set()

    thread = threading.Thread(target=telemetry_writer)
    thread.start()
    assert gate.urgent_waiting
    assert not entered.wait(0.2), "telemetry went ahead of an announced alert"
    with gate.hold(urgent=True):  # the alert itself is not held up by its own announcement
        pass
    gate.urgent_settled()
    assert entered.wait(10)
    thread.join(10)
    assert not gate.urgent_waiting


def copy_of(item: Received, mid: int) -> Received:
    """The bulk connection's copy of an alarm-connection message."""
    return Received(item.topic, item.payload, mid, item.qos, item.received_ms, copy=True)


def test_an_alarm_and_its_bulk_copy_are_stored_once_and_not_counted_as_duplicates(
    park: tuple[Engine, str],
) -> None:
    engine, site = park
    writer = writer_for(engine)
    fire = alarm(site, 1)
    first = writer.write([fire], now_ms(), urgent=True)
    later = writer.write([*telemetry(site, 3, start_mid=10), copy_of(fire, 2)], now_ms())
    assert [e.event for e in first.committed.events] == ["fire_alarm"]
    assert later.committed.events == [], "the copy is the same alarm"
    assert len(later.done) == 4, "the copy is acknowledged with its batch"
    assert events(engine, site) == 1
    assert writer.metrics.duplicates._value.get() == 0


def test_a_bulk_copy_stores_an_alarm_its_own_connection_never_got(
    park: tuple[Engine, str],
) -> None:
    """After an upgrade the alarm connection's session is new: alarms queued while the
    collector was down are only in the bulk connection's session."""
    engine, site = park
    writer = writer_for(engine)
    fire = alarm(site, 1)
    written = writer.write([copy_of(fire, 1)], now_ms())
    assert [e.event for e in written.committed.events] == ["fire_alarm"]
    again = writer.write([fire], now_ms(), urgent=True)  # it may come after all
    assert again.committed.events == []
    assert events(engine, site) == 1


def test_a_bulk_copy_read_first_in_a_transaction_still_updates_the_device(
    park: tuple[Engine, str],
) -> None:
    engine, site = park
    writer = writer_for(engine)
    fault = Received(
        topic_for(site, f"{site}-sd", "event"),
        encode_event(now_ms(), 7, "fault"),
        1,
        1,
        now_ms(),
    )
    written = writer.write([copy_of(fault, 2), fault], now_ms())
    assert [e.event for e in written.committed.events] == ["fault"]
    assert writer.states.states[f"{site}-sd"].fault is True
    assert writer.metrics.duplicates._value.get() == 0


def test_bulk_copies_of_status_and_broken_messages_leave_no_trace(
    park: tuple[Engine, str],
) -> None:
    """Presence and dead letters come from the alarm connection's copy only: a late copy of
    an old 'offline' must not undo a newer 'online'."""
    engine, site = park
    writer = writer_for(engine)
    device = f"{site}-sd"
    offline = Received(topic_for(site, device, "status"), encode_status(now_ms(), False), 1, 1, 0)
    online = Received(topic_for(site, device, "status"), encode_status(now_ms(), True), 2, 1, 0)
    broken = Received(topic_for(site, device, "event"), b"{not json", 3, 1, now_ms())
    writer.write([offline, online], now_ms(), urgent=True)
    writer.write([copy_of(offline, 4), copy_of(broken, 5)], now_ms())
    assert writer.states.states[device].presence == "online"
    assert count(engine, "select count(*) from dead_letters where device_id = :d", d=device) == 0

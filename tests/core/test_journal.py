"""core.journal.JournalBus on SQLite and PostgreSQL: two alert stores on one database stand for
two processes; each one's bus carries every journaled change once, in seq order, its own changes
as its store made them, and a repeat (no seq) only where it was made."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from core.journal import JournalBus
from rules.alerts import AlertChange, AlertStore
from rules.engine import Raise
from tests.collector.helpers import wait_for
from tests.rules.builders import SITE, rule, ruleset


def rules() -> Any:
    return ruleset(rule(id="fire", kind="event", events=["fire_alarm"], severity="critical"))


def up(device: str) -> Raise:
    return Raise("fire", f"device:{device}", "critical", 1_700_000_000_000, SITE, device, "w1", {})


class Process:
    """One store with a JournalBus, and what its bus published."""

    def __init__(self, url: str, poll_s: float | None = None) -> None:
        self.bus: JournalBus[AlertChange] = JournalBus("parkguard_alerts", url, poll_s=poll_s)
        self.store = AlertStore(url, rules(), self.bus)
        self.seen: list[AlertChange] = []
        self._lock = threading.Lock()
        self.bus.subscribe(self._on_change)

    def _on_change(self, change: AlertChange) -> None:
        with self._lock:
            self.seen.append(change)

    def seqs(self) -> list[int]:
        with self._lock:
            return [c.seq for c in self.seen if c.seq is not None]

    def start(self) -> None:
        self.store.open()
        self.bus.start(self.store)

    def stop(self) -> None:
        self.bus.stop()
        self.store.close()


@pytest.fixture
def two(db_url: str) -> Iterator[tuple[Process, Process]]:
    processes = Process(db_url), Process(db_url)
    for process in processes:
        process.start()
    yield processes
    for process in processes:
        process.stop()


def journal(store: AlertStore) -> list[int]:
    return [c.seq for c in store.changes_since(0, 10_000) if c.seq is not None]


def test_each_process_publishes_every_change_once_in_seq_order(
    two: tuple[Process, Process],
) -> None:
    rules_side, api_side = two
    raised = rules_side.store.apply([up("smoke1")])
    alert_id = raised[0].alert["id"]
    api_side.store.acknowledge(alert_id, "wang")
    api_side.store.resolve(alert_id, "wang", "false alarm: dust")
    rules_side.store.apply([up("smoke2")])

    expected = journal(rules_side.store)
    assert len(expected) == 4
    for process in two:
        wait_for(lambda p=process: p.seqs() == expected, timeout=10, what="every change")
    # the other side's changes came from the journal, the own ones from the store itself
    assert [c.action for c in api_side.seen] == ["raised", "acknowledged", "resolved", "raised"]
    assert rules_side.bus.followed == 2 and api_side.bus.followed == 2
    resolved = next(c for c in rules_side.seen if c.action == "resolved")
    assert resolved.actor == "wang" and resolved.note == "false alarm: dust"


def test_concurrent_writers_in_two_processes_reach_both_buses_in_seq_order(
    two: tuple[Process, Process],
) -> None:
    """The advisory lock (PostgreSQL) and BEGIN IMMEDIATE (SQLite) commit journal seqs in seq
    order, so a follower never steps over a seq that commits later."""
    rules_side, api_side = two
    alerts = [rules_side.store.apply([up(f"d{i}")])[0].alert["id"] for i in range(24)]

    def person(alert_id: int) -> None:
        api_side.store.acknowledge(alert_id, "li")

    def engine(i: int) -> None:
        rules_side.store.apply([up(f"n{i}")])

    with ThreadPoolExecutor(6) as pool:
        jobs = [pool.submit(person, a) for a in alerts]
        jobs += [pool.submit(engine, i) for i in range(24)]
        for job in jobs:
            job.result()

    expected = journal(rules_side.store)
    assert len(expected) == 72
    for process in two:
        wait_for(lambda p=process: p.seqs() == expected, timeout=20, what="every change, in order")


def test_a_repeat_has_no_seq_and_crosses_processes_on_postgresql_only(
    two: tuple[Process, Process], db_url: str
) -> None:
    """On PostgreSQL the writing transaction's notification names the repeated alert and the
    follower reads it back; SQLite's polling follower sees only the journal."""
    rules_side, api_side = two
    rules_side.store.apply([up("smoke1")])
    rules_side.store.apply([up("smoke1")])  # the same open alert again: count 2, no journal row
    rules_side.store.apply([up("smoke9")])

    wait_for(lambda: len(api_side.seqs()) == 2, timeout=10, what="both raises")
    assert [c.action for c in rules_side.seen] == ["raised", "repeated", "raised"]
    if not db_url.startswith("postgresql"):
        assert [c.action for c in api_side.seen] == ["raised", "raised"]
        return
    wait_for(lambda: len(api_side.seen) == 3, timeout=10, what="the repeat")
    repeat = next(c for c in api_side.seen if c.action == "repeated")
    assert repeat.seq is None and not repeat.notify  # not sent on MQTT or webhooks again
    assert (repeat.alert["device"], repeat.alert["count"]) == ("smoke1", 2)
    assert api_side.bus.followed == 3


def test_a_repeat_of_an_alert_resolved_since_is_not_shown_and_bad_refs_are_none(
    pg_url: str,
) -> None:
    from core.journal import _refs

    process = Process(pg_url)
    process.start()
    try:
        process.store.apply([up("smoke1")])
        alert_id = process.seen[0].alert["id"]
        assert [c.alert["count"] for c in process.store.repeated([alert_id, alert_id])] == [1]
        process.store.resolve(alert_id, "wang", "false alarm: dust")
        assert process.store.repeated([alert_id, 999_999]) == []
    finally:
        process.stop()
    assert _refs("1,2,x,,-3,99999999999999999999,7") == [1, 2, 7]


def test_history_before_the_start_is_not_published_again(db_url: str) -> None:
    writer = Process(db_url)
    writer.start()
    try:
        writer.store.apply([up("old")])
        late = Process(db_url)
        late.start()
        try:
            writer.store.apply([up("new")])
            wait_for(lambda: len(late.seqs()) == 1, timeout=10, what="the new raise")
            assert late.seen[0].alert["device"] == "new"
            assert late.bus.cursor == writer.bus.cursor == journal(writer.store)[-1]
        finally:
            late.stop()
    finally:
        writer.stop()


def test_a_notification_wakes_the_follower_before_its_poll(pg_url: str) -> None:
    """On PostgreSQL the store's NOTIFY wakes the other process's follower: with a poll of a
    minute, the change still arrives (within the test's generous wait)."""
    rules_side, api_side = Process(pg_url, poll_s=60), Process(pg_url, poll_s=60)
    for process in (rules_side, api_side):
        process.start()
    try:
        wait_for(lambda: api_side.bus.followed == 0, timeout=1, what="started")
        rules_side.store.apply([up("smoke1")])
        wait_for(lambda: len(api_side.seqs()) == 1, timeout=20, what="woken by NOTIFY")
    finally:
        for process in (rules_side, api_side):
            process.stop()


def test_only_a_journal_bus_store_notifies(pg_url: str) -> None:
    """``parkguard serve`` keeps the plain Bus: its store sends no NOTIFY. Notifications arrive
    in commit order, so one from a later commit shows that the earlier one sent none."""
    import psycopg

    listening = psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True)
    listening.execute("LISTEN parkguard_alerts")
    plain = AlertStore(pg_url, rules())
    journaled = Process(pg_url)
    plain.open()
    journaled.start()
    try:
        plain.apply([up("serve")])
        journaled.store.apply([up("split")])
        notes = list(listening.notifies(timeout=10, stop_after=1))
        assert [n.payload for n in notes] == [journaled.bus.token]
        assert list(listening.notifies(timeout=0.5)) == []
    finally:
        plain.close()
        journaled.stop()
        listening.close()


def test_a_slow_commit_in_one_process_is_not_overtaken_in_the_other(pg_url: str) -> None:
    """A person's acknowledgement whose commit takes long (a test trigger sleeps after its
    journal row is inserted) and an alarm raised meanwhile in the other process: without the
    advisory lock the alarm's seq would commit first and the rules side, having published it,
    would never publish the acknowledgement's lower seq."""
    from sqlalchemy import text

    from core.db import make_engine

    engine = make_engine(pg_url)
    with engine.begin() as c:
        c.execute(
            text(
                "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$"
            )
        )
        c.execute(
            text(
                "CREATE TRIGGER slow AFTER INSERT ON alert_journal FOR EACH ROW "
                "WHEN (NEW.actor = 'slow') EXECUTE FUNCTION slow()"
            )
        )
    engine.dispose()
    rules_side, api_side = Process(pg_url), Process(pg_url)
    for process in (rules_side, api_side):
        process.start()
    try:
        alert_id = rules_side.store.apply([up("smoke1")])[0].alert["id"]
        wait_for(lambda: len(api_side.seqs()) == 1, timeout=10, what="the first raise")
        slow = threading.Thread(target=api_side.store.acknowledge, args=(alert_id, "slow"))
        slow.start()
        wait_for(lambda: journal_rows(pg_url) == 2, timeout=10, what="the slow row inserted")
        rules_side.store.apply([up("smoke2")])
        slow.join()
        expected = journal(rules_side.store)
        assert len(expected) == 3
        for process in (rules_side, api_side):
            wait_for(lambda p=process: p.seqs() == expected, timeout=10, what="all, in order")
    finally:
        for process in (rules_side, api_side):
            process.stop()


def journal_rows(url: str) -> int:
    """Rows in alert_journal, committed or not (an estimate from the sequence)."""
    from sqlalchemy import text

    from core.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(text("SELECT last_value FROM alert_journal_id_seq")).scalar_one())
    finally:
        engine.dispose()


def test_the_follower_comes_back_when_its_connection_is_cut(pg_url: str) -> None:
    """PostgreSQL restarting, or a proxy dropping idle connections: the LISTEN connection
    dies; the follower counts it, reconnects, and catches up on what it missed."""
    from sqlalchemy import text

    from core.db import make_engine

    two = Process(pg_url), Process(pg_url)
    rules_side, api_side = two
    for process in two:
        process.start()
    try:
        rules_side.store.apply([up("before")])
        wait_for(lambda: len(api_side.seqs()) == 1, timeout=10, what="the first raise")
        killer = make_engine(pg_url)
        with killer.connect() as c:
            c.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        killer.dispose()
        rules_side.store.apply([up("after")])
        wait_for(lambda: len(api_side.seqs()) == 2, timeout=30, what="the raise after the cut")
        assert api_side.bus.errors >= 1
        assert api_side.seqs() == journal(rules_side.store)
    finally:
        for process in two:
            process.stop()

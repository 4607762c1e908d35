"""What the alert and incident stores share: an engine to write with and one to read with,
write transactions that journal changes and publish them on the store's bus after the commit,
in commit order, and the urgency their writes have over telemetry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.bus import Bus
from core.contract import now_ms
from core.db import WriteGate, make_engine, write_gate
from core.journal import Journaled, journal_order

C = TypeVar("C", bound=Journaled)
R = TypeVar("R")


@dataclass(slots=True)
class Tx(Generic[C]):
    """What one transaction produced, published after its commit."""

    now_ms: int
    changes: list[C] = field(default_factory=list)


def write_engine(url: str) -> Engine:
    """An engine whose transactions take the write lock at BEGIN on SQLite (BEGIN IMMEDIATE),
    so two writers never deadlock upgrading a read lock; PostgreSQL is left as it is."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":

        def no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        def begin_immediate(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        event.listen(engine, "connect", no_driver_transactions)
        event.listen(engine, "begin", begin_immediate)
    return engine


class JournaledStore(Generic[C]):
    """A store of journaled changes. Construct, ``open()``, use from any thread, ``close()``.

    Writes are serialised in this process so that changes reach the bus in commit order, and
    they are urgent: they go before this process's telemetry (``core.db.WriteGate``)."""

    def __init__(
        self, url: str, bus: Bus[C] | None = None, clock: Callable[[], int] = now_ms
    ) -> None:
        self.url = url
        self.bus: Bus[C] = bus if bus is not None else Bus()
        self.clock = clock
        self._lock = threading.Lock()
        self._writer: Engine | None = None
        self._reader: Engine | None = None
        self._write: sessionmaker[Session] | None = None
        self._read: sessionmaker[Session] | None = None
        self._gate: WriteGate | None = None

    def open(self) -> None:
        self._writer = write_engine(self.url)
        self._gate = write_gate(self._writer)
        self._write = sessionmaker(self._writer, expire_on_commit=False)
        if self._writer.dialect.name == "sqlite":
            self._reader = make_engine(self.url)
        else:
            self._reader = self._writer
        self._read = sessionmaker(self._reader, expire_on_commit=False)

    def close(self) -> None:
        for engine in {id(e): e for e in (self._writer, self._reader) if e is not None}.values():
            engine.dispose()
        self._writer = self._reader = None
        self._write = self._read = None

    @property
    def gate(self) -> WriteGate:
        """This process's write gate to the store's database (``core.db.WriteGate``)."""
        assert self._gate is not None, self._not_open()
        return self._gate

    @property
    def write_lock(self) -> threading.Lock:
        """Held across each write transaction and the publishing of its changes (a
        ``core.journal.JournalBus`` reads other processes' changes under it)."""
        return self._lock

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session (no write lock taken on SQLite)."""
        assert self._read is not None, self._not_open()
        with self._read() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A write transaction that publishes nothing (e.g. a webhook dead letter)."""
        assert self._write is not None, self._not_open()
        with self.gate.hold(urgent=True), self._write() as session, session.begin():
            yield session

    def _transaction(self, work: Callable[[Session, Tx[C]], R]) -> R:
        """Run ``work`` in one write transaction; publish its changes after the commit."""
        assert self._write is not None, self._not_open()
        with self._lock:
            tx: Tx[C] = Tx(self.clock())
            with (
                self.gate.hold(urgent=True),
                self._write() as session,
                session.begin(),
                journal_order(self.bus, session, tx.changes, self._repeat_ref),
            ):
                result = work(session, tx)
            for change in tx.changes:
                self.bus.publish(change)
        return result

    def repeated(self, refs: Sequence[int]) -> list[C]:
        """Changes another process made without journaling them (``_repeat_ref``), read back
        as they stand now, for a ``core.journal.JournalBus`` follower. None by default."""
        return []

    def _repeat_ref(self, change: C) -> int | None:
        """What names an unjournaled change that other processes should see too."""
        return None

    def _not_open(self) -> str:
        return f"{type(self).__name__}.open() first"

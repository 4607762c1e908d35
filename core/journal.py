"""A bus for a journal that several processes append to: every journaled change, once, in seq
order, in every process that follows it.

When ParkGuard runs as separate roles (``parkguard collect`` and ``parkguard api``), an alert or
incident transition is committed by one process while others must fan it out: the API's SSE
streams show the fire alarm the rules process raised, and the rules process forgets an alert a
person resolved in the API (and carries that on MQTT and webhooks). A ``JournalBus`` is the
``Bus`` such a store publishes on (``parkguard serve`` keeps the plain ``Bus``):

- Changes of this process (``publish``, called by the store after its commit) go out at once,
  so an alarm's fan-out waits for no poll; only when the bus has not yet published a lower seq
  (another process's change, committed before) does it read those first from the journal.
- A follower thread reads the journal after the last seq published (``changes_since``) and
  publishes what other processes committed. On PostgreSQL the store's transaction sends
  ``NOTIFY`` (delivered on commit), which wakes the follower at once; a poll every second is
  the safety net. On SQLite the follower polls every 200 ms.
- One cursor (the last seq published) means nothing is published twice and nothing out of
  order. The follower reads while holding the store's ``write_lock`` (which the store holds
  from the start of a write transaction until its changes are published), so every seq it
  finds after the cursor is another process's: this process's own changes always go out as the
  store made them (the alert as it was at that transition, its ``notify`` as the store chose).

That needs journal seqs to be committed in seq order. SQLite's one writer at a time (the stores
begin with ``BEGIN IMMEDIATE``) gives it; on PostgreSQL ``journal_order`` takes a transaction
advisory lock at the start of each of the store's write transactions, so the next seq is
allocated only after the previous transaction committed (and became visible). A seq burnt by a
rolled-back transaction is never seen and never waited for.

Changes without a seq (an alert repeat: count up, no journal row) cross processes on
PostgreSQL only: the store names them in its notification (``repeat_ref``), and a follower
reads them back as they stand (``Journal.repeated``) and publishes them after what it pulled.
On SQLite they are published only in the process that made them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.bus import Bus

log = logging.getLogger(__name__)
PAGE = 500
SQLITE_POLL_S = 0.2
PG_POLL_S = 1.0
PG_LISTEN_TICK_S = 0.25
"""How long one wait for a notification lasts: the bound on how long ``stop`` takes."""
RETRY_S = 1.0
REPEATED = " repeated "
"""Between a notification's token and the refs of the repeats it carries."""
REFS_PER_NOTIFY = 400
"""Refs in one notification: its payload must stay under PostgreSQL's 8,000 bytes."""


class Journaled(Protocol):
    @property
    def seq(self) -> int | None: ...


J = TypeVar("J", bound=Journaled)
J_co = TypeVar("J_co", bound=Journaled, covariant=True)


class Journal(Protocol[J_co]):
    """The store side: what the follower reads."""

    @property
    def write_lock(self) -> threading.Lock:
        """Held by the store across each write transaction and the publishing of its changes."""
        ...

    def changes_since(self, seq: int, limit: int = ...) -> Sequence[J_co]: ...

    def journal_head(self) -> int: ...

    def repeated(self, refs: Sequence[int]) -> Sequence[J_co]:
        """Another process's unjournaled changes (``repeat_ref``), as they stand now."""
        ...


class JournalBus(Bus[J]):
    """Construct with the journal's channel name and the database URL; hand it to the store as
    its bus; ``start(store)`` once the store is open; ``stop()`` before closing the store."""

    def __init__(self, channel: str, database_url: str, poll_s: float | None = None) -> None:
        super().__init__()
        self.channel = channel
        self.lock_key = zlib.crc32(channel.encode())
        self.token = uuid.uuid4().hex
        """The payload of this bus's notifications: its own follower need not wake on them."""
        self.database_url = database_url
        self.postgresql = database_url.startswith("postgresql")
        default_poll = PG_POLL_S if self.postgresql else SQLITE_POLL_S
        self.poll_s = poll_s if poll_s is not None else default_poll
        self.followed = 0
        """Changes of other processes published here."""
        self.errors = 0
        """Failed reads of the journal or of notifications; each is retried."""
        self._journal: Journal[J] | None = None
        self._cursor = 0
        self._failing = False
        self._order = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- life cycle --------------------------------------------------------------------------

    def start(self, journal: Journal[J]) -> None:
        """Follow ``journal`` from its head: what was committed before is history (the SSE
        streams replay it on Last-Event-ID), not news."""
        with journal.write_lock, self._order:
            self._cursor = max(self._cursor, journal.journal_head())
            self._journal = journal
        self._stop.clear()
        run = self._listen if self.postgresql else self._poll
        self._thread = threading.Thread(target=run, name=f"journal-{self.channel}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following; changes of this process are still published."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._order:
            self._journal = None

    @property
    def cursor(self) -> int:
        """The last seq published."""
        return self._cursor

    # ---- publishing --------------------------------------------------------------------------

    def publish(self, item: J) -> None:
        """A change this process committed: published now, after any lower seq not yet
        published (read from the journal), and never a second time."""
        seq = item.seq
        with self._order:
            if seq is None or self._journal is None:
                if seq is not None:
                    self._cursor = max(self._cursor, seq)
                super().publish(item)
                return
            if seq <= self._cursor:
                return  # published already (the write lock keeps the follower from it: defensive)
            if seq > self._cursor + 1:
                self._publish_journal(self._journal, until=seq)
            self._cursor = seq
            super().publish(item)

    def pull(self) -> int:
        """Publish what the journal holds after the cursor; return how many (the follower
        thread calls it on each wake-up)."""
        journal = self._journal
        if journal is None:
            return 0
        with journal.write_lock, self._order:
            if self._journal is None:
                return 0
            return self._publish_journal(self._journal, until=None)

    def _publish_journal(self, journal: Journal[J], until: int | None) -> int:
        """Under ``_order``: publish journaled changes after the cursor (and below ``until``)."""
        published = 0
        while True:
            page = journal.changes_since(self._cursor, PAGE)
            for item in page:
                seq = item.seq
                assert seq is not None
                if until is not None and seq >= until:
                    return published
                self._cursor = seq
                self.followed += 1
                published += 1
                super().publish(item)
            if len(page) < PAGE:
                return published

    # ---- the follower thread -----------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._pull_counted()

    def _listen(self) -> None:
        """LISTEN on the channel; pull on each notification and at least every ``poll_s``."""
        import psycopg
        from psycopg import sql

        conninfo = make_url(self.database_url).set(drivername="postgresql")
        dsn = conninfo.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self._pull_counted()  # after LISTEN: nothing committed before it is missed
                    last = time.monotonic()
                    while not self._stop.is_set():
                        woken, repeats = False, []
                        for note in connection.notifies(timeout=PG_LISTEN_TICK_S, stop_after=1):
                            token, _, refs = note.payload.partition(REPEATED)
                            if token != self.token:
                                woken = True
                                repeats += _refs(refs)
                        if woken or time.monotonic() - last >= self.poll_s:
                            self._pull_counted()
                            last = time.monotonic()
                        if repeats:
                            self._publish_repeats(repeats)
            except psycopg.Error as exc:
                self.errors += 1
                log.warning("journal %s: listening failed (%s); polling", self.channel, exc)
                if not self._stop.wait(RETRY_S):
                    self._pull_counted()

    def _publish_repeats(self, refs: list[int]) -> None:
        journal = self._journal
        if journal is None:
            return
        try:
            items = journal.repeated(refs)
        except SQLAlchemyError as exc:  # a count lost to an outage; the next repeat has it
            self.errors += 1
            log.warning("journal %s: reading repeats failed: %s", self.channel, exc)
            return
        with self._order:
            for item in items:
                self.followed += 1
                super().publish(item)

    def _pull_counted(self) -> None:
        try:
            self.pull()
        except SQLAlchemyError as exc:  # the database is away: the next wake-up tries again
            self.errors += 1
            if not self._failing:  # once per outage, not at every poll
                first = str(exc).splitlines()[0]
                log.warning("journal %s: reading failed, retrying: %s", self.channel, first)
            self._failing = True
            return
        if self._failing:
            log.info("journal %s: reading again", self.channel)
        self._failing = False


def _refs(text_refs: str) -> list[int]:
    """The refs of a repeat notification (``1,2,3``); anything else is no ref."""
    return [int(r) for r in text_refs.split(",") if r.isdigit() and len(r) <= 18]


@contextmanager
def journal_order(
    bus: Bus[Any],
    session: Session,
    changes: Sequence[J],
    repeat_ref: Callable[[J], int | None] = lambda _change: None,
) -> Iterator[None]:
    """Around the work of a store's write transaction (inside it): on PostgreSQL with a
    ``JournalBus``, take the journal's advisory lock first (journal seqs then commit in seq
    order, see the module docstring) and, if the work journaled anything, ``NOTIFY`` the
    followers (delivered on commit), naming the unjournaled changes that should cross
    processes too (``repeat_ref``). With a plain ``Bus`` or on SQLite it does nothing."""
    if not isinstance(bus, JournalBus) or not bus.postgresql:
        yield
        return
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": bus.lock_key})
    yield
    notify = text("SELECT pg_notify(:channel, :payload)")
    if any(change.seq is not None for change in changes):
        session.execute(notify, {"channel": bus.channel, "payload": bus.token})
    refs = list(dict.fromkeys(r for c in changes if (r := repeat_ref(c)) is not None))
    for start in range(0, len(refs), REFS_PER_NOTIFY):
        page = ",".join(map(str, refs[start : start + REFS_PER_NOTIFY]))
        session.execute(notify, {"channel": bus.channel, "payload": bus.token + REPEATED + page})

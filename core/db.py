"""Engines, sessions and schema migrations for the relational store."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SessionFactory = sessionmaker[Session]


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs; make the SQLite file's folder."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if "poolclass" not in kwargs:
        kwargs.update(pool_size=10, max_overflow=10)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL for concurrent readers; FULL sync so a committed batch survives a crash."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class WriteGate:
    """One process's writers to one database, urgent ones (alarms, alerts) first.

    SQLite lets one writer in at a time and makes the others poll with growing sleeps (5, 10,
    ... 25 ms), so an alarm's write could oversleep behind a batch of telemetry. Writers that
    share an exclusive gate take turns here instead and go the moment the file is free.

    PostgreSQL locks rows, not the database: its gate is shared, and writers go together. But
    the writers of one process share one interpreter lock, so a telemetry batch being decoded
    and inserted slows an alarm's alert by as much as it competes: there too, normal writers
    wait while urgent work is queued or announced, and a normal writer holding the gate can
    see it (``urgent_waiting``) and commit early.
    """

    def __init__(self, exclusive: bool = True) -> None:
        self.exclusive = exclusive
        self._cond = threading.Condition()
        self._held = 0
        self._urgent = 0

    @contextmanager
    def hold(self, urgent: bool = False) -> Iterator[None]:
        with self._cond:
            if urgent:
                self._urgent += 1
            try:
                while (self.exclusive and self._held) or (not urgent and self._urgent):
                    self._cond.wait()
            finally:
                if urgent:
                    self._urgent -= 1
            self._held += 1
        try:
            yield
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    def expect_urgent(self) -> None:
        """An urgent write is on its way but not queued yet (an alarm is committed and its
        alert is being decided): normal writers wait for it as for a queued urgent writer,
        until ``urgent_settled``. Otherwise a telemetry batch could take the file (or the
        interpreter) in the millisecond between the alarm's commit and its alert's write."""
        with self._cond:
            self._urgent += 1

    def urgent_settled(self) -> None:
        """The write announced by ``expect_urgent`` is done (or turned out not to be needed)."""
        with self._cond:
            self._urgent -= 1
            self._cond.notify_all()

    @property
    def urgent_waiting(self) -> bool:
        return self._urgent > 0


_gates: dict[str, WriteGate] = {}
_gates_lock = threading.Lock()


def write_gate(engine: Engine) -> WriteGate:
    """The gate of the database behind ``engine``, shared by every engine of this process on
    the same database: exclusive for a SQLite file, shared for a server."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database:
        key, exclusive = _file_key(url.database), True
    else:
        key, exclusive = f"{url.get_backend_name()}://{url.host}:{url.port}/{url.database}", False
    with _gates_lock:
        return _gates.setdefault(key, WriteGate(exclusive))


@functools.lru_cache(maxsize=64)
def _file_key(database: str) -> str:
    """The file's real path, looked up once (alert writes ask for their gate each time)."""
    return str(Path(database).resolve())


SQLITE_MAX_PARAMETERS = 999
"""Parameters per statement allowed by SQLite's oldest builds."""


def sqlite_pages(rows: Sequence[tuple[object, ...]]) -> Iterator[tuple[int, tuple[object, ...]]]:
    """``rows`` in pages that fit one statement, each as (row count, flat parameters), for a
    multi-row statement (``sqlite_values``) instead of executemany: the driver lets go of the
    GIL and takes it back once per statement, and on a busy collector each taking back can
    wait behind the MQTT and rules threads."""
    if not rows:
        return
    per_page = SQLITE_MAX_PARAMETERS // len(rows[0])
    for start in range(0, len(rows), per_page):
        page = rows[start : start + per_page]
        yield len(page), tuple(value for row in page for value in row)


@functools.lru_cache(maxsize=64)
def sqlite_values(rows: int, columns: int) -> str:
    """``(?, ?), (?, ?)``: the VALUES list of ``rows`` rows of ``columns`` parameters."""
    one = "(" + ", ".join(["?"] * columns) + ")"
    return ", ".join([one] * rows)


def session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    folder = resources.files("core").joinpath("migrations")
    config = Config()
    config.set_main_option("script_location", str(folder))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Migrate the database at ``url`` to ``revision`` (every domain branch's head by default)."""
    command.upgrade(alembic_config(url), revision)

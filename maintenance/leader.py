"""One scheduler leader per database: a lease row that its holder renews before it expires.

APScheduler 3 must not share a persistent job store between running schedulers, so only the
holder of the lease attaches the job store and runs the jobs. The lease is a plain row, so it
works the same on SQLite and PostgreSQL; it relies on the instances' clocks agreeing to within
a fraction of the lease time (NTP). Even two leaders at once (a paused process waking up after
its lease was taken) would not double a task: the unique key on the tasks sees to that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.models_maintenance import MaintenanceLease


def acquire_lease(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease; True when ``holder`` holds it until ``now + ttl``."""
    table = cast(Table, MaintenanceLease.__table__)
    values = {"name": name, "holder": holder, "expires_at": now + ttl}
    insert: Any = (
        pg_insert(table)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite_insert(table)
    )
    created = session.execute(
        insert.values(**values)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(table.c.name)
    ).first()
    if created is not None:
        return True
    taken = session.execute(
        update(MaintenanceLease)
        .where(
            MaintenanceLease.name == name,
            or_(MaintenanceLease.holder == holder, MaintenanceLease.expires_at <= now),
        )
        .values(holder=holder, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(taken, "rowcount", 0))


def release_lease(
    session: Session, name: str, holder: str, *, lock_wait: timedelta | None = None
) -> None:
    """Give the lease up at once (on a clean stop), so another instance need not wait.

    ``lock_wait`` bounds the wait for a lock that another connection holds (SQLite's busy
    timeout, PostgreSQL's lock_timeout); past it the database raises OperationalError.
    """
    with _lock_wait(session, lock_wait):
        session.execute(
            delete(MaintenanceLease)
            .where(MaintenanceLease.name == name, MaintenanceLease.holder == holder)
            .execution_options(synchronize_session=False)
        )


@contextmanager
def _lock_wait(session: Session, wait: timedelta | None) -> Iterator[None]:
    """Within the block, wait at most ``wait`` for a database lock (None: the usual wait)."""
    if wait is None:
        yield
        return
    ms = max(1, int(wait.total_seconds() * 1000))
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")  # ends with the transaction
        yield
        return
    usual = int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one())
    connection.exec_driver_sql(f"PRAGMA busy_timeout = {ms}")
    try:
        yield
    finally:  # the connection goes back to the pool: give it its usual wait again
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {usual}")

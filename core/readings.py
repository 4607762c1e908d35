"""The readings store: a time series of metric values per device, behind one interface.

The SQL backend keeps readings in the relational store, in the collector's own transaction,
so a reading and the device state it changes commit together. Backends are chosen by URL.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, func, select

from core.contract import MetricValue
from core.db import sqlite_pages, sqlite_values
from core.models import Reading


@dataclass(frozen=True, slots=True)
class ReadingRow:
    device_id: str
    metric: str
    ts_ms: int
    seq: int
    value: MetricValue


@dataclass(frozen=True, slots=True)
class Point:
    ts_ms: int
    seq: int
    value: float | None
    text: str | None


@dataclass(frozen=True, slots=True)
class Bucket:
    start_ms: int
    count: int
    min: float | None
    max: float | None
    mean: float | None


class ReadingsStore(Protocol):
    def write(self, connection: Connection, rows: Sequence[ReadingRow]) -> int:
        """Store rows once each (a row already stored is skipped); return how many were new."""
        ...

    def has(
        self, connection: Connection, device_id: str, metric: str, ts_ms: int, seq: int
    ) -> bool:
        """Whether the reading with this identity is stored (used for redelivered messages)."""
        ...

    def points(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, limit: int
    ) -> list[Point]:
        """Stored points in [start, end), oldest first, at most ``limit``."""
        ...

    def buckets(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, every_ms: int, limit: int
    ) -> list[Bucket]:
        """Min, max and mean per ``every_ms`` bucket (aligned to the epoch) in [start, end)."""
        ...

    def start(self) -> None:
        """Start background work (an outage spool's drainer); before the collector starts."""
        ...

    def stop(self) -> None:
        """Stop background work; after the collector has stopped."""
        ...

    def status(self) -> dict[str, object]:
        """For health: the backend, and anything waiting to be written."""
        ...

    def metrics_collector(self) -> Collector | None:
        """Prometheus metrics of the store, if it has any."""
        ...


def _columns(row: ReadingRow) -> tuple[str, str, int, int, float | None, str | None]:
    value = row.value
    if isinstance(value, str):
        return (row.device_id, row.metric, row.ts_ms, row.seq, None, value)
    return (row.device_id, row.metric, row.ts_ms, row.seq, float(value), None)


_PG_INSERT = (
    "INSERT INTO readings (device_id, metric, ts_ms, seq, value, text) "
    "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::bigint[], %s::bigint[], "
    "%s::float8[], %s::varchar[]) ON CONFLICT DO NOTHING"
)


@functools.lru_cache(maxsize=16)
def _sqlite_insert(rows: int) -> str:
    return (
        "INSERT INTO readings (device_id, metric, ts_ms, seq, value, text) "
        f"VALUES {sqlite_values(rows, 6)} ON CONFLICT DO NOTHING"
    )


class SqlReadingsStore:
    """Readings in the `readings` table of the relational store (SQLite or PostgreSQL).

    Rows go in as multi-row INSERTs, not executemany (``core.db.sqlite_pages``). On PostgreSQL
    the rows go as six arrays to one short statement: psycopg parses a statement of hundreds of
    placeholders anew each time (it caches statements of at most 50), which made the writer
    the bottleneck at 2,000 msg/s."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, connection: Connection, rows: Sequence[ReadingRow]) -> int:
        if not rows:
            return 0
        values = [_columns(row) for row in rows]
        if connection.dialect.name == "postgresql":
            columns = tuple(list(column) for column in zip(*values, strict=True))
            return max(connection.exec_driver_sql(_PG_INSERT, columns).rowcount, 0)
        stored = 0
        for count, params in sqlite_pages(values):
            result = connection.exec_driver_sql(_sqlite_insert(count), params)
            stored += max(result.rowcount, 0)
        return stored

    def start(self) -> None:
        """Nothing runs in the background: readings commit with the collector's batch."""

    def stop(self) -> None:
        """Nothing to stop."""

    def status(self) -> dict[str, object]:
        return {"backend": self.engine.dialect.name, "spooling": False, "backlog": 0}

    def metrics_collector(self) -> Collector | None:
        return None

    def has(
        self, connection: Connection, device_id: str, metric: str, ts_ms: int, seq: int
    ) -> bool:
        query = select(Reading.seq).where(
            Reading.device_id == device_id,
            Reading.metric == metric,
            Reading.ts_ms == ts_ms,
            Reading.seq == seq,
        )
        return connection.execute(query).first() is not None

    def points(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, limit: int
    ) -> list[Point]:
        query = (
            select(Reading.ts_ms, Reading.seq, Reading.value, Reading.text)
            .where(
                Reading.device_id == device_id,
                Reading.metric == metric,
                Reading.ts_ms >= start_ms,
                Reading.ts_ms < end_ms,
            )
            .order_by(Reading.ts_ms, Reading.seq)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [Point(*row) for row in connection.execute(query)]

    def buckets(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, every_ms: int, limit: int
    ) -> list[Bucket]:
        bucket = (Reading.ts_ms - Reading.ts_ms % every_ms).label("bucket")
        query = (
            select(
                bucket,
                func.count(),
                func.min(Reading.value),
                func.max(Reading.value),
                func.avg(Reading.value),
            )
            .where(
                Reading.device_id == device_id,
                Reading.metric == metric,
                Reading.ts_ms >= start_ms,
                Reading.ts_ms < end_ms,
            )
            .group_by(bucket)
            .order_by(bucket)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [
                Bucket(int(b), int(n), lo, hi, float(avg) if avg is not None else None)
                for b, n, lo, hi, avg in connection.execute(query)
            ]


def open_readings_store(
    url: str | None, engine: Engine, influx_token: str | None = None
) -> ReadingsStore:
    """The readings backend for ``url``; None or a SQL URL means the relational store.

    ``influxdb://`` / ``influxdbs://`` give the InfluxDB backend (core.readings_influx), whose
    token is ``influx_token`` or else ``PARKGUARD_INFLUX_TOKEN``. That store has ``start()``
    and ``stop()`` (its spool drainer), ``status()`` for health and ``metrics_collector()``.
    """
    scheme = url.split("://", 1)[0] if url else ""
    if url is None or scheme.startswith(("sqlite", "postgresql")):
        return SqlReadingsStore(engine)
    if scheme in ("influxdb", "influxdbs"):
        from core.readings_influx import InfluxConfig, InfluxReadingsStore
        from core.settings import load_settings

        token = influx_token if influx_token is not None else load_settings().influx_token
        return InfluxReadingsStore(InfluxConfig.from_url(url, token), engine)
    raise ValueError(f"readings backend {scheme!r} is not available")

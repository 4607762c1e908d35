"""The InfluxDB 2 readings backend, with a spool in the relational store for outages.

URL: ``influxdb://host:8086?org=ORG&bucket=BUCKET`` (``influxdbs://`` for TLS); the token comes
from ``PARKGUARD_INFLUX_TOKEN``. Optional query parameters: ``timeout_ms`` (5000), ``attempts``
(3 tries per request), ``batch_lines`` (5000 lines per request), ``spool_max`` (2,000,000
lines), ``drain_interval_ms`` (1000).

What is stored. One line per telemetry message: measurement = the device type, tags ``device``,
``site``, ``zone``, one field per metric (numbers and booleans as floats, booleans 1.0/0.0, as in
the SQL backend; strings as string fields) and an integer field ``seq``.

Identity. InfluxDB identifies a point by measurement, tags and timestamp; rewriting a point
overwrites it with the same values, so a redelivered message is stored once. Two messages of one
device with the same ``ts`` and different ``seq`` must not collide, so the timestamp is written
in nanoseconds as ``ts_ms * 1_000_000 + seq % 1_000_000``: the device's millisecond timestamp is
exactly ``time // 1_000_000`` and the sequence number is part of the identity. (Two messages
would only collide if one device sent the same ``ts`` with ``seq`` values a multiple of 10^6
apart.) A tag would also work but gives every message its own series.

Durability. ``write`` is called inside the collector's transaction and returns only when
InfluxDB has confirmed the write (synchronous, retried). When InfluxDB cannot be reached, the
lines go into the ``readings_spool`` table through the caller's connection, so they commit (and
the messages are acknowledged) with the rest of the batch. While lines are spooled, new lines
are spooled too, and a drainer thread (``start``/``stop``) writes them to InfluxDB oldest first
and deletes them only after InfluxDB confirmed them. A crash between the two rewrites the same
points, which InfluxDB stores once. A full spool refuses the batch (``SpoolFull``): the collector
then retries without acknowledging, and the broker keeps the messages.

Queries. ``points`` and ``buckets`` are answered in Flux generated from typed inputs
(:class:`PointsQuery`, :class:`BucketsQuery`); every string goes through :func:`flux_string`.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from influxdb_client.rest import ApiException
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, Table, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from urllib3.exceptions import HTTPError

from core.contract import MetricValue
from core.models import Device
from core.models_spool import SpooledLine
from core.readings import Bucket, Point, ReadingRow

log = logging.getLogger(__name__)
SPOOL = cast(Table, SpooledLine.__table__)
SEQ_FIELD = "seq"
NS_PER_MS = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNREGISTERED = "unregistered"
CONFIRMED_KEPT = 100_000  # message keys InfluxDB confirmed, kept to answer has() cheaply
_SPLIT_STATUSES = frozenset({400, 413, 422})  # the data, not the server: isolate the bad line


class SpoolFull(SQLAlchemyError):
    """The spool holds ``spool_max`` lines. It is a failure of the relational store's spool, so
    the collector handles it like a database outage: retry later, acknowledge nothing."""


class InfluxUnavailable(Exception):
    """InfluxDB did not confirm a write (unreachable, timed out, or answered with an error)."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


# ---- configuration --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    url: str
    org: str
    bucket: str
    token: str | None = None
    timeout_ms: int = 5000
    attempts: int = 3
    batch_lines: int = 5000
    spool_max: int = 2_000_000
    drain_interval_ms: int = 1000

    @classmethod
    def from_url(cls, url: str, token: str | None = None) -> InfluxConfig:
        """Parse ``influxdb[s]://host[:port][/path]?org=&bucket=[&option=...]``."""
        parts = urlsplit(url)
        if parts.scheme not in ("influxdb", "influxdbs") or not parts.hostname:
            raise ValueError("readings URL must look like influxdb://host:8086?org=ORG&bucket=B")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        org, bucket = query.pop("org", ""), query.pop("bucket", "")
        if not org or not bucket:
            raise ValueError("readings URL needs ?org=ORG&bucket=BUCKET")
        numbers: dict[str, int] = {}
        for name in ("timeout_ms", "attempts", "batch_lines", "spool_max", "drain_interval_ms"):
            if name in query:
                text = query.pop(name)
                if not text.isdigit() or int(text) < 1:
                    raise ValueError(f"readings URL option {name} must be a positive integer")
                numbers[name] = int(text)
        if query:
            raise ValueError(f"unknown readings URL option(s): {', '.join(sorted(query))}")
        scheme = "https" if parts.scheme == "influxdbs" else "http"
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        base = f"{scheme}://{host}:{parts.port or 8086}{parts.path.rstrip('/')}"
        return cls(url=base, org=org, bucket=bucket, token=token or None, **numbers)


# ---- line protocol --------------------------------------------------------------------------


def _no_line_breaks(text: str, what: str) -> str:
    if not text or any(unicodedata.category(c) == "Cc" for c in text):
        raise ValueError(f"{what} {text!r} is empty or holds control characters")
    return text


def lp_measurement(name: str) -> str:
    """A measurement name in line protocol: commas and spaces escaped."""
    name = _no_line_breaks(name, "measurement")
    return name.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def lp_key(name: str) -> str:
    """A tag key, tag value or field key in line protocol: commas, '=' and spaces escaped."""
    name = _no_line_breaks(name, "tag or field")
    return name.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def lp_field_value(value: MetricValue) -> str:
    """A metric's field value: always a float for numbers and booleans (1.0/0.0), so a metric
    never changes field type; a string quoted, backslash and double quote escaped, control
    characters (which line protocol cannot carry) replaced by U+FFFD."""
    if isinstance(value, bool):
        return "1.0" if value else "0.0"
    if isinstance(value, int | float):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("line protocol has no NaN or infinity")
        return repr(number)
    if not isinstance(value, str):
        raise TypeError(f"not a metric value: {value!r}")
    text = "".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def point_ns(ts_ms: int, seq: int) -> int:
    """The point's timestamp: the device's milliseconds, with ``seq`` as the nanosecond part."""
    return ts_ms * NS_PER_MS + seq % NS_PER_MS


@dataclass(frozen=True, slots=True)
class Series:
    """Where a device's readings go: its measurement and its (escaped, sorted) tag set."""

    measurement: str
    device: str
    site: str
    zone: str

    def prefix(self) -> str:
        tags = f"device={lp_key(self.device)},site={lp_key(self.site)},zone={lp_key(self.zone)}"
        return f"{lp_measurement(self.measurement)},{tags}"


def message_key(device_id: str, ts_ms: int, seq: int) -> str:
    """A message's identity as text (device ids hold no '/')."""
    return f"{device_id}/{ts_ms}/{seq}"


def to_messages(rows: Sequence[ReadingRow], series: dict[str, Series]) -> list[tuple[str, str]]:
    """(message key, line) per message (device, ts, seq), its metrics as fields, in order."""
    messages: dict[tuple[str, int, int], list[ReadingRow]] = {}
    for row in rows:
        messages.setdefault((row.device_id, row.ts_ms, row.seq), []).append(row)
    out = []
    for (device_id, ts_ms, seq), metrics in messages.items():
        where = series.get(device_id) or Series(UNREGISTERED, device_id, "-", "-")
        fields = ",".join(f"{lp_key(r.metric)}={lp_field_value(r.value)}" for r in metrics)
        line = f"{where.prefix()} {fields},{SEQ_FIELD}={seq}i {point_ns(ts_ms, seq)}"
        out.append((message_key(device_id, ts_ms, seq), line))
    return out


def to_lines(rows: Sequence[ReadingRow], series: dict[str, Series]) -> list[str]:
    return [line for _, line in to_messages(rows, series)]


# ---- Flux -----------------------------------------------------------------------------------


def flux_string(value: str) -> str:
    """A Flux string literal holding exactly ``value``: backslash, double quote, ``${``
    (interpolation) and control characters escaped."""
    out = []
    for char in value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${"):
        if char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif unicodedata.category(char) == "Cc":
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _flux_time(ms: int) -> str:
    return f"time(v: {int(ms) * NS_PER_MS})"


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer")


@dataclass(frozen=True, slots=True)
class PointsQuery:
    bucket: str
    measurement: str
    device: str
    metric: str
    start_ms: int
    end_ms: int
    limit: int

    def __post_init__(self) -> None:
        _positive("limit", self.limit)
        for name in ("start_ms", "end_ms"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be an integer")
        if self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be after start_ms")
        if self.metric == SEQ_FIELD:
            raise ValueError(f"{SEQ_FIELD!r} is the sequence field, not a metric")


@dataclass(frozen=True, slots=True)
class BucketsQuery(PointsQuery):
    every_ms: int = 60_000

    def __post_init__(self) -> None:
        PointsQuery.__post_init__(self)
        _positive("every_ms", self.every_ms)


def _source(q: PointsQuery) -> str:
    return (
        f"from(bucket: {flux_string(q.bucket)})\n"
        f"  |> range(start: {_flux_time(q.start_ms)}, stop: {_flux_time(q.end_ms)})\n"
        f"  |> filter(fn: (r) => r._measurement == {flux_string(q.measurement)}"
        f" and r.device == {flux_string(q.device)})\n"
    )


def points_flux(q: PointsQuery) -> str:
    """Stored points of one metric in [start, end), oldest first, with their ``seq``; columns
    ``_time``, ``seq``, ``v``."""
    metric = flux_string(q.metric)
    return (
        _source(q)
        + f"  |> filter(fn: (r) => r._field == {metric} or r._field == {flux_string(SEQ_FIELD)})\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        f"  |> filter(fn: (r) => exists r[{metric}])\n"
        f"  |> map(fn: (r) => ({{_time: r._time, seq: r.{SEQ_FIELD}, v: r[{metric}]}}))\n"
        "  |> group()\n"
        '  |> sort(columns: ["_time"])\n'
        f"  |> limit(n: {int(q.limit)})\n"
    )


def buckets_flux(q: BucketsQuery) -> str:
    """Count, min, max and mean per epoch-aligned window of ``every_ms``; columns ``_time``
    (the window start, or the range start for a first window cut by it), ``count``, ``min``,
    ``max``, ``mean`` (min, max and mean over numeric values only)."""
    every = f"{int(q.every_ms)}ms"

    def agg(source: str, fn: str) -> str:
        return (
            f"{source}\n"
            f"  |> aggregateWindow(every: {every}, fn: {fn}, createEmpty: false,"
            ' timeSrc: "_start")\n'
            f"  |> map(fn: (r) => ({{_time: r._time, _value: float(v: r._value),"
            f' agg: "{fn}"}}))'
        )

    return (
        'import "types"\n\n'
        "data = " + _source(q) + f"  |> filter(fn: (r) => r._field == {flux_string(q.metric)})\n"
        "  |> group()\n"
        'numbers = data |> filter(fn: (r) => types.isType(v: r._value, type: "float"))\n'
        f"n = {agg('data', 'count')}\n"
        f"lo = {agg('numbers', 'min')}\n"
        f"hi = {agg('numbers', 'max')}\n"
        f"av = {agg('numbers', 'mean')}\n"
        "union(tables: [n, lo, hi, av])\n"
        "  |> group()\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["agg"], valueColumn: "_value")\n'
        '  |> sort(columns: ["_time"])\n'
        f"  |> limit(n: {int(q.limit)})\n"
    )


def _ms(when: datetime) -> int:
    return (when - EPOCH) // timedelta(milliseconds=1)


# ---- the store ------------------------------------------------------------------------------


@dataclass
class _Counts:
    written: int = 0
    spooled: int = 0
    drained: int = 0
    rejected: int = 0
    failures: int = 0
    query_failures: int = 0


@dataclass
class InfluxReadingsStore:
    """Readings in InfluxDB 2; see the module docstring. ``start`` opens the client and the
    drainer, ``stop`` closes them; the constructor only assigns."""

    config: InfluxConfig
    engine: Engine
    counts: _Counts = field(default_factory=_Counts)
    last_error: str | None = None
    _series: dict[str, Series] = field(default_factory=dict)
    _spooling: bool | None = None  # None: not known yet (read from the spool on first use)
    _backlog_estimate: int = 0
    _client: Any = None
    _write_api: Any = None
    _confirmed: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> None:
        """Open the InfluxDB client, learn the spool's state and start the drainer."""
        self._open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._drain_forever, name="influx-drainer")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _open(self) -> Any:
        with self._lock:
            if self._client is None:
                from influxdb_client import InfluxDBClient
                from influxdb_client.client.write_api import SYNCHRONOUS

                self._client = InfluxDBClient(
                    url=self.config.url,
                    token=self.config.token or "",
                    org=self.config.org,
                    timeout=self.config.timeout_ms,
                    enable_gzip=False,
                )
                self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
            return self._client

    # -- the readings interface --

    def write(self, connection: Connection, rows: Sequence[ReadingRow]) -> int:
        """Write to InfluxDB (confirmed), or spool in ``connection``'s transaction. InfluxDB
        stores a point once however often it is written, so every row counts as new."""
        if not rows:
            return 0
        messages = to_messages(rows, self._series_for(connection, {r.device_id for r in rows}))
        if self._spooling is None:
            self._spooling = self._count(connection) > 0
        if self._spooling:
            self._spool(connection, messages)
            return len(rows)
        for start in range(0, len(messages), self.config.batch_lines):
            chunk = messages[start : start + self.config.batch_lines]
            try:
                self._post([line for _, line in chunk])
            except InfluxUnavailable as exc:
                self._went_down(exc)
                self._spool(connection, messages[start:])
                break
            self._remember(key for key, _ in chunk)
        return len(rows)

    def has(
        self, connection: Connection, device_id: str, metric: str, ts_ms: int, seq: int
    ) -> bool:
        """Whether this message is stored: confirmed by InfluxDB in this process lately, in the
        spool (as ``connection`` sees it), or found by a query. When the query fails the answer
        is False: writing the message again stores it once all the same."""
        key = message_key(device_id, ts_ms, seq)
        if key in self._confirmed:
            return True
        spooled = select(SPOOL.c.id).where(SPOOL.c.message == key).limit(1)
        if connection.execute(spooled).first() is not None:
            return True
        where = self._series_for(connection, {device_id}).get(device_id)
        if where is None:
            return False
        query = PointsQuery(
            self.config.bucket, where.measurement, device_id, metric, ts_ms, ts_ms + 1, 1000
        )
        try:
            return any(p.seq == seq for p in self._points(query))
        except (ApiException, HTTPError, OSError) as exc:
            with self._lock:
                self.counts.query_failures += 1
            log.warning("could not ask InfluxDB whether %s is stored (%s)", key, exc)
            return False

    def _remember(self, keys: Iterable[str]) -> None:
        confirmed = self._confirmed
        with self._lock:
            for key in keys:
                confirmed[key] = None
            while len(confirmed) > CONFIRMED_KEPT:
                confirmed.popitem(last=False)

    def points(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, limit: int
    ) -> list[Point]:
        where = self._series_for(None, {device_id}).get(device_id)
        if where is None:
            return []
        query = PointsQuery(
            self.config.bucket, where.measurement, device_id, metric, start_ms, end_ms, limit
        )
        return self._points(query)

    def buckets(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, every_ms: int, limit: int
    ) -> list[Bucket]:
        where = self._series_for(None, {device_id}).get(device_id)
        if where is None:
            return []
        query = BucketsQuery(
            self.config.bucket,
            where.measurement,
            device_id,
            metric,
            start_ms,
            end_ms,
            limit,
            every_ms,
        )
        merged: dict[int, Bucket] = {}
        for record in self._query(buckets_flux(query)):
            at = _ms(record["_time"])
            start = at - at % every_ms
            count = record.get("count")
            merged[start] = Bucket(
                start,
                int(count) if count is not None else 0,
                _float(record.get("min")),
                _float(record.get("max")),
                _float(record.get("mean")),
            )
        return [merged[k] for k in sorted(merged)][:limit]

    # -- backlog, health, metrics --

    def backlog(self) -> int:
        """Lines waiting in the spool (an exact count, readable from any process)."""
        with self.engine.connect() as connection:
            n = self._count(connection)
        self._backlog_estimate = n
        return n

    def status(self) -> dict[str, object]:
        """For the health endpoint: where readings go and what waits."""
        try:
            backlog: int | None = self.backlog()
        except SQLAlchemyError:
            backlog = None
        return {
            "backend": "influxdb",
            "url": self.config.url,
            "bucket": self.config.bucket,
            "spooling": bool(self._spooling),
            "backlog": backlog,
            "last_error": self.last_error,
        }

    def metrics_collector(self) -> Collector:
        """A Prometheus collector to register on the /metrics registry."""
        return _StoreMetrics(self)

    # -- the spool and its drainer --

    def drain_once(self) -> int:
        """Write the oldest spooled lines to InfluxDB and delete them; return how many. Raises
        InfluxUnavailable (nothing deleted) when InfluxDB does not confirm them."""
        chunk = select(SPOOL.c.id, SPOOL.c.message, SPOOL.c.line).order_by(SPOOL.c.id)
        chunk = chunk.limit(self.config.batch_lines)
        if self.engine.dialect.name == "postgresql":
            chunk = chunk.with_for_update(skip_locked=True)
        with self.engine.begin() as connection:
            rows = connection.execute(chunk).all()
            if not rows:
                self._spooling = False
                self._backlog_estimate = self._count(connection)
                return 0
            self._post_isolating([line for _, _, line in rows])
            connection.execute(delete(SPOOL).where(SPOOL.c.id.in_([i for i, _, _ in rows])))
        self._remember(key for _, key, _ in rows)
        with self._lock:
            self.counts.drained += len(rows)
        self._backlog_estimate = max(self._backlog_estimate - len(rows), 0)
        return len(rows)

    def _drain_forever(self) -> None:
        interval = self.config.drain_interval_ms / 1000
        delay = interval
        while not self._stop.is_set():
            try:
                drained = self.drain_once()
            except (InfluxUnavailable, SQLAlchemyError) as exc:
                self._went_down(exc)
                delay = min(max(delay * 2, interval), 30.0)
                self._stop.wait(delay)
                continue
            delay = interval
            if drained == 0:
                self._stop.wait(interval)

    def _spool(self, connection: Connection, messages: list[tuple[str, str]]) -> None:
        if self._backlog_estimate + len(messages) > self.config.spool_max:
            self._backlog_estimate = self._count(connection)
            if self._backlog_estimate + len(messages) > self.config.spool_max:
                raise SpoolFull(
                    f"the readings spool holds {self._backlog_estimate} lines "
                    f"(spool_max {self.config.spool_max}); InfluxDB: {self.last_error}"
                )
        now = int(time.time() * 1000)
        connection.execute(
            insert(SPOOL),
            [{"message": key, "line": line, "spooled_ms": now} for key, line in messages],
        )
        self._spooling = True
        self._backlog_estimate += len(messages)
        with self._lock:
            self.counts.spooled += len(messages)

    @staticmethod
    def _count(connection: Connection) -> int:
        return int(connection.execute(select(func.count()).select_from(SPOOL)).scalar_one())

    def _went_down(self, exc: Exception) -> None:
        first = self.last_error is None or not self._spooling
        self.last_error = str(exc)[:500]
        with self._lock:
            self.counts.failures += 1
        if first:
            log.warning("InfluxDB did not confirm a write (%s); spooling readings", exc)

    # -- talking to InfluxDB --

    def _post(self, lines: list[str]) -> None:
        """One confirmed write, retried with backoff on errors of the server or the network."""
        self._open()
        from influxdb_client.client.write_api import WritePrecision

        delay = 0.1
        for attempt in range(1, self.config.attempts + 1):
            try:
                self._write_api.write(
                    bucket=self.config.bucket,
                    org=self.config.org,
                    record="\n".join(lines),
                    write_precision=WritePrecision.NS,
                )
            except ApiException as exc:
                status = int(exc.status or 0)
                error = InfluxUnavailable(f"HTTP {status}: {_reason(exc)}", status)
                if status in _SPLIT_STATUSES or (400 <= status < 500 and status != 429):
                    raise error from exc
            except (HTTPError, OSError) as exc:
                error = InfluxUnavailable(f"{type(exc).__name__}: {exc}")
            else:
                with self._lock:
                    self.counts.written += len(lines)
                self.last_error = None
                return
            if attempt == self.config.attempts:
                raise error
            if self._stop.wait(delay):
                raise error
            delay *= 4

    def _post_isolating(self, lines: list[str]) -> None:
        """Post, and when InfluxDB refuses the data itself, split the chunk until the refused
        line is alone; that line is logged and counted as rejected, never retried forever."""
        try:
            self._post(lines)
        except InfluxUnavailable as exc:
            if exc.status not in _SPLIT_STATUSES:
                raise
            if len(lines) == 1:
                with self._lock:
                    self.counts.rejected += 1
                log.error("InfluxDB refused a spooled line (%s): %s", exc, lines[0][:500])
                return
            half = len(lines) // 2
            self._post_isolating(lines[:half])
            self._post_isolating(lines[half:])

    def _query(self, flux: str) -> Iterator[dict[str, Any]]:
        client = self._open()
        for table in client.query_api().query(flux, org=self.config.org):
            for record in table.records:
                yield record.values

    def _points(self, query: PointsQuery) -> list[Point]:
        points = []
        for record in self._query(points_flux(query)):
            value = record.get("v")
            seq = record.get("seq")
            text = value if isinstance(value, str) else None
            number = None if text is not None or value is None else float(value)
            points.append(
                Point(_ms(record["_time"]), int(seq) if seq is not None else 0, number, text)
            )
        return points

    # -- the device register --

    def _series_for(
        self, connection: Connection | None, devices: Iterable[str]
    ) -> dict[str, Series]:
        if any(d not in self._series for d in devices):
            self._series = self._load_series(connection)
        return self._series

    def _load_series(self, connection: Connection | None) -> dict[str, Series]:
        query = select(Device.id, Device.type, Device.site_id, Device.zone_id)
        if connection is None:
            with self.engine.connect() as own:
                rows = own.execute(query).all()
        else:
            rows = connection.execute(query).all()
        return {d: Series(t, d, s, z) for d, t, s, z in rows}


def _float(value: object) -> float | None:
    return None if value is None else float(cast(float, value))


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None) or getattr(exc, "reason", "") or ""
    return str(body)[:300]


class _StoreMetrics(Collector):
    def __init__(self, store: InfluxReadingsStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        store = self.store
        try:
            backlog = store.backlog()
        except SQLAlchemyError:
            backlog = store._backlog_estimate
        yield GaugeMetricFamily(
            "parkguard_readings_spool_backlog",
            "Readings lines spooled in the relational store, waiting for InfluxDB",
            value=backlog,
        )
        yield GaugeMetricFamily(
            "parkguard_readings_spooling",
            "1 while new readings go to the spool instead of InfluxDB",
            value=1 if store._spooling else 0,
        )
        counts = store.counts
        for name, help_text, value in (
            ("lines_written", "Lines InfluxDB confirmed", counts.written),
            ("lines_spooled", "Lines put in the spool", counts.spooled),
            ("lines_drained", "Spooled lines written to InfluxDB, then unspooled", counts.drained),
            ("lines_rejected", "Spooled lines InfluxDB refused as bad data", counts.rejected),
            ("write_failures", "InfluxDB requests that were not confirmed", counts.failures),
            (
                "query_failures",
                "Redelivery look-ups InfluxDB did not answer",
                counts.query_failures,
            ),
        ):
            yield CounterMetricFamily(f"parkguard_influx_{name}", help_text, value=value)

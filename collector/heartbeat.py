"""The collector's report of itself in the database (``collector_status``, one row per MQTT
client id): written every ``INTERVAL_S`` and at stop, read by processes without the collector.

In split roles the API has no collector in its process to ask; it reads the newest report
instead (``read_status``), and a report older than ``STALE_AFTER_S`` (three intervals) says
the collector is down or cannot reach the database. ``parkguard health collector`` asks the
same question for the container's health check. ``parkguard serve`` writes the report too
(so the health command works there), while its API keeps asking the live collector.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as MetricsCollector
from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.contract import now_ms
from core.ingest import IngestStatus
from core.models_collector import CollectorStatus

log = logging.getLogger(__name__)
INTERVAL_S = 5.0
STALE_AFTER_S = 3 * INTERVAL_S


class Heartbeat:
    """Construct; ``start()`` once the collector runs; ``stop()`` after it stopped (the last
    report says ``running`` false, with the final counters)."""

    def __init__(
        self,
        engine: Engine,
        client_id: str,
        status: Callable[[], IngestStatus],
        spool_backlog: Callable[[], int | None] = lambda: None,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.engine = engine
        self.client_id = client_id
        self.status = status
        self.spool_backlog = spool_backlog
        self.interval_s = interval_s
        self.clock = clock
        self.reports = 0
        self.errors = 0
        """Reports the database did not take (it is down): counted, logged, tried again."""
        self._started_ms = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._started_ms = self.clock()
        self._stop.clear()
        self.report()
        self._thread = threading.Thread(target=self._run, name="collector-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.report(running=False)

    def report(self, running: bool = True) -> bool:
        """Write the status now; False (counted) when the database did not take it."""
        status = self.status()
        row = {
            "client_id": self.client_id,
            "running": running,
            "broker": status.broker,
            "broker_connected": status.broker_connected,
            "queue_depth": status.queue_depth,
            "queue_max": status.queue_max,
            "messages_in": status.messages_in,
            "stored": status.stored,
            "duplicates": status.duplicates,
            "dead_letters": dict(status.dead_letters),
            "spool_backlog": self._backlog(),
            "last_message_ms": status.last_message_ms,
            "started_ms": self._started_ms,
            "updated_ms": self.clock(),
        }
        try:
            with self.engine.begin() as connection:
                dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
                insert = dialect.insert(CollectorStatus).values(row)
                updates = {k: insert.excluded[k] for k in row if k != "client_id"}
                connection.execute(
                    insert.on_conflict_do_update(index_elements=["client_id"], set_=updates)
                )
        except SQLAlchemyError as exc:
            self.errors += 1
            log.warning("collector report not written: %s", str(exc).splitlines()[0])
            return False
        self.reports += 1
        return True

    def _backlog(self) -> int | None:
        try:
            return self.spool_backlog()
        except SQLAlchemyError:
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.report()


def read_status(
    engine: Engine,
    now: int | None = None,
    stale_after_s: float = STALE_AFTER_S,
    client_id: str | None = None,
) -> IngestStatus:
    """The newest collector report (of ``client_id``, or of any collector) as an IngestStatus;
    its ``problem`` says when there is none, when the collector stopped, or when the report is
    stale (then the broker counts as not connected: nothing vouches for it), and when the
    database cannot be read."""
    at = now_ms() if now is None else now
    query = select(CollectorStatus).order_by(CollectorStatus.updated_ms.desc()).limit(1)
    if client_id is not None:
        query = query.where(CollectorStatus.client_id == client_id)
    try:
        with Session(engine) as session:
            report = session.scalars(query).first()
    except SQLAlchemyError as exc:
        return _unknown(f"its report cannot be read: {str(exc).splitlines()[0][:200]}")
    if report is None:
        who = f"collector {client_id}" if client_id is not None else "collector"
        return _unknown(f"no {who} has reported to this database")
    age_s = (at - report.updated_ms) / 1000
    problem = None
    if not report.running:
        problem = f"the collector {report.client_id} stopped at {_iso(report.updated_ms)}"
    elif age_s > stale_after_s:
        problem = (
            f"the collector {report.client_id} last reported {age_s:.0f} s ago (every "
            f"{INTERVAL_S:g} s expected): it is down or cannot reach the database"
        )
    return IngestStatus(
        broker_connected=report.broker_connected and problem is None,
        broker=report.broker,
        queue_depth=report.queue_depth,
        queue_max=report.queue_max,
        messages_in=report.messages_in,
        stored=report.stored,
        duplicates=report.duplicates,
        dead_letters=dict(report.dead_letters or {}),
        last_message_ms=report.last_message_ms,
        spool_backlog=report.spool_backlog,
        reported_ms=report.updated_ms,
        problem=problem,
    )


def _unknown(problem: str) -> IngestStatus:
    return IngestStatus(
        broker_connected=False,
        broker="unknown",
        queue_depth=0,
        queue_max=0,
        messages_in=0,
        stored=0,
        duplicates=0,
        dead_letters={},
        problem=problem,
    )


class ReportMetrics(MetricsCollector):
    """Prometheus metrics of the newest collector report, for ``/metrics`` of a process
    without the collector: the collector's own names where the figure is the same, and
    ``parkguard_collector_up`` / ``parkguard_collector_report_age_seconds``."""

    def __init__(self, engine: Engine, clock: Callable[[], int] = now_ms) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        status = read_status(self.engine, now)
        yield GaugeMetricFamily(
            "parkguard_collector_up",
            "1 while the newest collector report is fresh and its collector running",
            value=1 if status.problem is None else 0,
        )
        if status.reported_ms is None:
            return
        yield GaugeMetricFamily(
            "parkguard_collector_report_age_seconds",
            "Seconds since the collector last reported to the database",
            value=(now - status.reported_ms) / 1000,
        )
        yield from _status_metrics(status)


def _status_metrics(status: IngestStatus) -> Iterator[Metric]:
    gauges: list[tuple[str, str, Any]] = [
        ("parkguard_broker_connected", "1 while connected to the broker", status.broker_connected),
        ("parkguard_queue_depth", "Messages received, not yet committed", status.queue_depth),
    ]
    if status.spool_backlog is not None:
        gauges.append(
            (
                "parkguard_readings_spool_backlog",
                "Readings lines spooled in the relational store, waiting for InfluxDB",
                status.spool_backlog,
            )
        )
    for name, text, value in gauges:
        yield GaugeMetricFamily(name, text, value=float(value))
    for name, text, value in (
        ("parkguard_messages_in", "MQTT messages received", status.messages_in),
        ("parkguard_messages_stored", "Messages stored (new), all channels", status.stored),
        ("parkguard_duplicates", "Redelivered messages already stored", status.duplicates),
    ):
        yield CounterMetricFamily(name, text, value=value)
    dead = CounterMetricFamily("parkguard_dead_letters", "Rejected messages", labels=["reason"])
    for reason, count in sorted(status.dead_letters.items()):
        dead.add_metric([reason], count)
    yield dead


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")

"""The collector's report in the database (collector.heartbeat) on SQLite and PostgreSQL: a real
collector on the broker reports its counters; a reader in another process sees them, and says
so when there is no report, when the collector stopped, or when the report is stale."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, MetaData, inspect

from collector.heartbeat import INTERVAL_S, STALE_AFTER_S, Heartbeat, ReportMetrics, read_status
from core.db import alembic_config, make_engine, upgrade
from core.ingest import IngestStatus
from core.models import Base
from tests.collector.helpers import publish_all, running_collector, wait_for
from tests.conftest import unique


class Clock:
    def __init__(self, now: int = 1_800_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_a_running_collector_reports_its_counters_and_its_last_message(
    db_url: str, broker: tuple[str, int]
) -> None:
    engine = make_engine(db_url)
    client_id = unique("hb")
    try:
        with running_collector(engine, broker, client_id=client_id) as collector:
            heartbeat = Heartbeat(engine, client_id, collector.status, lambda: 7, interval_s=0.1)
            heartbeat.start()
            try:
                publish_all(broker, [(f"parkguard/nosite/{unique('d')}/event", b"not json")])
                wait_for(
                    lambda: read_status(engine, client_id=client_id).messages_in >= 1,
                    what="the message in a report",
                )
                report = read_status(engine, client_id=client_id)
            finally:
                heartbeat.stop()
        assert report.problem is None and report.broker_connected
        assert report.dead_letters.get("not_json", 0) >= 1
        assert report.spool_backlog == 7
        assert report.last_message_ms is not None and report.reported_ms is not None
        assert report.broker == collector.status().broker

        stopped = read_status(engine, client_id=client_id)
        assert stopped.problem is not None and "stopped" in stopped.problem
        assert not stopped.broker_connected
    finally:
        engine.dispose()


def test_a_stale_report_is_a_problem_and_the_broker_counts_as_unknown(db_url: str) -> None:
    engine = make_engine(db_url)
    clock = Clock()
    try:
        assert Heartbeat(engine, "c1", _status, clock=clock).report()  # and then it died
        fresh = read_status(engine, now=clock.now + round(STALE_AFTER_S * 1000))
        assert fresh.problem is None and fresh.broker_connected
        stale = read_status(engine, now=clock.now + round(STALE_AFTER_S * 1000) + 1)
        assert stale.problem is not None
        assert "last reported 15 s ago" in stale.problem and f"{INTERVAL_S:g} s" in stale.problem
        assert not stale.broker_connected
        assert stale.messages_in == 3  # the last figures are still shown
    finally:
        engine.dispose()


def test_no_report_and_an_unreadable_database_are_problems(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    try:
        none = read_status(engine)
        assert none.problem == "no collector has reported to this database"
        assert not none.broker_connected and none.reported_ms is None
        assert read_status(engine, client_id="x").problem == (
            "no collector x has reported to this database"
        )
    finally:
        engine.dispose()
    folder = make_engine(f"sqlite:///{tmp_path}")  # a "file" that is a folder
    try:
        broken = read_status(folder)
        assert broken.problem is not None
        assert broken.problem.startswith("its report cannot be read: ")
    finally:
        folder.dispose()


def test_the_newest_report_wins_and_a_report_that_fails_is_counted(db_url: str) -> None:
    engine = make_engine(db_url)
    clock = Clock()
    try:
        Heartbeat(engine, "old", _status, clock=clock).report()
        clock.now += 1000
        Heartbeat(engine, "new", _status, clock=clock).report()
        assert read_status(engine, now=clock.now).broker == "mqtt://broker:1883"
        assert "new" in str(read_status(engine, now=clock.now + 10**6).problem)
    finally:
        engine.dispose()
    dead = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/x?connect_timeout=1")
    heartbeat = Heartbeat(dead, "c", _status)
    assert heartbeat.report() is False and heartbeat.errors == 1


def test_report_metrics_say_whether_the_collector_is_up(db_url: str) -> None:
    engine = make_engine(db_url)
    clock = Clock()
    registry = CollectorRegistry()
    registry.register(ReportMetrics(engine, clock))
    try:
        assert b"parkguard_collector_up 0.0" in generate_latest(registry)
        Heartbeat(engine, "c1", _status, lambda: 42, clock=clock).report()
        text = generate_latest(registry).decode()
        assert "parkguard_collector_up 1.0" in text
        assert "parkguard_messages_in_total 3.0" in text
        assert 'parkguard_dead_letters_total{reason="not_json"} 2.0' in text
        assert "parkguard_readings_spool_backlog 42.0" in text
        clock.now += 60_000
        assert "parkguard_collector_up 0.0" in generate_latest(registry).decode()
    finally:
        engine.dispose()


def test_migration_matches_the_model_and_the_branch_goes_down_and_up(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert not _diff(engine)
        command.downgrade(alembic_config(db_url), "collector@0001_foundation")
        assert "collector_status" not in inspect(engine).get_table_names()
        upgrade(db_url)
        assert "collector_status" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _diff(engine: Engine) -> list[object]:
    ours = MetaData(naming_convention=Base.metadata.naming_convention)
    Base.metadata.tables["collector_status"].to_metadata(ours)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return [c for c in compare_metadata(context, ours) if "collector_status" in repr(c)]


def _status() -> IngestStatus:
    return IngestStatus(
        broker_connected=True,
        broker="mqtt://broker:1883",
        queue_depth=1,
        queue_max=100,
        messages_in=3,
        stored=2,
        duplicates=0,
        dead_letters={"not_json": 2},
    )

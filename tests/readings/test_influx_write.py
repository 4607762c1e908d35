"""The InfluxDB write path against a real server of the v2 write API (victoria-metrics):
names, tags, values and timestamps read back exactly; the outage spool by stopping and
starting that server; the whole ingest path from Mosquitto through the collector."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, select

from collector.client import BrokerAddress
from collector.service import Collector
from core.catalogue import load_catalogue
from core.contract import encode_telemetry, now_ms, topic_for
from core.db import make_engine
from core.models_spool import SpooledLine
from core.readings import ReadingRow, open_readings_store
from core.readings_influx import InfluxReadingsStore, SpoolFull, point_ns
from core.settings import Settings
from tests.builders import make_site
from tests.collector.helpers import publish_all, wait_for
from tests.conftest import unique
from tests.readings.conftest import Victoria

Samples = dict[tuple[str, ...], list[tuple[int, float]]]


@pytest.fixture
def park(db_url: str) -> Iterator[tuple[Engine, str]]:
    engine = make_engine(db_url)
    site_id = unique("s")
    make_site(
        engine,
        site_id,
        {f"{site_id}-ext": "extinguisher", f"{site_id}-env": "warehouse_env"},
    )
    yield engine, site_id
    engine.dispose()


def open_store(engine: Engine, victoria: Victoria, **options: object) -> InfluxReadingsStore:
    options.setdefault("timeout_ms", 2000)
    options.setdefault("attempts", 2)
    options.setdefault("drain_interval_ms", 100)
    store = open_readings_store(victoria.readings_url(**options), engine, influx_token="")
    assert isinstance(store, InfluxReadingsStore)
    return store


def write(engine: Engine, store: InfluxReadingsStore, rows: list[ReadingRow]) -> int:
    """As the collector does: inside the relational transaction."""
    with engine.begin() as connection:
        return store.write(connection, rows)


def telemetry(device: str, ts_ms: int, seq: int, **metrics: Any) -> list[ReadingRow]:
    return [ReadingRow(device, metric, ts_ms, seq, value) for metric, value in metrics.items()]


def expected_samples(site: str, rows: list[ReadingRow], types: dict[str, str]) -> Samples:
    """What the server must hold: one sample per metric value and one ``seq`` per message."""
    out: Samples = {}
    seqs: dict[tuple[str, int, int], None] = {}
    for r in rows:
        key = (f"{types[r.device_id]}_{r.metric}", r.device_id, site, f"{site}-z1")
        value = float(r.value) if not isinstance(r.value, str) else 0.0
        out.setdefault(key, []).append((r.ts_ms, value))
        seqs[(r.device_id, r.ts_ms, r.seq)] = None
    for device, ts_ms, seq in seqs:
        key = (f"{types[device]}_seq", device, site, f"{site}-z1")
        out.setdefault(key, []).append((ts_ms, float(seq)))
    return {k: sorted(v) for k, v in out.items()}


def spool_lines(engine: Engine) -> list[str]:
    with engine.connect() as c:
        return list(c.execute(select(SpooledLine.line).order_by(SpooledLine.id)).scalars())


def test_readings_are_stored_with_exact_names_tags_values_and_times(
    park: tuple[Engine, str], victoria: Victoria
) -> None:
    engine, s = park
    ext, env = f"{s}-ext", f"{s}-env"
    types = {ext: "extinguisher", env: "warehouse_env"}
    t = now_ms() - 60_000
    rows = [
        *telemetry(ext, t, 1, pressure_mpa=1.31, present=True, front_blocked=False),
        *telemetry(ext, t + 1000, 2, pressure_mpa=1.125),
        # same ts, another seq: a second point, not an overwrite
        *telemetry(ext, t + 1000, 3, pressure_mpa=0.75),
        *telemetry(env, t + 7, 0, temperature_c=-12.5, humidity_pct=55, gas_lel_pct=0.0),
    ]
    store = open_store(engine, victoria)
    try:
        assert write(engine, store, rows) == len(rows)
        got = victoria.wait_for_samples(len(rows) + 4)
    finally:
        store.stop()
    assert got == expected_samples(s, rows, types)
    assert store.backlog() == 0
    assert store.counts.written == 4 and store.counts.spooled == 0


def test_an_outage_spools_in_the_transaction_and_drains_in_order_once(
    park: tuple[Engine, str], victoria: Victoria
) -> None:
    engine, s = park
    ext = f"{s}-ext"
    t = now_ms() - 120_000
    before = telemetry(ext, t, 0, pressure_mpa=1.0)
    during = [
        row for i in range(1, 8) for row in telemetry(ext, t + i, i, pressure_mpa=1 + i / 100)
    ]
    store = open_store(engine, victoria, batch_lines=3)
    registry = CollectorRegistry()
    registry.register(store.metrics_collector())
    write(engine, store, before)
    victoria.stop()
    # one batch written while InfluxDB is down, one more after: both go to the spool
    assert write(engine, store, during[:3]) == 3
    assert write(engine, store, during[3:]) == 4
    assert store.backlog() == 7
    assert store.status()["spooling"] is True
    assert "parkguard_readings_spool_backlog 7.0" in generate_latest(registry).decode()
    # a transaction that fails takes its spooled lines with it
    with pytest.raises(RuntimeError), engine.begin() as connection:
        store.write(connection, telemetry(ext, t + 100, 100, pressure_mpa=2.0))
        raise RuntimeError("the rest of the batch failed")
    assert store.backlog() == 7
    lines = spool_lines(engine)
    assert [int(line.rsplit(" ", 1)[1]) for line in lines] == [
        point_ns(t + i, i) for i in range(1, 8)
    ]

    victoria.start()
    assert store.drain_once() == 3  # the oldest first
    assert spool_lines(engine) == lines[3:]
    store.start()
    try:
        wait_for(lambda: store.backlog() == 0, what="the spool drained")
        wait_for(lambda: store.status()["spooling"] is False, what="direct writes again")
        after = telemetry(ext, t + 50, 50, pressure_mpa=1.5)
        write(engine, store, after)
        everything = before + during + after
        got = victoria.wait_for_samples(2 * len(everything))
    finally:
        store.stop()
    assert got == expected_samples(s, everything, {ext: "extinguisher"})
    assert store.counts.drained == 7
    assert "parkguard_readings_spool_backlog 0.0" in generate_latest(registry).decode()


def test_a_full_spool_refuses_the_batch(park: tuple[Engine, str], victoria: Victoria) -> None:
    engine, s = park
    ext = f"{s}-ext"
    t = now_ms()
    store = open_store(engine, victoria, spool_max=3)
    victoria.stop()
    write(engine, store, [r for i in range(3) for r in telemetry(ext, t + i, i, pressure_mpa=1.0)])
    with pytest.raises(SpoolFull):
        write(engine, store, telemetry(ext, t + 9, 9, pressure_mpa=1.0))
    assert store.backlog() == 3


def test_the_collector_ingests_into_influxdb(
    park: tuple[Engine, str], victoria: Victoria, private_broker: tuple[str, int]
) -> None:
    engine, s = park
    ext = f"{s}-ext"
    t = now_ms() - 10_000
    store = open_store(engine, victoria)
    store.start()
    collector = Collector(
        Settings(database_url=str(engine.url), mqtt_client_id=unique("col")),
        engine,
        store,
        load_catalogue(),
        BrokerAddress(*private_broker),
    )
    collector.start()
    try:
        wait_for(lambda: collector.status().broker_connected, what="collector connected")
        messages = [
            (
                topic_for(s, ext, "telemetry"),
                encode_telemetry(t + i, i, {"pressure_mpa": 1 + i / 64}),
            )
            for i in range(20)
        ]
        publish_all(private_broker, messages + messages[:5])  # five redelivered
        got = victoria.wait_for_samples(40)
    finally:
        collector.stop()
        store.stop()
    assert got[("extinguisher_pressure_mpa", ext, s, f"{s}-z1")] == [
        (t + i, 1 + i / 64) for i in range(20)
    ]


def test_has_answers_from_what_influxdb_confirmed_the_spool_or_a_query(
    park: tuple[Engine, str], victoria: Victoria
) -> None:
    engine, s = park
    ext = f"{s}-ext"
    t = now_ms()
    store = open_store(engine, victoria)
    write(engine, store, telemetry(ext, t, 1, pressure_mpa=1.0))
    victoria.stop()
    write(engine, store, telemetry(ext, t + 1, 2, pressure_mpa=1.0))
    with engine.connect() as c:
        assert store.has(c, ext, "pressure_mpa", t, 1)  # confirmed by the server
        assert store.has(c, ext, "pressure_mpa", t + 1, 2)  # in the spool
        # unknown, and the server cannot be asked: False, so the message is written again
        assert not store.has(c, ext, "pressure_mpa", t + 2, 3)
    assert store.counts.query_failures == 1


def test_a_redelivery_after_its_batch_committed_is_not_written_again(
    park: tuple[Engine, str], victoria: Victoria, private_broker: tuple[str, int]
) -> None:
    engine, s = park
    ext = f"{s}-ext"
    t = now_ms() - 10_000
    store = open_store(engine, victoria)
    collector = Collector(
        Settings(database_url=str(engine.url), mqtt_client_id=unique("col")),
        engine,
        store,
        load_catalogue(),
        BrokerAddress(*private_broker),
    )
    collector.start()
    messages = [
        (topic_for(s, ext, "telemetry"), encode_telemetry(t + i, i, {"pressure_mpa": 1 + i / 64}))
        for i in range(10)
    ]
    try:
        wait_for(lambda: collector.status().broker_connected, what="collector connected")
        publish_all(private_broker, messages)
        victoria.wait_for_samples(20)
        publish_all(private_broker, messages[:4])  # as the broker redelivers after a crash
        time.sleep(1.0)
        got = victoria.wait_for_samples(20)
    finally:
        collector.stop()
        store.stop()
    assert got[("extinguisher_pressure_mpa", ext, s, f"{s}-z1")] == [
        (t + i, 1 + i / 64) for i in range(10)
    ]
    assert store.counts.written == 10

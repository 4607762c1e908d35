"""The whole backend against a real InfluxDB 2, when PARKGUARD_TEST_INFLUX_URL names one
(``influxdb://host:8086?org=ORG&bucket=BUCKET``, token in PARKGUARD_TEST_INFLUX_TOKEN).
No InfluxDB 2 can be installed on the CI machine, so there these tests skip: the write path and
the spool are verified against victoria-metrics, the Flux text by test_influx_text.

The SQL backend is the oracle: the same rows written to both must give the same points and the
same buckets."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from core.contract import now_ms
from core.db import make_engine
from core.readings import ReadingRow, SqlReadingsStore
from core.readings_influx import InfluxConfig, InfluxReadingsStore
from tests.builders import make_site
from tests.conftest import unique

INFLUX_URL = os.environ.get("PARKGUARD_TEST_INFLUX_URL")
pytestmark = pytest.mark.skipif(
    not INFLUX_URL, reason="PARKGUARD_TEST_INFLUX_URL is not set (no InfluxDB 2 here)"
)


@pytest.fixture
def stores(sqlite_url: str) -> Iterator[tuple[Engine, str, InfluxReadingsStore, SqlReadingsStore]]:
    assert INFLUX_URL is not None
    engine = make_engine(sqlite_url)
    site = unique("s")  # a fresh device id per test run: the bucket may hold earlier runs
    make_site(engine, site, {f"{site}-ext": "extinguisher", f"{site}-tag": "asset_tag"})
    token = os.environ.get("PARKGUARD_TEST_INFLUX_TOKEN")
    store = InfluxReadingsStore(InfluxConfig.from_url(INFLUX_URL, token), engine)
    store.start()
    yield engine, site, store, SqlReadingsStore(engine)
    store.stop()
    engine.dispose()


def write_both(
    engine: Engine, influx: InfluxReadingsStore, sql: SqlReadingsStore, rows: list[ReadingRow]
) -> None:
    with engine.begin() as c:
        assert influx.write(c, rows) == len(rows)
        sql.write(c, rows)
    assert influx.backlog() == 0, influx.status()


def test_points_buckets_and_has_match_the_sql_backend(
    stores: tuple[Engine, str, InfluxReadingsStore, SqlReadingsStore],
) -> None:
    engine, site, influx, sql = stores
    ext, tag = f"{site}-ext", f"{site}-tag"
    t0 = now_ms() - 3_600_000
    t0 -= t0 % 60_000
    rows = [
        ReadingRow(ext, "pressure_mpa", t0 + i * 7_000, i, 1.0 + (i % 5) / 8) for i in range(40)
    ]
    rows += [ReadingRow(ext, "present", t0 + i * 7_000, i, i % 3 != 0) for i in range(40)]
    rows.append(ReadingRow(ext, "pressure_mpa", t0 + 7_000, 1_000, 0.5))  # same ts, other seq
    rows += [ReadingRow(tag, "zone", t0 + i * 30_000, i, f"zone-{i % 2}") for i in range(6)]
    write_both(engine, influx, sql, rows)
    write_both(engine, influx, sql, rows[:10])  # written again: still stored once

    end = t0 + 600_000
    for device, metric in ((ext, "pressure_mpa"), (ext, "present"), (tag, "zone")):
        assert influx.points(device, metric, t0, end, 1000) == sql.points(
            device, metric, t0, end, 1000
        )
        assert influx.points(device, metric, t0 + 7_000, end, 3) == sql.points(
            device, metric, t0 + 7_000, end, 3
        )
        for every in (60_000, 45_000):
            assert influx.buckets(device, metric, t0 + 1, end, every, 100) == sql.buckets(
                device, metric, t0 + 1, end, every, 100
            )
    with engine.connect() as c:
        assert influx.has(c, ext, "pressure_mpa", t0 + 7_000, 1_000)
        assert not influx.has(c, ext, "pressure_mpa", t0 + 7_000, 1_001)


def test_hostile_ids_in_queries_find_nothing_and_break_nothing(
    stores: tuple[Engine, str, InfluxReadingsStore, SqlReadingsStore],
) -> None:
    _engine, site, influx, _sql = stores
    ext = f"{site}-ext"
    t = now_ms()
    for metric in ('pressure_mpa") |> drop() //', "${x}", 'a" or true or "'):
        assert influx.points(ext, metric, t - 3_600_000, t, 10) == []
        assert influx.buckets(ext, metric, t - 3_600_000, t, 60_000, 10) == []

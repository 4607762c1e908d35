"""The device_state write-back: what the writer keeps in memory is what the table holds
after a flush, on SQLite and PostgreSQL, for hundreds of devices in one statement page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from collector.presence import DeviceStates
from core.contract import Event, Telemetry, now_ms
from core.db import SQLITE_MAX_PARAMETERS, make_engine
from core.models import DeviceState
from tests.builders import make_site
from tests.conftest import unique


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def stored(engine: Engine, device_ids: list[str]) -> dict[str, dict[str, object]]:
    with engine.connect() as c:
        rows = c.execute(select(DeviceState).where(DeviceState.device_id.in_(device_ids)))
        return {r.device_id: dict(r._mapping) for r in rows}


def test_a_flush_writes_every_dirty_device_as_it_is_in_memory(engine: Engine) -> None:
    site = unique("s")
    n = SQLITE_MAX_PARAMETERS // 8 + 7  # more than one statement of 8 columns a row
    ids = [f"{site}-d{i}" for i in range(n)]
    make_site(engine, site, dict.fromkeys(ids, "warehouse_env"))
    states = DeviceStates({"warehouse_env": 300_000})
    with engine.begin() as c:
        states.load(c, ids)
    t = now_ms()
    for i, device_id in enumerate(ids):
        metrics = {"temperature_c": 20.5 + i, "smoke": i % 2 == 0, "mode": "auto", "n": i}
        if i % 3 == 0:
            metrics["battery_pct"] = 50.0 + i % 50
        states.saw(Telemetry(device_id, site, t + i, i, metrics), t + 1000)
    states.saw(Event(ids[0], site, t + 5000, 99, "fault", {"code": "引号\"'"}), t + 5000)
    with engine.begin() as c:
        changes = states.flush(c)
    assert {c.device_id for c in changes} == set(ids), "each went unknown → online"
    rows = stored(engine, ids)
    for device_id in ids:
        row, live = rows[device_id], states.states[device_id]
        assert row["presence"] == "online"
        assert row["presence_since_ms"] == live.presence_since_ms
        assert row["last_seen_ms"] == live.last_seen_ms
        assert row["last_seq"] == live.last_seq
        assert row["last_values"] == live.last_values
        assert row["battery_pct"] == live.battery_pct
        assert row["fault"] is live.fault
    assert rows[ids[0]]["fault"] is True and rows[ids[1]]["battery_pct"] is None
    assert not states.dirty


def test_a_device_missing_from_the_table_is_skipped_not_an_error(engine: Engine) -> None:
    site = unique("s")
    known = f"{site}-known"
    make_site(engine, site, {known: "warehouse_env"})
    states = DeviceStates({})
    with engine.begin() as c:
        states.load(c, [known])
    states.states[f"{site}-gone"] = type(states.states[known])()
    for device_id in (known, f"{site}-gone"):
        states.saw(Telemetry(device_id, site, now_ms(), 1, {"t": 1.0}), now_ms())
    with engine.begin() as c:
        states.flush(c)
    assert stored(engine, [known, f"{site}-gone"]).keys() == {known}

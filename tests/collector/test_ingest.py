"""Publish → stored, through the real Mosquitto into SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.contract import (
    encode_event,
    encode_telemetry,
    now_ms,
    topic_for,
)
from core.db import make_engine
from core.ingest import CommittedBatch
from tests.builders import make_site
from tests.collector.helpers import count, publish_all, running_collector, wait_for
from tests.conftest import unique


@pytest.fixture
def site(db_url: str) -> tuple[Any, str]:
    engine = make_engine(db_url)
    site_id = unique("s")
    make_site(
        engine,
        site_id,
        {
            f"{site_id}-ext": "extinguisher",
            f"{site_id}-sd": "smoke_detector",
            f"{site_id}-tag": "asset_tag",
        },
    )
    yield engine, site_id
    engine.dispose()


def test_telemetry_events_and_status_are_stored(
    site: tuple[Any, str], broker: tuple[str, int]
) -> None:
    engine, s = site
    ext, sd = f"{s}-ext", f"{s}-sd"
    t = now_ms()
    batches: list[CommittedBatch] = []
    with running_collector(engine, broker, batches=batches):
        publish_all(
            broker,
            [
                (
                    topic_for(s, ext, "telemetry"),
                    encode_telemetry(t, 1, {"pressure_mpa": 1.25, "present": True}),
                ),
                (
                    topic_for(s, ext, "telemetry"),
                    encode_telemetry(t + 1000, 2, {"pressure_mpa": 1.2}),
                ),
                (topic_for(s, sd, "event"), encode_event(t, 7, "fire_alarm", {"level": 2})),
                (
                    topic_for(s, f"{s}-tag", "telemetry"),
                    encode_telemetry(t, 1, {"zone": "H1", "hazardous": True}),
                ),
            ],
        )
        wait_for(lambda: count(engine, "select count(*) from readings") == 5, what="5 readings")
        wait_for(lambda: count(engine, "select count(*) from device_events") == 1, what="event")
    with engine.connect() as c:
        rows = c.exec_driver_sql(
            "select metric, ts_ms, seq, value, text from readings order by device_id, metric, ts_ms"
        ).all()
        event = c.exec_driver_sql(
            "select device_id, event, seq, ts_ms, detail from device_events"
        ).one()
        state = c.exec_driver_sql(
            f"select presence, last_seq, last_values from device_state where device_id = '{ext}'"
        ).one()
    assert (rows[0].metric, rows[0].seq, rows[0].value) == ("present", 1, 1.0)
    assert [(r.metric, r.value) for r in rows if r.metric == "pressure_mpa"] == [
        ("pressure_mpa", 1.25),
        ("pressure_mpa", 1.2),
    ]
    assert ("zone", None, "H1") in [(r.metric, r.value, r.text) for r in rows]
    assert (event.device_id, event.event, event.seq, event.ts_ms) == (sd, "fire_alarm", 7, t)
    last_values = (
        state.last_values
        if isinstance(state.last_values, dict)
        else orjson.loads(state.last_values)
    )
    assert last_values["pressure_mpa"] == {"v": 1.2, "ts": t + 1000}
    assert state.last_seq == 2
    # downstream saw each new message once, the fire alarm among them
    seen_events = [e.event for b in batches for e in b.events]
    assert seen_events == ["fire_alarm"]
    assert sum(len(b.telemetry) for b in batches) == 3


def test_redelivered_messages_are_stored_once(
    site: tuple[Any, str], broker: tuple[str, int]
) -> None:
    engine, s = site
    ext, sd = f"{s}-ext", f"{s}-sd"
    t = now_ms()
    telemetry = (
        topic_for(s, ext, "telemetry"),
        encode_telemetry(t, 5, {"pressure_mpa": 1.1, "present": True}),
    )
    event = (topic_for(s, sd, "event"), encode_event(t, 9, "fault"))
    with running_collector(engine, broker) as collector:
        publish_all(broker, [telemetry, event, telemetry, event])
        wait_for(lambda: collector.status().duplicates == 2, what="2 duplicates counted")
        publish_all(broker, [telemetry, event])
        wait_for(lambda: collector.status().duplicates == 4, what="4 duplicates counted")
    assert count(engine, "select count(*) from readings") == 2
    assert count(engine, "select count(*) from device_events") == 1


def _presence(engine: Any, device_id: str) -> str:
    with engine.connect() as c:
        return str(
            c.exec_driver_sql(
                f"select presence from device_state where device_id = '{device_id}'"
            ).scalar_one()
        )


def _causes(engine: Any, device_id: str) -> list[tuple[str, str]]:
    with engine.connect() as c:
        return [
            tuple(r)
            for r in c.exec_driver_sql(
                "select presence, cause from presence_changes"
                f" where device_id = '{device_id}' order by id"
            )
        ]


def test_out_of_order_and_clock_skewed_messages_are_new_not_duplicates(
    site: tuple[Any, str], broker: tuple[str, int]
) -> None:
    engine, s = site
    ext = f"{s}-ext"
    t = now_ms()
    topic = topic_for(s, ext, "telemetry")
    late = [
        (topic, encode_telemetry(t - 60_000 - i, 100 + i, {"pressure_mpa": 1.1})) for i in range(5)
    ]
    with running_collector(engine, broker) as collector:
        publish_all(broker, [(topic, encode_telemetry(t, 1, {"pressure_mpa": 1.2}))])
        wait_for(lambda: count(engine, "select count(*) from readings") == 1, what="first")
        publish_all(broker, late)
        wait_for(lambda: count(engine, "select count(*) from readings") == 6, what="late ones")
        publish_all(broker, late[:2])
        wait_for(lambda: collector.status().duplicates == 2, what="2 duplicates")
    assert count(engine, "select count(*) from readings") == 6
    with engine.connect() as c:
        state = c.exec_driver_sql(
            f"select last_values from device_state where device_id = '{ext}'"
        ).scalar_one()
    values = state if isinstance(state, dict) else orjson.loads(state)
    assert values["pressure_mpa"] == {"v": 1.2, "ts": t}, "an older reading never overwrites"

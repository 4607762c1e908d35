"""Every kind of bad input becomes a counted, inspectable dead letter; nothing good is lost.

The collector subscribes to the whole parkguard/ tree, so these tests use a broker of their
own: anything else published on a shared broker would be (rightly) dead-lettered too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from core.contract import encode_event, encode_telemetry, now_ms, topic_for
from core.db import make_engine
from tests.builders import make_site
from tests.collector.helpers import count, publish_all, running_collector, wait_for
from tests.conftest import unique


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def _bad_messages(s: str, ext: str, t: int) -> list[tuple[str, bytes, str]]:
    tele = topic_for(s, ext, "telemetry")
    day = 24 * 3600 * 1000
    return [
        ("parkguard/only/two", b"{}", "bad_topic"),
        (f"parkguard/{s}/{'x' * 65}/telemetry", b"{}", "bad_topic"),
        (f"parkguard/{s}/{ext}/commands", b"{}", "bad_topic"),
        (tele, b"\xff\xfe\x00garbage", "not_utf8"),
        (tele, b"{not json", "not_json"),
        (tele, b"", "not_json"),
        (tele, b"[1, 2, 3]", "not_object"),
        (tele, b'"just a string"', "not_object"),
        (
            tele,
            b'{"ts": 1, "seq": 1, "metrics": {"pressure_mpa": 1.2}, "pad": "'
            + b"x" * 70_000
            + b'"}',
            "too_large",
        ),
        (tele, b'{"seq": 1, "metrics": {}}', "invalid_fields"),
        (tele, b'{"ts": %d, "seq": "7", "metrics": {}}' % t, "invalid_fields"),
        (tele, b'{"ts": %d, "seq": -1, "metrics": {}}' % t, "invalid_fields"),
        (tele, b'{"ts": "yesterday", "seq": 1, "metrics": {}}', "invalid_fields"),
        (tele, b'{"ts": "2026-11-27T10:00:00", "seq": 1, "metrics": {}}', "invalid_fields"),
        (tele, b'{"ts": %d, "seq": 1, "metrics": {"pressure_mpa": null}}' % t, "invalid_fields"),
        (
            tele,
            b'{"ts": %d, "seq": 1, "metrics": {"present": "%s"}}' % (t, b"y" * 65),
            "invalid_fields",
        ),
        (tele, b'{"ts": %d, "seq": 1, "metrics": {}, "extra": 1}' % t, "invalid_fields"),
        (tele, encode_telemetry(t, 1, {"pressure_mpa": True}), "invalid_fields"),
        (
            topic_for(s, "ghost-1", "telemetry"),
            encode_telemetry(t, 1, {"pressure_mpa": 1.2}),
            "unknown_device",
        ),
        (
            topic_for("other-site", ext, "telemetry"),
            encode_telemetry(t, 1, {"present": True}),
            "unknown_device",
        ),
        (tele, encode_telemetry(t, 1, {"temperature_c": 20.0}), "unknown_metric"),
        (topic_for(s, ext, "event"), encode_event(t, 1, "fire_alarm"), "unknown_event"),
        (tele, encode_telemetry(t, 1, {"pressure_mpa": 999.0}), "out_of_range"),
        (tele, encode_telemetry(t, 1, {"pressure_mpa": -0.5}), "out_of_range"),
        (tele, b'{"ts": %d, "seq": 1, "metrics": {"pressure_mpa": 1e308}}' % t, "out_of_range"),
        (tele, encode_telemetry(t + 3600_000, 1, {"pressure_mpa": 1.2}), "ts_future"),
        (tele, encode_telemetry(t - 30 * day, 1, {"pressure_mpa": 1.2}), "ts_too_old"),
    ]


def test_every_bad_input_is_a_dead_letter_and_good_messages_still_land(
    engine: Engine, private_broker: tuple[str, int]
) -> None:
    s = unique("s")
    ext = f"{s}-ext"
    make_site(engine, s, {ext: "extinguisher"})
    t = now_ms()
    bad = _bad_messages(s, ext, t)
    good = [
        (topic_for(s, ext, "telemetry"), encode_telemetry(t + i, i, {"pressure_mpa": 1.2}))
        for i in range(10)
    ]
    mixed: list[tuple[str, bytes]] = []
    for i, (topic, payload, _reason) in enumerate(bad):
        mixed.append((topic, payload))
        if i < len(good):
            mixed.append(good[i])
    with running_collector(engine, private_broker) as collector:
        publish_all(private_broker, mixed)
        wait_for(
            lambda: count(engine, "select count(*) from dead_letters") == len(bad),
            what="every dead letter",
        )
        wait_for(
            lambda: count(engine, "select count(*) from readings") == len(good),
            what="every good reading",
        )
        status = collector.status()
    expected: dict[str, int] = {}
    for _t, _p, reason in bad:
        expected[reason] = expected.get(reason, 0) + 1
    assert status.dead_letters == expected
    with engine.connect() as c:
        stored = [
            tuple(r)
            for r in c.exec_driver_sql(
                "select topic, reason, payload_size, length(payload), detail"
                " from dead_letters order by id"
            )
        ]
    # events jump the telemetry queue, so compare without order
    assert sorted((r[0], r[1], r[2], r[3]) for r in stored) == sorted(
        (topic[:512], reason, len(payload), min(len(payload), 4096))
        for topic, payload, reason in bad
    )
    assert all(r[4] for r in stored), "every dead letter says why"


def test_the_collector_keeps_going_after_a_flood_of_garbage(
    engine: Engine, private_broker: tuple[str, int]
) -> None:
    s = unique("s")
    ext = f"{s}-ext"
    make_site(engine, s, {ext: "extinguisher"})
    t = now_ms()
    flood: list[tuple[str, bytes]] = [(topic_for(s, ext, "telemetry"), b"\x00" * 100)] * 500
    flood.append((topic_for(s, ext, "telemetry"), encode_telemetry(t, 1, {"present": True})))
    with running_collector(engine, private_broker):
        publish_all(private_broker, flood)
        wait_for(lambda: count(engine, "select count(*) from readings") == 1, what="the reading")
    assert count(engine, "select count(*) from dead_letters") == 500

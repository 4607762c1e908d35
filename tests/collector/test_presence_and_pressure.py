"""Presence when devices or the broker go quiet, and back-pressure when the writer falls behind."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine

from core.catalogue import load_catalogue
from core.contract import encode_status, encode_telemetry, now_ms, topic_for
from core.db import make_engine
from tests.builders import make_site
from tests.collector.helpers import count, publish_all, running_collector, wait_for
from tests.conftest import Mosquitto, unique


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def _presence(engine: Engine, device_id: str) -> str:
    with engine.connect() as c:
        return str(
            c.exec_driver_sql(
                "select presence from device_state where device_id = ?", (device_id,)
            ).scalar_one()
        )


def test_a_silent_device_goes_offline_after_its_heartbeat_window(
    engine: Engine, mosquitto: Mosquitto
) -> None:
    s = unique("s")
    quiet, chatty = f"{s}-quiet", f"{s}-chatty"
    make_site(engine, s, {quiet: "extinguisher", chatty: "extinguisher"})
    catalogue = load_catalogue()
    extinguisher = catalogue.device_types["extinguisher"].model_copy(update={"heartbeat_s": 2})
    fast = catalogue.model_copy(
        update={"device_types": {**catalogue.device_types, "extinguisher": extinguisher}}
    )
    topic = topic_for(s, quiet, "telemetry")
    with running_collector(engine, mosquitto.address, catalogue=fast, presence_sweep_s=0.2):
        publish_all(mosquitto.address, [(topic, encode_telemetry(now_ms(), 1, {"present": True}))])
        wait_for(lambda: _presence(engine, quiet) == "online", what="online")
        wait_for(lambda: _presence(engine, quiet) == "offline", timeout=10, what="offline")
        # a device that was never heard from is offline too once the window has passed
        assert _presence(engine, chatty) == "offline"
    with engine.connect() as c:
        rows = c.exec_driver_sql(
            "select presence, cause from presence_changes where device_id = ? order by id",
            (quiet,),
        ).all()
    assert [tuple(r) for r in rows][:2] == [("online", "message"), ("offline", "silence")]


def test_losing_the_broker_makes_presence_unknown_not_online(
    engine: Engine, mosquitto: Mosquitto
) -> None:
    s = unique("s")
    ext = f"{s}-ext"
    make_site(engine, s, {ext: "extinguisher"})
    topic = topic_for(s, ext, "telemetry")
    with running_collector(engine, mosquitto.address) as collector:
        publish_all(mosquitto.address, [(topic, encode_telemetry(now_ms(), 1, {"present": True}))])
        wait_for(lambda: _presence(engine, ext) == "online", what="online")
        mosquitto.stop()
        wait_for(lambda: _presence(engine, ext) == "unknown", what="unknown")
        assert not collector.status().broker_connected
        mosquitto.start()
        wait_for(lambda: collector.status().broker_connected, timeout=40, what="reconnected")
        publish_all(mosquitto.address, [(topic, encode_telemetry(now_ms(), 2, {"present": True}))])
        wait_for(lambda: _presence(engine, ext) == "online", what="online again")
    assert count(engine, "select count(*) from readings") == 2


def test_a_full_inbox_holds_the_broker_back_and_loses_nothing(
    engine: Engine, mosquitto: Mosquitto
) -> None:
    s = unique("s")
    devices = [f"{s}-e{i}" for i in range(10)]
    make_site(engine, s, dict.fromkeys(devices, "extinguisher"))
    t = now_ms()
    messages = [
        (topic_for(s, d, "telemetry"), encode_telemetry(t + seq, seq, {"present": True}))
        for seq in range(300)
        for d in devices
    ]
    with running_collector(
        engine, mosquitto.address, queue_max=100, batch_size=50, flush_interval_ms=50
    ) as collector:
        # Another program holds the database's write lock: the writer falls behind for sure,
        # however fast this machine is, until the lock goes.
        blocker = sqlite3.connect(str(engine.url.database), isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            publish_all(mosquitto.address, messages)
            wait_for(
                lambda: collector.metrics.queue_full._value.get() > 0,
                timeout=20,
                what="back-pressure on the broker",
            )
            assert len(collector.inbox) <= 100
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        wait_for(
            lambda: count(engine, "select count(*) from readings") == len(messages),
            timeout=60,
            what="every message",
        )
        assert collector.status().queue_depth == 0


def test_status_messages_and_last_wills_drive_presence(
    engine: Engine, mosquitto: Mosquitto
) -> None:
    s = unique("s")
    ext = f"{s}-ext"
    make_site(engine, s, {ext: "extinguisher"})
    status_topic = topic_for(s, ext, "status")
    connected_at = now_ms()
    with running_collector(engine, mosquitto.address):
        publish_all(mosquitto.address, [(status_topic, encode_status(connected_at, True))])
        wait_for(lambda: _presence(engine, ext) == "online", what="online by status")
        publish_all(mosquitto.address, [(status_topic, encode_status(now_ms(), False))])
        wait_for(lambda: _presence(engine, ext) == "offline", what="offline by status")

        # a device with a last will (stamped when it connected) that then dies
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("dev"))
        device.will_set(status_topic, encode_status(now_ms(), False), qos=1, retain=True)
        device.connect(*mosquitto.address, keepalive=5)
        device.loop_start()
        device.publish(
            topic_for(s, ext, "telemetry"),
            encode_telemetry(now_ms() + 50, 1, {"present": True}),
            qos=1,
        ).wait_for_publish(5)
        wait_for(lambda: _presence(engine, ext) == "online", what="online by message")
        device.loop_stop()
        sock = device.socket()
        assert sock is not None
        sock.close()  # no DISCONNECT: the broker publishes the will
        wait_for(lambda: _presence(engine, ext) == "offline", what="offline by last will")
    assert _causes(engine, ext)[:4] == [
        ("online", "status"),
        ("offline", "status"),
        ("online", "message"),
        ("offline", "status"),
    ]

    # the device comes back and talks; a new collector then receives the retained will
    # again on subscribing: older than what the device has said since, so it counts for nothing
    publish_all(
        mosquitto.address,
        [(topic_for(s, ext, "telemetry"), encode_telemetry(now_ms() + 100, 2, {"present": True}))],
    )
    with running_collector(engine, mosquitto.address) as collector:
        wait_for(lambda: collector.status().stored >= 0, what="started")
        time.sleep(1.0)
        assert _presence(engine, ext) != "offline"


def _causes(engine: Engine, device_id: str) -> list[tuple[str, str]]:
    with engine.connect() as c:
        rows = c.exec_driver_sql(
            "select presence, cause from presence_changes where device_id = ? order by id",
            (device_id,),
        ).all()
    return [(r[0], r[1]) for r in rows if r[1] not in ("startup", "broker_lost")]

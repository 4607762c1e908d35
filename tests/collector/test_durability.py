"""Nothing is lost across a collector outage or a kill -9; nothing is stored twice.

These run against a Mosquitto of the test's own, configured like production
(deploy/mosquitto/: persistence, large queues), because the machine's broker keeps only
1,000 queued messages per client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.contract import encode_telemetry, now_ms, topic_for
from core.db import make_engine
from tests.builders import make_site
from tests.collector.helpers import count, publish_all, publisher, running_collector, wait_for
from tests.conftest import ROOT, unique


@pytest.fixture
def db(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Engine, str]]:
    engine = make_engine(sqlite_url)
    yield engine, sqlite_url
    engine.dispose()


def _messages(site: str, devices: list[str], per_device: int, t0: int) -> list[tuple[str, bytes]]:
    return [
        (topic_for(site, d, "telemetry"), encode_telemetry(t0 + seq, seq, {"pressure_mpa": 1.2}))
        for seq in range(per_device)
        for d in devices
    ]


def test_messages_published_while_the_collector_is_down_are_delivered(
    db: tuple[Engine, str], private_broker: tuple[str, int]
) -> None:
    engine, _url = db
    s = unique("s")
    devices = [f"{s}-e{i}" for i in range(5)]
    make_site(engine, s, dict.fromkeys(devices, "extinguisher"))
    client_id = unique("collector")
    with running_collector(engine, private_broker, client_id=client_id):
        pass  # the broker now knows the collector's session and subscription
    publish_all(private_broker, _messages(s, devices, 400, now_ms()))
    assert count(engine, "select count(*) from readings") == 0
    with running_collector(engine, private_broker, client_id=client_id):
        wait_for(lambda: count(engine, "select count(*) from readings") == 2000, what="2000")
    assert count(engine, "select count(distinct device_id || ':' || seq) from readings") == 2000


@pytest.mark.slow
def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(
    db: tuple[Engine, str], private_broker: tuple[str, int], tmp_path: Path
) -> None:
    engine, url = db
    s = unique("s")
    devices = [f"{s}-e{i}" for i in range(40)]
    make_site(engine, s, dict.fromkeys(devices, "extinguisher"))
    host, port = private_broker
    env = {
        **os.environ,
        "PARKGUARD_DATABASE_URL": url,
        "PARKGUARD_MQTT_URL": f"mqtt://{host}:{port}",
        "PARKGUARD_MQTT_CLIENT_ID": unique("collector"),
    }
    env.pop("PARKGUARD_SITE", None)
    log = tmp_path / "collector.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "parkguard.cli", "collect"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    total = 25_000
    messages = _messages(s, devices, total // len(devices), now_ms() - 60_000)
    collector = start()
    try:
        deadline = time.monotonic() + 30
        attempt = 0
        while count(engine, "select count(*) from readings") == 0:
            assert time.monotonic() < deadline, "the collector never stored a probe"
            probe = encode_telemetry(now_ms(), 10**9 + attempt, {"present": True})
            publish_all(private_broker, [(topic_for(s, devices[0], "telemetry"), probe)])
            attempt += 1
            time.sleep(0.3)
        time.sleep(0.5)
        baseline = count(engine, "select count(*) from readings")

        client = publisher(private_broker)
        infos = []

        def publish() -> None:
            for topic, payload in messages:
                infos.append(client.publish(topic, payload, qos=1))

        thread = threading.Thread(target=publish)
        thread.start()
        wait_for(
            lambda: count(engine, "select count(*) from readings") > 3000,
            timeout=60,
            what="3000 stored",
        )
        collector.send_signal(signal.SIGKILL)
        collector.wait(timeout=10)
        stored_at_kill = count(engine, "select count(*) from readings") - baseline
        thread.join()
        for info in infos:
            info.wait_for_publish(timeout=60)
        client.loop_stop()
        client.disconnect()
        assert stored_at_kill < total, "the kill came too late to prove anything"

        collector = start()
        wait_for(
            lambda: count(engine, "select count(*) from readings") == total + baseline,
            timeout=120,
            what=f"all {total} stored",
        )
        time.sleep(1.0)  # anything redelivered late must still be stored once
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)
    assert count(engine, "select count(*) from readings") == total + baseline
    assert (
        count(engine, "select count(distinct device_id || ':' || seq) from readings")
        == total + baseline
    )
    print(f"killed after {stored_at_kill} of {total} stored; all {total} stored once after restart")

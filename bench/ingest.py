"""Ingest benchmark: publish N QoS 1 messages from M devices to Mosquitto, measure what the
collector (a separate `parkguard collect` process, acknowledging after commit) stores.

    python bench/ingest.py --messages 450000 --devices 300 --rate 7500

Prints the sustained stored rate, loss, duplicates, collector CPU and peak RSS. Starts its own
Mosquitto (deploy/mosquitto/mosquitto-test.conf) on a free port and a fresh SQLite database
unless --broker-port / --database-url are given.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.contract import encode_telemetry, now_ms, topic_for  # noqa: E402
from core.db import make_engine, upgrade  # noqa: E402
from core.models import Device, DeviceState, Site, Zone  # noqa: E402


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = (ROOT / "deploy/mosquitto/mosquitto-test.conf").read_text()
    (workdir / "data").mkdir()
    path = workdir / "mosquitto.conf"
    path.write_text(conf.replace("@PORT@", str(port)).replace("@DATA@", str(workdir / "data")))
    proc = subprocess.Popen(["mosquitto", "-c", str(path)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def make_devices(url: str, site: str, n: int) -> list[str]:
    upgrade(url)
    engine = make_engine(url)
    ids = [f"bench-{i:05d}" for i in range(n)]
    with engine.begin() as c:
        c.execute(insert(Site), [{"id": site, "name_zh": "基准", "name_en": "Bench"}])
        c.execute(
            insert(Zone),
            [
                {
                    "id": f"{site}-z",
                    "site_id": site,
                    "kind": "warehouse",
                    "name_zh": "区",
                    "name_en": "Zone",
                    "polygon": [],
                }
            ],
        )
        c.execute(
            insert(Device),
            [
                {
                    "id": d,
                    "site_id": site,
                    "type": "warehouse_env",
                    "zone_id": f"{site}-z",
                    "label": d,
                }
                for d in ids
            ],
        )
        c.execute(insert(DeviceState), [{"device_id": d, "last_values": {}} for d in ids])
    engine.dispose()
    return ids


def proc_stats(pid: int) -> tuple[float, int]:
    """CPU seconds and peak RSS (bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return cpu, peak


def wait_until_subscribed(engine: Engine, client: mqtt.Client, topic: str, ts_ms: int) -> None:
    """Publish a probe reading (humidity only: not counted) until the collector stored it,
    so that no measured message goes out before the collector has subscribed."""
    probe = text("select count(*) from readings where metric = 'humidity_pct' and ts_ms = :ts")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        client.publish(topic, encode_telemetry(ts_ms, 0, {"humidity_pct": 1.0}), qos=1)
        time.sleep(0.5)
        with engine.connect() as c:
            if c.execute(probe, {"ts": ts_ms}).scalar_one():
                return
    raise SystemExit("the collector did not store a probe within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=450_000)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--rate", type=float, default=7500, help="messages per second offered")
    parser.add_argument("--database-url")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="parkguard-bench-"))
    broker, port = start_broker(work)
    url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    site = "bench"
    devices = make_devices(url, site, args.devices)
    env = {
        **os.environ,
        "PARKGUARD_DATABASE_URL": url,
        "PARKGUARD_MQTT_URL": f"mqtt://127.0.0.1:{port}",
        "PARKGUARD_MQTT_CLIENT_ID": "bench-collector",
    }
    env.pop("PARKGUARD_SITE", None)
    collector = subprocess.Popen(
        [sys.executable, "-m", "parkguard.cli", "collect"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = make_engine(url)

    def stored() -> int:
        with engine.connect() as c:
            return int(
                c.execute(
                    text("select count(*) from readings where metric = 'temperature_c'")
                ).scalar_one()
            )

    try:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
        client.max_inflight_messages_set(0)  # paho rescans its queue on every ack when capped
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", port)
        client.loop_start()
        topics = [topic_for(site, d, "telemetry") for d in devices]
        t0 = now_ms() - 1000
        wait_until_subscribed(engine, client, topics[0], t0 - 1000)
        cpu0, _ = proc_stats(collector.pid)
        started = time.perf_counter()
        last_info = None

        def publish() -> None:
            nonlocal last_info
            interval = 1.0 / args.rate
            for i in range(args.messages):
                target = started + i * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                d = i % len(topics)
                payload = encode_telemetry(
                    t0 + i // len(topics),
                    i // len(topics),
                    {"temperature_c": 21.5, "humidity_pct": 40.0},
                )
                last_info = client.publish(topics[d], payload, qos=1)

        thread = threading.Thread(target=publish)
        thread.start()
        thread.join()
        published_s = time.perf_counter() - started
        assert last_info is not None
        last_info.wait_for_publish(timeout=120)
        deadline = time.monotonic() + 120
        while stored() < args.messages and time.monotonic() < deadline:
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        cpu1, peak = proc_stats(collector.pid)
        n = stored()
        with engine.connect() as c:
            distinct = int(
                c.execute(
                    text(
                        "select count(*) from (select distinct device_id, seq from readings "
                        "where metric = 'temperature_c') x"
                    )
                ).scalar_one()
            )
        client.loop_stop()
        client.disconnect()
        print(
            f"messages published   {args.messages} from {args.devices} devices "
            f"({args.messages / published_s:,.0f}/s offered over {published_s:.1f} s)"
        )
        print(f"stored               {n} messages ({2 * n} readings)")
        print(f"sustained stored rate {n / elapsed:,.0f} messages/s over {elapsed:.1f} s")
        print(f"loss                 {args.messages - distinct}")
        print(f"duplicates           {n - distinct}")
        cpu = cpu1 - cpu0
        print(f"collector CPU        {cpu:.1f} s ({cpu / elapsed * 100:.0f}% of one core)")
        print(f"collector peak RSS   {peak / 2**20:.0f} MiB")
    finally:
        collector.terminate()
        collector.wait(timeout=30)
        broker.terminate()
        broker.wait(timeout=10)
        engine.dispose()


if __name__ == "__main__":
    main()

"""End-to-end fire-alarm latency: a ``fire_alarm`` event published to the broker until its
alert arrives, committed, on the SSE stream ``GET /api/v1/alerts/stream``.

    python bench/alarm_latency.py                      # Mosquitto at 127.0.0.1:1883, SQLite
    python bench/alarm_latency.py --alarms 500 --background 2000
    python bench/alarm_latency.py --database-url postgresql://postgres@127.0.0.1:5432/test

Three processes, as in production: the server (collector + rules service + API on uvicorn,
the demo park's rules), a load generator publishing telemetry in the background, and this
one, which publishes one alarm at a time (QoS 1) from a fresh detector and reads the stream.
It prints p50, p99 and max without background load and with ``--background`` telemetry
messages/s (QoS 1) flowing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "examples" / "demo-park"
ZONES = 10
ENV_DEVICES = 300


# ---- set-up ---------------------------------------------------------------------------------


def make_park(url: str, site: str, detectors: int) -> None:
    from core.db import make_engine, upgrade
    from core.models import Device, DeviceState, Site, Zone

    upgrade(url)
    engine = make_engine(url)
    zones = [f"{site}-z{i}" for i in range(ZONES)]
    devices = [(f"{site}-sd{i}", "smoke_detector", zones[i % ZONES]) for i in range(detectors)]
    devices += [(f"{site}-env{i}", "warehouse_env", zones[i % ZONES]) for i in range(ENV_DEVICES)]
    with engine.begin() as c:
        c.execute(insert(Site), [{"id": site, "name_zh": "基准园区", "name_en": "Bench park"}])
        c.execute(
            insert(Zone),
            [
                {"id": z, "site_id": site, "kind": "warehouse", "name_zh": z, "name_en": z}
                | {"polygon": []}
                for z in zones
            ],
        )
        c.execute(
            insert(Device),
            [
                {"id": d, "site_id": site, "type": t, "zone_id": z, "label": d}
                for d, t, z in devices
            ],
        )
        c.execute(
            insert(DeviceState),
            [{"device_id": d, "presence": "unknown", "last_values": {}} for d, _, _ in devices],
        )
    engine.dispose()


# ---- the server process ---------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from api.app import create_app
    from api.context import AppContext
    from collector.client import BrokerAddress
    from collector.service import Collector
    from core.catalogue import load_catalogue
    from core.db import make_engine, session_factory
    from core.readings import SqlReadingsStore
    from core.settings import Settings
    from rules.service import RulesService
    from rules.spec import load_site_rules

    host, port = args.broker.split(":")
    settings = Settings(  # a short session: a bench's sessions must not pile up on the broker
        database_url=args.database_url,
        mqtt_client_id=f"bench-{uuid.uuid4().hex[:8]}",
        mqtt_session_expiry_s=60,
    )
    engine = make_engine(args.database_url)
    rules = RulesService(args.database_url, load_site_rules(DEMO_SITE))
    rules.start()
    collector = Collector(
        settings,
        engine,
        SqlReadingsStore(engine),
        load_catalogue(),
        BrokerAddress(host, int(port)),
        listeners=[rules.on_batch],
    )
    collector.start()
    ctx = AppContext(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        readings=collector.readings,
        catalogue=collector.catalogue,
        ingest_status=collector.status,
        registry=collector.metrics.registry,
        extras={"alerts": rules.store},
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx), host="127.0.0.1", port=args.port, log_level="warning", ws="none"
        )
    )
    from parkguard.runtime import settle_heap
    from parkguard.users import bootstrap_admin

    bootstrap_admin(engine, demo=False, url=f"http://127.0.0.1:{args.port}/")
    settle_heap()  # as the parkguard commands do once started
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        status = collector.status()
        collector.stop()
        rules.stop()
        engine.dispose()
        print(
            json.dumps(
                {
                    "stored": status.stored,
                    "messages_in": status.messages_in,
                    "dead_letters": status.dead_letters,
                    "rules": {
                        "telemetry": rules.stats.telemetry,
                        "events": rules.stats.events,
                        "errors": rules.stats.engine_errors + rules.stats.worker_errors,
                    },
                }
            ),
            file=sys.stderr,
        )


# ---- the background load --------------------------------------------------------------------


def load(args: argparse.Namespace) -> None:
    from core.contract import MetricValue, encode_telemetry, now_ms, topic_for

    host, port = args.broker.split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"load-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port))
    client.loop_start()
    devices = [f"{args.site}-env{i}" for i in range(ENV_DEVICES)]
    topics = [topic_for(args.site, d, "telemetry") for d in devices]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sent, seq, step = 0, 0, 0.01
    per_step = args.rate * step
    started = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - started) / step * per_step) - sent
        for _ in range(max(0, due)):
            i = sent % ENV_DEVICES
            if i == 0:
                seq += 1
            metrics: dict[str, MetricValue] = {
                "temperature_c": round(21 + random.random(), 2),
                "humidity_pct": 55.0,
                "gas_lel_pct": round(random.random() * 3, 2),
                "smoke": False,
            }
            client.publish(topics[i], encode_telemetry(now_ms(), seq, metrics), qos=1)
            sent += 1
        time.sleep(step / 2)
    client.loop_stop()
    client.disconnect()
    elapsed = time.perf_counter() - started
    print(json.dumps({"sent": sent, "rate": round(sent / elapsed)}), file=sys.stderr)


# ---- measuring ------------------------------------------------------------------------------


class Stream:
    """Reads the SSE stream in a thread; notes when each detector's pre-alarm arrives."""

    def __init__(self, url: str, token: str) -> None:
        self.headers = {"Authorization": f"Bearer {token}"}
        self.arrived: dict[str, float] = {}
        self.wakeup = threading.Condition()
        self.connected = threading.Event()
        self.closing = False
        self.response: httpx.Response | None = None
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()
        if not self.connected.wait(20):
            raise SystemExit("the SSE stream did not open")

    def _run(self, url: str) -> None:
        try:
            with httpx.stream("GET", url, headers=self.headers, timeout=None) as response:
                response.raise_for_status()
                self.response = response
                self.connected.set()
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    at = time.perf_counter()
                    change = json.loads(line[5:])
                    alert = change["alert"]
                    if change["action"] == "raised" and alert["rule"] == "fire-prealarm":
                        with self.wakeup:
                            self.arrived[alert["device"]] = at
                            self.wakeup.notify_all()
        except (httpx.HTTPError, RuntimeError, ValueError):
            if not self.closing:
                raise

    def close(self) -> None:
        self.closing = True
        if self.response is not None:
            self.response.close()

    def wait(self, device: str, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        with self.wakeup:
            while device not in self.arrived:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                self.wakeup.wait(left)
            return self.arrived[device]


def measure(
    client: mqtt.Client, stream: Stream, site: str, detectors: list[str], gap_s: float
) -> tuple[list[float], int]:
    from core.contract import encode_event, now_ms, topic_for

    latencies, lost = [], 0
    for device in detectors:
        payload = encode_event(now_ms(), 1, "fire_alarm", {"loop": 1})
        sent = time.perf_counter()
        client.publish(topic_for(site, device, "event"), payload, qos=1)
        arrived = stream.wait(device, timeout=5.0)
        if arrived is None:
            lost += 1
        else:
            latencies.append((arrived - sent) * 1000)
        time.sleep(gap_s)
    return latencies, lost


def report(name: str, latencies: list[float], lost: int) -> str:
    if not latencies:
        return f"{name}: no alarm arrived ({lost} lost)"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"{name}: n={len(ordered)} p50={statistics.median(ordered):.2f} ms "
        f"p99={p99:.2f} ms max={ordered[-1]:.2f} ms lost={lost}"
    )


def cpu_seconds(process: subprocess.Popen[Any]) -> float:
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calibrate() -> float:
    """Milliseconds for 5 million additions in a Python loop, best of three: figures from
    machines of different speed (or a shared one on a slow day) can be compared with it."""
    best = float("inf")
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for i in range(5_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="127.0.0.1:1883", help="host:port of Mosquitto")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--alarms", type=int, default=300, help="alarms per scenario")
    parser.add_argument("--background", type=int, default=2000, help="telemetry msg/s")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between alarms")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load first")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--site", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    if args.load:
        load(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="parkguard-alarm-bench-"))
    url, admin_url = bench_database(args.database_url, workdir)
    site = f"bench{uuid.uuid4().hex[:6]}"
    warm = 20
    make_park(url, site, 2 * (args.alarms + warm))
    port = free_port()
    script = [sys.executable, __file__, "--broker", args.broker, "--site", site]
    password = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PARKGUARD_ADMIN_PASSWORD": password}
    server = subprocess.Popen(
        [*script, "--serve", "--database-url", url, "--port", str(port)], env=env
    )
    loader: subprocess.Popen[bytes] | None = None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"alarm-{uuid.uuid4().hex[:8]}")
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/v1/health", server)
        stream = open_stream(port, password)
        host, broker_port = args.broker.split(":")
        client.connect(host, int(broker_port))
        client.loop_start()
        detectors = [f"{site}-sd{i}" for i in range(2 * (args.alarms + warm))]
        idle, busy = detectors[: args.alarms + warm], detectors[args.alarms + warm :]
        measure(client, stream, site, idle[:warm], args.gap)  # warm-up, not counted
        quiet = measure(client, stream, site, idle[warm:], args.gap)
        loader = subprocess.Popen([*script, "--load", "--rate", str(args.background)], env=env)
        time.sleep(args.warmup)
        measure(client, stream, site, busy[:warm], args.gap)
        server_cpu, loader_cpu, began = cpu_seconds(server), cpu_seconds(loader), time.time()
        loaded = measure(client, stream, site, busy[warm:], args.gap)
        busy_s = time.time() - began
        server_cpu, loader_cpu = cpu_seconds(server) - server_cpu, cpu_seconds(loader) - loader_cpu
        stream.close()
        print(f"CPU speed: a fixed pure-Python loop takes {calibrate():.0f} ms here")
        print(report("no background load", *quiet))
        print(report(f"with {args.background} telemetry msg/s", *loaded))
        print(
            f"  while loaded: server {server_cpu / busy_s:.0%} of one core, "
            f"load generator {loader_cpu / busy_s:.0%}"
        )
    finally:
        client.loop_stop()
        client.disconnect()
        for process in (loader, server):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(60)
        if admin_url is not None:
            _drop_pg_database(admin_url, url)
        shutil.rmtree(workdir, ignore_errors=True)


def bench_database(database_url: str | None, workdir: Path) -> tuple[str, str | None]:
    """The URL to run on (a fresh SQLite file in ``workdir``, or a fresh database on the
    PostgreSQL server of ``database_url``) and the URL to drop it through (None for SQLite)."""
    url = database_url or f"sqlite:///{workdir / 'bench.db'}"
    if url.startswith("postgresql"):
        return _fresh_pg_database(url), url
    return url, None


def open_stream(port: int, password: str) -> Stream:
    """Sign in as the admin and open the alerts SSE stream of the API on ``port``."""
    token = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/auth/token",
        data={"username": "admin", "password": password},
        timeout=10,
    ).json()["access_token"]
    return Stream(f"http://127.0.0.1:{port}/api/v1/alerts/stream", token)


def _wait_http(url: str, server: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server process ended")
        try:
            if httpx.get(url, timeout=1).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start")


def _fresh_pg_database(url: str) -> str:
    from sqlalchemy import create_engine, text

    from core.db import normalise_url

    url = normalise_url(url)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def _drop_pg_database(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text

    from core.db import normalise_url

    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


if __name__ == "__main__":
    main()

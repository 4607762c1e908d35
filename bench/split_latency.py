"""Fire-alarm latency across the split roles: a ``fire_alarm`` published to the broker until its
alert arrives on the SSE stream of an API that runs in another process than the collector.

    python bench/split_latency.py                        # Mosquitto at 127.0.0.1:1883, SQLite
    python bench/split_latency.py --database-url postgresql://postgres@127.0.0.1:5432/test

Three processes, as ``docker compose`` runs them: the collector role (collector + rules service
on a JournalBus), the API role (the alert store on a JournalBus, the API on uvicorn) and this
one, which publishes one alarm at a time from a fresh detector and reads the stream. The
alert crosses from one to the other through the database: NOTIFY on PostgreSQL, a 200 ms poll
on SQLite. Prints p50, p99 and max (bench/alarm_latency.py measures ``serve``, all in one).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from alarm_latency import (
    DEMO_SITE,
    ROOT,
    _drop_pg_database,
    _wait_http,
    bench_database,
    free_port,
    make_park,
    measure,
    open_stream,
    report,
)
from paho.mqtt.enums import CallbackAPIVersion


def collect(args: argparse.Namespace) -> None:
    """The collector role: ingest and rules; its alert bus follows the journal."""
    from collector.client import BrokerAddress
    from collector.service import Collector
    from core.catalogue import load_catalogue
    from core.db import make_engine
    from core.journal import JournalBus
    from core.readings import SqlReadingsStore
    from core.settings import Settings
    from rules.alerts import JOURNAL_CHANNEL
    from rules.service import RulesService
    from rules.spec import load_site_rules

    host, port = args.broker.split(":")
    url = args.database_url
    settings = Settings(  # a short session: a bench's sessions must not pile up on the broker
        database_url=url, mqtt_client_id=f"bench-{uuid.uuid4().hex[:8]}", mqtt_session_expiry_s=60
    )
    engine = make_engine(url)
    rules = RulesService(url, load_site_rules(DEMO_SITE), bus=JournalBus(JOURNAL_CHANNEL, url))
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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    collector.stop()
    rules.stop()
    engine.dispose()


def api(args: argparse.Namespace) -> None:
    """The API role: the alert store on a JournalBus, the app on uvicorn."""
    import uvicorn
    from prometheus_client import CollectorRegistry

    from api.app import create_app
    from api.context import AppContext
    from collector.heartbeat import read_status
    from core.catalogue import load_catalogue
    from core.db import make_engine, session_factory
    from core.journal import JournalBus
    from core.readings import SqlReadingsStore
    from core.settings import Settings
    from parkguard.users import bootstrap_admin
    from rules.alerts import JOURNAL_CHANNEL, AlertStore
    from rules.spec import load_site_rules

    url = args.database_url
    engine = make_engine(url)
    store = AlertStore(url, load_site_rules(DEMO_SITE), JournalBus(JOURNAL_CHANNEL, url))
    store.open()
    store.bus.start(store)  # type: ignore[attr-defined]
    ctx = AppContext(
        settings=Settings(database_url=url),
        engine=engine,
        sessions=session_factory(engine),
        readings=SqlReadingsStore(engine),
        catalogue=load_catalogue(),
        ingest_status=lambda: read_status(engine),
        registry=CollectorRegistry(),
        extras={"alerts": store},
    )
    bootstrap_admin(engine, demo=False, url=f"http://127.0.0.1:{args.port}/")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx), host="127.0.0.1", port=args.port, log_level="warning", ws="none"
        )
    )
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        store.bus.stop()  # type: ignore[attr-defined]
        store.close()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="127.0.0.1:1883", help="host:port of Mosquitto")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--alarms", type=int, default=200, help="alarms measured")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between alarms")
    parser.add_argument("--collect", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.collect:
        collect(args)
        return
    if args.api:
        api(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="parkguard-split-bench-"))
    url, admin_url = bench_database(args.database_url, workdir)
    site = f"bench{uuid.uuid4().hex[:6]}"
    warm = 20
    make_park(url, site, args.alarms + warm)
    port = free_port()
    script = [sys.executable, __file__, "--broker", args.broker, "--database-url", url]
    password = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PARKGUARD_ADMIN_PASSWORD": password}
    roles = [
        subprocess.Popen([*script, "--collect"], env=env),
        subprocess.Popen([*script, "--api", "--port", str(port)], env=env),
    ]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"alarm-{uuid.uuid4().hex[:8]}")
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/v1/health", roles[1])
        stream = open_stream(port, password)
        host, broker_port = args.broker.split(":")
        client.connect(host, int(broker_port))
        client.loop_start()
        detectors = [f"{site}-sd{i}" for i in range(args.alarms + warm)]
        measure(client, stream, site, detectors[:warm], args.gap)  # warm-up, not counted
        measured = measure(client, stream, site, detectors[warm:], args.gap)
        stream.close()
        backend = "PostgreSQL, NOTIFY" if admin_url is not None else "SQLite, 200 ms poll"
        print(report(f"collector → API process ({backend})", *measured))
    finally:
        client.loop_stop()
        client.disconnect()
        for process in reversed(roles):
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        if admin_url is not None:
            _drop_pg_database(admin_url, url)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

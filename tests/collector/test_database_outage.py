"""While the database is unreachable nothing is acknowledged and nothing is lost."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from core.contract import encode_telemetry, now_ms, topic_for
from core.db import make_engine
from tests.builders import make_site
from tests.collector.helpers import count, publish_all, running_collector, wait_for
from tests.conftest import PG_ADMIN_URL, Mosquitto, unique


def _block(database: str, allow: bool) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as c:
        c.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}'))
        if not allow:
            c.execute(
                text(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = :d and pid <> pg_backend_pid()"
                ),
                {"d": database},
            )
    admin.dispose()


def test_ingest_waits_out_a_database_outage(pg_url: str, mosquitto: Mosquitto) -> None:
    engine = make_engine(pg_url)
    database = pg_url.rsplit("/", 1)[1]
    s = unique("s")
    devices = [f"{s}-e{i}" for i in range(5)]
    make_site(engine, s, dict.fromkeys(devices, "extinguisher"))
    t = now_ms()
    first = [
        (topic_for(s, d, "telemetry"), encode_telemetry(t + i, i, {"present": True}))
        for i in range(20)
        for d in devices
    ]
    during = [
        (topic_for(s, d, "telemetry"), encode_telemetry(t + i, i, {"present": True}))
        for i in range(20, 220)
        for d in devices
    ]
    try:
        with running_collector(engine, mosquitto.address) as collector:
            publish_all(mosquitto.address, first)
            wait_for(lambda: count(engine, "select count(*) from readings") == 100, what="first")
            _block(database, allow=False)
            publish_all(mosquitto.address, during)
            time.sleep(2.0)  # the writer fails and retries; nothing is acknowledged meanwhile
            assert collector.status().stored == 100
            _block(database, allow=True)
            wait_for(
                lambda: count(engine, "select count(*) from readings") == 1100,
                timeout=60,
                what="all 1,100 after the outage",
            )
        distinct = "select count(distinct device_id || ':' || seq) from readings"
        assert count(engine, distinct) == 1100
    finally:
        _block(database, allow=True)
        engine.dispose()

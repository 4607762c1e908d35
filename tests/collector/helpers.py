"""Plain helpers for ingest tests: a running collector, a publisher, waiting for rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, text

from collector.client import BrokerAddress
from collector.service import Collector
from core.catalogue import Catalogue, load_catalogue
from core.ingest import CommittedBatch
from core.readings import SqlReadingsStore
from core.settings import Settings
from tests.conftest import unique


@contextmanager
def running_collector(
    engine: Engine,
    broker: tuple[str, int],
    client_id: str | None = None,
    catalogue: Catalogue | None = None,
    batches: list[CommittedBatch] | None = None,
    **settings: Any,
) -> Iterator[Collector]:
    config = Settings(
        database_url=str(engine.url),
        mqtt_client_id=client_id or unique("col"),
        **settings,
    )
    collector = Collector(
        config,
        engine,
        SqlReadingsStore(engine),
        catalogue or load_catalogue(),
        BrokerAddress(*broker),
        listeners=[batches.append] if batches is not None else [],
    )
    collector.start()
    wait_for(lambda: collector.status().broker_connected, what="collector connected")
    try:
        yield collector
    finally:
        collector.stop()


def publisher(broker: tuple[str, int]) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("pub"))
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(*broker)
    client.loop_start()
    return client


def publish_all(broker: tuple[str, int], messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    client = publisher(broker)
    try:
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.loop_stop()
        client.disconnect()


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as c:
        return int(c.execute(text(sql), params).scalar_one())


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)

"""Builders for the split-roles tests: the demo park as a site folder whose fire-lane rule fires
in half a second, the collector role and the API role as ``parkguard collect`` and ``parkguard
api`` wire them (two Runtimes on one database), and an MQTT listener on the alerts topic."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.contract import alerts_topic
from core.settings import Settings
from parkguard.runtime import Runtime
from tests.collector.helpers import wait_for
from tests.conftest import DEMO_SITE, unique
from tests.live import Server

SITE_ID = "cdpark"
LANE = "FL-S-FLM001"
DETECTORS = ("A1-W1-SD001", "A1-W1-SD002")


def quick_site(folder: Path) -> Path:
    """The demo park, with the fire-lane rule firing after 0.5 s instead of 60 s."""
    site = folder / "site"
    shutil.copytree(DEMO_SITE, site)
    rules = site / "rules.yaml"
    text = rules.read_text()
    slow = "    equals: true\n    for: 60s\n"
    assert text.count(slow) == 1
    rules.write_text(text.replace(slow, "    equals: true\n    for: 0.5s\n"))
    return site


@dataclass
class Split:
    collector: Runtime
    api: Runtime
    server: Server

    @property
    def url(self) -> str:
        return self.server.url


@contextmanager
def split_roles(database_url: str, broker: tuple[str, int], site: Path) -> Iterator[Split]:
    """``parkguard collect`` and ``parkguard api`` as their commands wire them, in this
    process but sharing nothing but the database and the broker."""
    settings = Settings(
        database_url=database_url,
        mqtt_url=f"mqtt://{broker[0]}:{broker[1]}",
        mqtt_client_id=unique("split"),
        site=site,
        flush_interval_ms=50,
    )
    collector, api = Runtime(settings), Runtime(settings)
    try:
        collector.start_ingest(follow=True)
        assert collector.collector is not None
        wait_for(lambda: collector.collector.status().broker_connected, what="collector up")
        server = Server(api.start_api())
        try:
            yield Split(collector, api, server)
        finally:
            server.stop()
    finally:
        api.stop()
        collector.stop()


class AlertsTopic:
    """Every message on the site's alerts topic, as the console or a PLC would see them."""

    def __init__(self, broker: tuple[str, int]) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("watch"))
        client.on_connect = lambda c, *_a: c.subscribe(alerts_topic(SITE_ID), qos=1)
        client.on_subscribe = lambda *_a: self._subscribed.set()
        client.on_message = self._on_message
        client.connect(*broker)
        client.loop_start()
        self.client = client
        assert self._subscribed.wait(10), "subscribed to the alerts topic"

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(orjson.loads(message.payload))

    def of(self, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if _matches(m, match)]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _matches(message: dict[str, Any], match: dict[str, Any]) -> bool:
    for key, value in match.items():
        if key == "rule":
            if message.get("alert", {}).get("rule") != value:
                return False
        elif message.get(key) != value:
            return False
    return True

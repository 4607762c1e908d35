"""Plain helpers for simulator tests: a broker of the module's own, an observer that records
what reaches the broker, fleets of demo-park devices, scenarios written inline."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.contract import Message, decode
from simulators.devices import SimDevice
from simulators.fleet import Fleet, read_site
from simulators.scenario import Scenario
from simulators.transport import Broker
from tests.conftest import DEMO_SITE, ROOT, free_port, need, port_open, unique


@contextmanager
def mosquitto(folder: Path) -> Iterator[tuple[str, int]]:
    """A Mosquitto with deploy/'s test configuration on a free port (as ``private_broker``)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    need(Path(binary).exists(), "the mosquitto binary")
    port = free_port()
    (folder / "data").mkdir(parents=True)
    conf = folder / "mosquitto.conf"
    base = (ROOT / "deploy" / "mosquitto" / "mosquitto-test.conf").read_text()
    conf.write_text(base.replace("@PORT@", str(port)).replace("@DATA@", str(folder / "data")))
    log = folder / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {log.read_text()}")
            time.sleep(0.02)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass(frozen=True, slots=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool
    at_ms: int

    @property
    def device_id(self) -> str:
        return self.topic.split("/")[2]

    @property
    def channel(self) -> str:
        return self.topic.split("/")[-1]

    def decoded(self) -> Message:
        return decode(self.topic, self.payload)


@dataclass
class Observer:
    """Everything published under ``parkguard/#`` while it listens, in arrival order."""

    broker: tuple[str, int]
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: mqtt.Client | None = None

    def start(self) -> None:
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("obs"))
        client.on_message = self._on_message
        client.on_subscribe = lambda *_a: subscribed.set()
        client.on_connect = lambda c, *_a: c.subscribe("parkguard/#", qos=1)
        client.connect(*self.broker)
        client.loop_start()
        self._client = client
        assert subscribed.wait(10), "observer did not subscribe"

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.seen.append(Seen(msg.topic, bytes(msg.payload), bool(msg.retain), now()))

    def of(self, device_id: str, channel: str | None = None) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.seen
                if s.device_id == device_id and (channel is None or s.channel == channel)
            ]

    def all(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()


def now() -> int:
    return time.time_ns() // 1_000_000


@contextmanager
def observing(broker: tuple[str, int]) -> Iterator[Observer]:
    observer = Observer(broker)
    observer.start()
    try:
        yield observer
    finally:
        observer.stop()


def demo_devices(*ids: str) -> list[SimDevice]:
    return read_site(DEMO_SITE).devices(only=ids)


@contextmanager
def running_fleet(
    devices: list[SimDevice], broker: tuple[str, int], **options: Any
) -> Iterator[Fleet]:
    fleet = Fleet(devices, Broker(*broker), **options)
    fleet.start()
    try:
        assert fleet.wait_ready(15), "the fleet did not connect"
        yield fleet
    finally:
        fleet.stop()


def scenario(*steps: dict[str, Any], name: str = "inline", **fields: Any) -> Scenario:
    """A scenario written inline, validated as a file would be."""
    body = {"name": name, "title": {"zh": "测试", "en": "Test"}, "steps": list(steps)}
    return Scenario.model_validate(body | fields)


def wait_until(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)

"""The built-in MQTT broker (amqtt) for the embedded defaults, run on a thread of its own."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import ItemsView, Iterator
from typing import Any

log = logging.getLogger(__name__)


def pick_port(host: str, preferred: int) -> int:
    """The preferred port if it is free, else any free one."""
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError(f"no free port on {host}")


class SubscriptionTable(dict[str, list[Any]]):
    """amqtt's table of subscriptions, walked as a snapshot.

    amqtt 0.12 walks this table across awaits: when a client connects (sending it retained
    messages) and on every broadcast. A client leaving meanwhile deletes its filters, the walk
    dies with "dictionary changed size during iteration", and the connecting client's messages
    are dropped after the broker acknowledged them: `parkguard simulate` looking for the fleet
    and then handing it a scenario hit exactly that. Walking a copy keeps every walk whole.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.keys()))

    def items(self) -> ItemsView[str, list[Any]]:  # type: ignore[override]
        return {topic: list(sessions) for topic, sessions in super().items()}.items()


class EmbeddedBroker:
    """amqtt listening on 127.0.0.1; anonymous access, loopback only. Construct, start(), stop()."""

    def __init__(self, host: str = "127.0.0.1", preferred_port: int = 1883) -> None:
        self.host = host
        self.preferred_port = preferred_port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        from amqtt.broker import Broker

        self.port = pick_port(self.host, self.preferred_port)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
        }
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._broker = Broker(config, loop=loop)
                self._broker._subscriptions = SubscriptionTable()
                loop.run_until_complete(self._broker.start())
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="embedded-broker", daemon=True)
        self._thread.start()
        started.wait(15)
        if failure:
            raise RuntimeError(f"the built-in broker did not start: {failure[0]}")
        if self.port != self.preferred_port:
            log.warning(
                "port %d is taken; the built-in broker uses %d", self.preferred_port, self.port
            )
        log.info("built-in MQTT broker on %s:%d", self.host, self.port)
        return self.port

    def stop(self) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None:
            return
        asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

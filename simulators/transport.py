"""MQTT connections of a fleet: paho clients driven by one selector loop on the fleet's thread.

Two ways to connect, chosen per fleet:

- ``per_device``: every device its own client, with its own last will (a retained offline
  status). Closing such a connection without DISCONNECT makes the broker publish the will: that
  is how a last-will storm is simulated. Each client costs a socket (mind ``ulimit -n``).
- ``multiplexed``: a few clients publish for many devices, as a gateway or a load generator
  does. A connection cannot carry one will per device, so a last-will storm is emulated: the
  fleet publishes the dropped devices' offline statuses on their behalf, and stops sending.
- ``auto``: per device for a small fleet (up to ``PER_DEVICE_MAX``), else multiplexed.

paho's external-loop interface (``loop_read``/``loop_write``/``loop_misc`` and the socket
callbacks) lets one thread serve hundreds of clients, so the fleet needs no thread per device.
"""

from __future__ import annotations

import contextlib
import logging
import random
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.devices import Outgoing

log = logging.getLogger(__name__)
Protocol = Literal["3.1.1", "5"]
Connection = Literal["per_device", "multiplexed", "auto"]
PER_DEVICE_MAX = 200
"""``auto`` gives each device its own connection up to this many devices, else shares a few:
Mosquitto takes thousands of connections, but the embedded demo broker (amqtt) needs about a
minute to accept the demo park's 766 and then misses acknowledgements."""
KEEPALIVE_S = 30
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
DEVICE_QUEUE = 1000
"""Messages a per-device client buffers while the broker is away, as a real device would."""
SHARED_QUEUE = 100_000
"""Messages a multiplexed client buffers (unacknowledged or waiting) before it drops, counted."""


@dataclass(frozen=True, slots=True)
class Broker:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    protocol: Protocol = "3.1.1"

    @classmethod
    def from_url(cls, url: str, protocol: Protocol = "3.1.1") -> Broker:
        """``mqtt://user:pass@host:port`` or ``mqtts://host:port``."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker {url!r} must look like mqtt://user:pass@host:port")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"broker {url!r}: the port must be a number") from exc
        tls = parts.scheme == "mqtts"
        return cls(
            parts.hostname,
            port or (8883 if tls else 1883),
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            tls,
            protocol,
        )

    def display(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


LinkState = Literal["new", "connecting", "up", "lost", "dropped", "closing", "closed"]


class Link:
    """One paho client. ``devices`` are the devices it publishes for."""

    def __init__(
        self,
        loop: Loop,
        client_id: str,
        broker: Broker,
        devices: list[str],
        will: Callable[[], Outgoing] | None,
        on_up: Callable[[Link], None],
        inflight: int,
        on_message: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.loop = loop
        self.client_id = client_id
        self.broker = broker
        self.devices = devices
        self.will = will
        self.on_up = on_up
        self.state: LinkState = "new"
        self.retry_at = 0.0
        self.backoff = BACKOFF_MIN_S
        self.sent = 0
        self.acked = 0
        self.overflow = 0
        """Messages dropped because the client's buffer was full (the broker away or slow)."""
        self.connects = 0
        v5 = broker.protocol == "5"
        client = self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if v5 else True,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(inflight)
        client.max_queued_messages_set(DEVICE_QUEUE if will is not None else SHARED_QUEUE)
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        if on_message is not None:
            client.on_message = lambda _c, _u, msg: on_message(msg.topic, bytes(msg.payload))
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = lambda _c, _u, sock: loop.watch(sock, self)
        client.on_socket_close = lambda _c, _u, sock: loop.forget(sock)
        client.on_socket_register_write = lambda _c, _u, sock: loop.want_write(sock, self, True)
        client.on_socket_unregister_write = lambda _c, _u, sock: loop.want_write(sock, self, False)

    @property
    def up(self) -> bool:
        return self.state == "up"

    def connect(self) -> None:
        """Open the TCP connection and send CONNECT (blocking for the TCP handshake only)."""
        if self.will is not None:
            will = self.will()
            self.client.will_set(will.topic, will.payload(), qos=1, retain=True)
        try:
            if self.connects == 0:
                self.client.connect(self.broker.host, self.broker.port, KEEPALIVE_S)
            else:
                self.client.reconnect()
        except OSError as exc:
            self._retry(f"cannot connect: {exc}")
            return
        self.connects += 1
        self.state = "connecting"

    def publish(self, message: Outgoing, qos: int) -> None:
        info = self.client.publish(message.topic, message.payload(), qos=qos, retain=message.retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.overflow += 1
        else:
            self.sent += 1

    def drop(self) -> None:
        """Close the TCP connection without DISCONNECT: the broker publishes the will."""
        sock = self.client.socket()
        self.state = "dropped"
        if sock is None:
            return
        with contextlib.suppress(OSError):  # already gone: the broker sees the same end
            cast(socket.socket, sock).shutdown(socket.SHUT_RDWR)
        self.client.loop_read()  # paho reads the end of the stream and closes the socket

    def disconnect(self) -> None:
        """A clean goodbye: DISCONNECT after whatever is queued (no will)."""
        if self.state in ("up", "connecting"):
            self.state = "closing"
            self.client.disconnect()
        else:
            self.state = "closed"
            self.client.loop_read()  # closes a socket left by a drop, if any

    def _retry(self, why: str) -> None:
        self.state = "lost"
        self.retry_at = time.monotonic() + self.backoff * random.uniform(0.5, 1.0)
        log.debug("%s: %s; retrying in %.1f s", self.client_id, why, self.backoff)
        self.backoff = min(BACKOFF_MAX_S, self.backoff * 2)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._retry(f"refused: {reason}")
            return
        self.state = "up"
        self.backoff = BACKOFF_MIN_S
        self.on_up(self)

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self.state in ("dropped", "closed"):
            return
        if self.state == "closing":
            self.state = "closed"
            return
        self._retry(f"connection lost: {reason}")

    def _on_publish(self, _c: Any, _u: Any, _mid: int, _reason: Any, _props: Any) -> None:
        self.acked += 1


class Loop:
    """A selector over the links' sockets, plus a socket pair to wake it from other threads."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)

    def watch(self, sock: Any, link: Link) -> None:
        self.selector.register(sock, selectors.EVENT_READ, link)

    def forget(self, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):  # never watched, or already closed
            self.selector.unregister(sock)

    def want_write(self, sock: Any, link: Link, wanted: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
        with contextlib.suppress(KeyError, ValueError):  # closed meanwhile
            self.selector.modify(sock, events, link)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # already awake, or closed during stop
            self._wake_w.send(b"x")

    def poll(self, timeout: float) -> None:
        for key, mask in self.selector.select(max(0.0, timeout)):
            link = key.data
            if link is None:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            if mask & selectors.EVENT_READ:
                link.client.loop_read()
            if mask & selectors.EVENT_WRITE:
                link.client.loop_write()

    def close(self) -> None:
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()

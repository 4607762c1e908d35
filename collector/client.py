"""The broker connection: a paho-mqtt 2 client with a persistent session and manual acks."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.inbox import Control, Inbox, Received
from collector.metrics import IngestMetrics
from core.contract import is_urgent_topic, now_ms, subscription_filter, urgent_filters

log = logging.getLogger(__name__)
RECEIVE_MAXIMUM = 65535


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def display(self) -> str:
        """The address without its password, for health and logs."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


class _IngestClient(mqtt.Client):
    """paho's client without the per-message walk over topic-filter callbacks: the collector
    has one subscription and one handler, and the walk cost a tenth of ingest CPU."""

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        handler = self.on_message
        if handler is not None:
            handler(self, self._userdata, message)


@dataclass(frozen=True)
class _Lane:
    client_id: str
    filters: list[str]


ALARM_LANE_SUFFIX = "-alarms"
"""Appended to the collector's client id for its alarm connection (a session of its own)."""


class MqttSource:
    """Receives device messages into the inbox over two connections; acknowledges them when
    told to.

    The alarm connection subscribes to event and status topics only; the bulk connection to
    everything (its copies of alarm topics wait with the telemetry and are stored once, see
    ``Received.copy``). So a fire alarm never queues behind telemetry in a socket or in
    paho's reading of it: under 2,000 telemetry msg/s a shared connection handed an alarm
    over p50 4.6 / p99 10 ms after it was published, a connection of its own p50 0.3 / p99
    3 ms (bench/alarm_latency.py). Each connection keeps its persistent session; the source
    counts as connected when both are.
    """

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        inbox: Inbox,
        metrics: IngestMetrics,
        protocol: str = "5",
        shared_group: str | None = None,
        session_expiry_s: int = 7 * 24 * 3600,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self.inbox = inbox
        self.metrics = metrics
        self.v5 = protocol == "5"
        self.shared_group = shared_group
        self.session_expiry_s = session_expiry_s
        self._alarms: mqtt.Client | None = None
        self._bulk: mqtt.Client | None = None
        self._up: set[str] = set()
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return len(self._up) == 2

    def start(self) -> None:
        group = self.shared_group
        self._alarms = self._open(
            self.client_id + ALARM_LANE_SUFFIX, urgent_filters(group), self._on_alarm_lane
        )
        self._bulk = self._open(self.client_id, [subscription_filter(group)], self._on_bulk_lane)

    def stop(self) -> None:
        for client in (self._alarms, self._bulk):
            if client is not None:
                client.disconnect()
                client.loop_stop()
        self._alarms = self._bulk = None
        with self._lock:
            self._up.clear()
        self.metrics.broker_connected.set(0)

    def ack(self, items: list[Received]) -> None:
        alarms, bulk = self._alarms, self._bulk
        for item in items:
            client = alarms if item.urgent else bulk
            if item.qos > 0 and client is not None:
                client.ack(item.mid, item.qos)

    def _open(
        self,
        client_id: str,
        filters: list[str],
        on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None],
    ) -> mqtt.Client:
        client = _IngestClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else False,
            manual_ack=True,
            reconnect_on_failure=True,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(0)
        client.user_data_set(_Lane(client_id, filters))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = on_message
        properties = None
        if self.v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.session_expiry_s
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect_async(
            self.address.host,
            self.address.port,
            keepalive=30,
            clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        client.loop_start()
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        lane: _Lane,
        flags: mqtt.ConnectFlags,
        reason: object,
        _properties: Properties | None,
    ) -> None:
        name = lane.client_id
        if getattr(reason, "is_failure", False):
            log.error("broker %s refused %s: %s", self.address.display(), name, reason)
            return
        client.subscribe([(topic_filter, 1) for topic_filter in lane.filters])
        with self._lock:
            self._up.add(name)
            now_up = self.connected
            if now_up:
                self.inbox.put(Control("connected", now_ms()))
        self.metrics.broker_connected.set(1 if now_up else 0)
        log.info(
            "%s connected to %s (session present: %s)",
            name,
            self.address.display(),
            flags.session_present,
        )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        lane: _Lane,
        _flags: mqtt.DisconnectFlags,
        reason: object,
        _properties: Properties | None,
    ) -> None:
        name = lane.client_id
        with self._lock:
            was_connected = self.connected
            self._up.discard(name)
            if was_connected:
                self.inbox.put(Control("disconnected", now_ms()))
        self.metrics.broker_connected.set(0)
        if was_connected:
            log.warning("%s lost the broker %s: %s", name, self.address.display(), reason)

    def _on_alarm_lane(self, _client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        topic = msg._topic.decode("utf-8", errors="replace")
        self.inbox.put(Received(topic, bytes(msg.payload), msg.mid, msg.qos, now_ms(), msg.retain))

    def _on_bulk_lane(self, _client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        topic = msg._topic.decode("utf-8", errors="replace")
        copy = is_urgent_topic(topic)
        self.inbox.put(
            Received(topic, bytes(msg.payload), msg.mid, msg.qos, now_ms(), msg.retain, copy)
        )

"""The alarm connection: event and status messages reach the collector on an MQTT
connection of their own, so a fire alarm never queues behind telemetry in a socket.
Real Mosquitto (the machine's, and one of the test's own that the test stops)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.client import ALARM_LANE_SUFFIX, BrokerAddress, MqttSource
from collector.inbox import Control, Inbox, Item, Received
from collector.metrics import IngestMetrics
from core.contract import (
    encode_event,
    encode_telemetry,
    is_urgent_topic,
    now_ms,
    topic_for,
    urgent_filters,
)
from tests.collector.helpers import publisher, wait_for
from tests.conftest import Mosquitto, unique


@contextmanager
def source_on(broker: tuple[str, int], inbox: Inbox) -> Iterator[MqttSource]:
    source = MqttSource(BrokerAddress(*broker), unique("src"), inbox, IngestMetrics())
    source.start()
    try:
        wait_for(lambda: source.connected, what="both connections up")
        yield source
    finally:
        inbox.close()  # no writer drains it here: let a network thread waiting in put() go
        source.stop()


def next_messages(inbox: Inbox) -> tuple[list[Received], bool]:
    """What the writer would take next, connection signals (Control items) left out."""
    while True:
        taken, urgent = inbox.take(10, linger_s=5)
        messages = [i for i in taken if isinstance(i, Received)]
        if messages or not taken:
            return messages, urgent


def drain(inbox: Inbox, until: float = 0.5) -> list[Item]:
    """Everything the inbox holds or receives until ``until`` seconds of quiet."""
    items: list[Item] = []
    while True:
        taken, _ = inbox.take(inbox.maxsize, linger_s=until)
        if not taken:
            return items
        items += taken


def test_an_alarm_gets_through_while_telemetry_holds_its_connection_up(
    broker: tuple[str, int],
) -> None:
    """The inbox is full of telemetry, so the telemetry connection's thread waits in put();
    on one shared connection the alarm behind it would wait too."""
    inbox = Inbox(5)
    site, device = unique("s"), unique("d")
    with source_on(broker, inbox):
        client = publisher(broker)
        try:
            telemetry = topic_for(site, device, "telemetry")
            for seq in range(20):
                client.publish(telemetry, encode_telemetry(now_ms(), seq, {"t": 1.0}), qos=1)
            wait_for(lambda: len(inbox) >= 5, what="the inbox full of telemetry")
            client.publish(
                topic_for(site, device, "event"), encode_event(now_ms(), 1, "fire_alarm"), qos=1
            )
            taken, urgent = next_messages(inbox)
            assert urgent, "the alarm came in while the telemetry connection was blocked"
            assert [i.topic for i in taken] == [topic_for(site, device, "event")]
            rest = drain(inbox)
        finally:
            client.loop_stop()
            client.disconnect()
    received = [i for i in rest if isinstance(i, Received)]
    copies = [i for i in received if i.copy]
    assert len(received) - len(copies) == 20, "all the telemetry arrives once the inbox drains"
    assert [i.topic for i in copies] == [topic_for(site, device, "event")]
    assert not any(i.urgent for i in received), "the bulk connection's copy waits its turn"


def test_each_channel_comes_once_over_its_own_connection(broker: tuple[str, int]) -> None:
    inbox = Inbox(1000)
    site, device = unique("s"), unique("d")
    sent = {
        topic_for(site, device, "telemetry"): encode_telemetry(now_ms(), 1, {"t": 1.0}),
        topic_for(site, device, "event"): encode_event(now_ms(), 1, "fault"),
        topic_for(site, device, "status"): b'{"ts": 1, "online": true}',
        f"parkguard/{site}/{device}/nonsense": b"{}",
        f"parkguard/{site}/{device}/x/event": b"{}",  # not an alarm topic: the bulk lane's
    }
    with source_on(broker, inbox) as source:
        client = publisher(broker)
        try:
            for topic, payload in sent.items():
                client.publish(topic, payload, qos=1)
            items = [i for i in drain(inbox) if isinstance(i, Received)]
            source.ack(items)  # each goes back on the connection it came on
        finally:
            client.loop_stop()
            client.disconnect()
    assert sorted(i.topic for i in items if not i.copy) == sorted(sent)
    assert sorted(i.topic for i in items if i.copy) == sorted(filter(is_urgent_topic, sent))
    assert {i.topic for i in items if i.urgent} == set(filter(is_urgent_topic, sent))


def test_the_alarm_connection_subscribes_to_exactly_the_urgent_topics() -> None:
    assert urgent_filters() == ["parkguard/+/+/event", "parkguard/+/+/status"]
    assert urgent_filters("g") == ["$share/g/parkguard/+/+/event", "$share/g/parkguard/+/+/status"]
    assert is_urgent_topic("parkguard/s/d/event") and is_urgent_topic("parkguard/s/d/status")
    for topic in (
        "parkguard/s/d/telemetry",
        "parkguard/s/d/x/event",
        "parkguard/s/event",
        "other/s/d/event",
        "parkguard/s/d/events",
    ):
        assert not is_urgent_topic(topic), topic


@pytest.mark.timeout(120)
def test_connected_means_both_connections_and_a_drop_of_either_is_one_disconnect(
    mosquitto: Mosquitto,
) -> None:
    inbox = Inbox(1000)
    with source_on(mosquitto.address, inbox) as source:
        mosquitto.stop()
        wait_for(lambda: not source.connected, what="the source disconnected")
        mosquitto.start()
        wait_for(lambda: source.connected, timeout=60, what="both connections back")
        time.sleep(0.5)
        controls = [i.kind for i in drain(inbox, until=0.5) if isinstance(i, Control)]
    assert controls == ["connected", "disconnected", "connected"]


def session_present(broker: tuple[str, int], client_id: str) -> bool:
    """Whether the broker still holds a session for ``client_id`` (it is resumed, not made)."""
    answer: list[bool] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda _c, _u, flags, _r, _p: answer.append(flags.session_present)
    client.connect(*broker, clean_start=False)
    client.loop_start()
    try:
        wait_for(lambda: bool(answer), what="the broker's answer")
    finally:
        client.disconnect()
        client.loop_stop()
    return answer[0]


@pytest.mark.parametrize(("expiry_s", "kept"), [(1, False), (300, True)])
def test_the_broker_keeps_both_sessions_as_long_as_configured(
    broker: tuple[str, int], expiry_s: int, kept: bool
) -> None:
    client_id = unique("src")
    source = MqttSource(
        BrokerAddress(*broker), client_id, Inbox(100), IngestMetrics(), session_expiry_s=expiry_s
    )
    source.start()
    wait_for(lambda: source.connected, what="both connections up")
    source.stop()
    time.sleep(2.5)
    for lane in (client_id, client_id + ALARM_LANE_SUFFIX):
        assert session_present(broker, lane) is kept, lane

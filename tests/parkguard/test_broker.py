"""The built-in broker `parkguard demo` runs (amqtt on a thread), driven by real paho clients."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from parkguard.broker import EmbeddedBroker, SubscriptionTable
from tests.simulators.helpers import wait_until

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture
def port() -> Iterator[int]:
    broker = EmbeddedBroker("127.0.0.1", 0)
    yield broker.start()
    broker.stop()


def connected(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    up = threading.Event()
    client.on_connect = lambda *_a: up.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert up.wait(5), "no CONNACK"
    return client


def subscribed(client: mqtt.Client, topic: str | list[tuple[str, int]], qos: int = 1) -> None:
    acked = threading.Event()
    client.on_subscribe = lambda *_a: acked.set()
    client.subscribe(topic, qos)
    assert acked.wait(5), f"no SUBACK for {topic}"


def closed(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def test_a_client_leaving_while_another_connects_loses_nothing(port: int) -> None:
    """What `parkguard simulate` does: one client looks for the fleet and leaves, the next one
    connects and publishes. amqtt walks its subscription table while sending a connecting client
    retained messages; the leaving client's filters vanish mid-walk. Unpatched, the walk died and
    the second client's acknowledged publish never reached anyone (a lost scenario)."""
    received: list[bytes | bytearray] = []
    listener = connected(port)
    listener.on_message = lambda _c, _u, m: received.append(m.payload)
    subscribed(listener, "play/#")
    retained = connected(port)
    topics = [f"status/{i}" for i in range(300)]  # a long walk, with an await at every step
    for sent in [retained.publish(t, b"{}", 1, retain=True) for t in topics]:
        sent.wait_for_publish(5)
    subscribed(retained, [(t, 0) for t in topics])

    for i in range(20):
        leaving = connected(port)
        subscribed(leaving, f"fleet/{i}")
        sender = connected(port)
        leaving.disconnect()
        sender.publish("play/cdpark", str(i).encode(), 1).wait_for_publish(5)
        closed(sender)
        leaving.loop_stop()

    wait_until(lambda: len(received) >= 20, timeout=5, what="every play request")
    assert sorted(int(p) for p in received) == list(range(20))
    closed(listener)
    closed(retained)


def test_the_table_is_walked_as_a_snapshot() -> None:
    table = SubscriptionTable({"a": [1], "b": [2]})
    for _topic in table:
        table.pop("b", None)
        table["c"] = [3]
    for _topic, sessions in table.items():
        sessions.append(9)
        table.clear()
    assert table == {}

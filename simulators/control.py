"""Playing scenarios into a fleet that is already running, from another process.

A fleet started with ``control=True`` (the demo's) keeps a retained ``{"ts", "online": true}``
at ``parkguard-sim/{site}/fleet`` (its last will says false) and takes requests at
``parkguard-sim/{site}/play``::

    {"scenario": "warehouse-fire", "speed": 60, "drill": true}
    {"reset": true}

Only built-in scenarios can be requested: a message on a broker must not name files to read.
The topics are outside ``parkguard/``, so the collector never sees them. ``parkguard
simulate`` looks for a running fleet first and hands its scenario over instead of starting a
second fleet whose devices would talk over the first one's (and say offline when it ends).
"""

from __future__ import annotations

import threading
import uuid

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulators.scenario import NAME_PATTERN
from simulators.transport import Broker

CONTROL_ROOT = "parkguard-sim"


def play_topic(site: str) -> str:
    return f"{CONTROL_ROOT}/{site}/play"


def fleet_topic(site: str) -> str:
    return f"{CONTROL_ROOT}/{site}/fleet"


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str | None = Field(default=None, pattern=NAME_PATTERN)
    speed: float | None = Field(default=None, gt=0, le=100_000)
    drill: bool | None = None
    reset: bool = False


def parse_request(payload: bytes) -> Request:
    """A request from its JSON; ValueError with one sentence when it is not one."""
    try:
        request = Request.model_validate(orjson.loads(payload))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"not a play request: {str(exc).splitlines()[0][:200]}") from exc
    if request.scenario is None and not request.reset:
        raise ValueError("a play request names a scenario or asks for a reset")
    return request


def _client(broker: Broker) -> mqtt.Client:
    v5 = broker.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"sim-ctl-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set()
    return client


def fleet_running(broker: Broker, site: str, wait_s: float = 0.5) -> bool:
    """Whether a controllable fleet of this site says it is running (its retained status).
    False too when the broker cannot be reached: then there is nothing to hand over to."""
    seen: list[bool] = []
    subscribed = threading.Event()
    answered = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            seen.append(orjson.loads(msg.payload).get("online") is True)
        except (orjson.JSONDecodeError, AttributeError):
            seen.append(False)
        answered.set()

    client = _client(broker)
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: c.subscribe(fleet_topic(site), qos=1)
    try:
        client.connect(broker.host, broker.port)
    except OSError:
        return False
    client.loop_start()
    try:
        if subscribed.wait(5):
            answered.wait(wait_s)  # a retained message comes right after the SUBACK
    finally:
        client.disconnect()
        client.loop_stop()
    return bool(seen) and seen[-1]


def hand_over(broker: Broker, site: str, request: Request) -> None:
    """Send a play request to the running fleet (QoS 1, waits for the broker's ack)."""
    client = _client(broker)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(
            play_topic(site), request.model_dump_json(exclude_none=True), qos=1, retain=False
        )
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()

"""Fan-out through real parts: MQTT to the real Mosquitto, webhooks to a small HTTP server
of the test's own on 127.0.0.1, dead letters in the real database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.contract import alerts_topic
from rules.alerts import AlertChange, AlertFilter, AlertStore
from rules.engine import Clear, Raise
from rules.fanout import MqttFanout, MqttTarget, WebhookFanout, render, signed_url
from rules.spec import Webhook
from tests.collector.helpers import wait_for
from tests.conftest import free_port, port_open, unique
from tests.rules.builders import rule, ruleset

T0 = 1_700_000_000_000


def rules() -> Any:
    return ruleset(
        rule(
            id="fire",
            kind="event",
            events=["fire_alarm"],
            severity="critical",
            title={"zh": "火警", "en": "Fire <alarm>"},
        ),
        rule(id="low", kind="event", events=["battery_low"], severity="warning"),
    )


def fire(site: str, device: str = "smoke1", at: int = T0) -> Raise:
    return Raise("fire", f"device:{device}", "critical", at, site, device, "w1", {})


@pytest.fixture
def store(sqlite_url: str) -> Iterator[AlertStore]:
    made = AlertStore(sqlite_url, rules())
    made.open()
    yield made
    made.close()


# ---- MQTT -----------------------------------------------------------------------------------


class Listener:
    """A plain paho subscriber on the alerts topic."""

    def __init__(self, broker: tuple[str, int], topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.qos: list[int] = []
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("sub"))
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(*broker)
        self.client.loop_start()
        assert ready.wait(5), "subscribed"

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.append(json.loads(message.payload))
        self.qos.append(message.qos)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_alert_transitions_reach_mqtt_in_order_at_qos_1(
    store: AlertStore, broker: tuple[str, int]
) -> None:
    site = unique("s")
    listener = Listener(broker, alerts_topic(site))
    fanout = MqttFanout(store.bus, MqttTarget(*broker))
    fanout.start()
    try:
        assert fanout.connected
        store.apply([fire(site)], T0)
        store.apply([fire(site, at=T0 + 1)], T0 + 1)  # a repeat: not a notification
        alert_id = store.query(AlertFilter())[0][0]["id"]
        store.acknowledge(alert_id, "王伟", "去现场")
        store.apply([Clear("fire", "device:smoke1", T0 + 2, "event alarm_cleared")], T0 + 2)
        wait_for(lambda: len(listener.messages) >= 3, timeout=5, what="3 alert messages")
        time.sleep(0.2)
    finally:
        fanout.stop()
        listener.close()
    got = [(m["action"], m["to"], m["alert"]["count"]) for m in listener.messages]
    assert got == [
        ("raised", "active", 1),
        ("acknowledged", "acknowledged", 2),
        ("resolved", "resolved", 2),
    ]
    assert listener.qos == [1, 1, 1]
    first = listener.messages[0]
    assert first["alert"]["title"] == {"zh": "火警", "en": "Fire <alarm>"}
    assert first["alert"]["site"] == site and first["seq"] < listener.messages[1]["seq"]
    assert listener.messages[1]["actor"] == "王伟"


def test_alerts_published_while_the_broker_is_away_arrive_when_it_comes(
    store: AlertStore, tmp_path: Path
) -> None:

    port = free_port()
    site = unique("s")
    fanout = MqttFanout(store.bus, MqttTarget("127.0.0.1", port))
    fanout.start(wait_s=0.2)
    assert not fanout.connected
    store.apply([fire(site)], T0)
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=5, what="mosquitto")
        listener = Listener(("127.0.0.1", port), alerts_topic(site))
        wait_for(lambda: fanout.connected, timeout=15, what="reconnect")
        store.apply([Clear("fire", "device:smoke1", T0 + 1, "quiet")], T0 + 1)
        wait_for(lambda: len(listener.messages) >= 1, timeout=10, what="messages")
        time.sleep(0.3)
        listener.close()
    finally:
        fanout.stop()
        proc.terminate()
        proc.wait(5)
    # the one raised while away may arrive before the subscriber (no retained alerts), but the
    # later one certainly arrives, and nothing arrives twice
    actions = [m["action"] for m in listener.messages]
    assert actions[-1] == "resolved" and len(actions) == len(set(actions))
    assert fanout.failed == 0 and fanout.published == 2


def test_mqtt_target_from_url() -> None:
    target = MqttTarget.from_url("mqtts://al%40erts:p%3Ass@broker.example:8884")
    assert (target.host, target.port, target.username, target.password, target.tls) == (
        "broker.example",
        8884,
        "al@erts",
        "p:ss",
        True,
    )
    assert MqttTarget.from_url("mqtt://h").port == 1883
    with pytest.raises(ValueError, match="mqtt://"):
        MqttTarget.from_url("http://h:1883")


# ---- webhooks -------------------------------------------------------------------------------


class Hook(ThreadingHTTPServer):
    """A tiny webhook receiver: records each request, answers from a plan of statuses."""

    def __init__(self, plan: list[int] | None = None, answer: bytes = b"{}") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.plan = list(plan or [])
        self.answer = answer
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook?key=abc"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        status = self.server.plan.pop(0) if self.server.plan else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.server.answer)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def webhook(url: str, **extra: Any) -> Webhook:
    return Webhook.model_validate({"name": "duty", "url": url, "backoff": 0.01} | extra)


@contextmanager
def delivering(store: AlertStore, *hooks: Webhook) -> Iterator[WebhookFanout]:
    fanout = WebhookFanout(store.bus, hooks, store)
    fanout.start()
    try:
        yield fanout
    finally:
        fanout.stop()


def test_generic_json_in_commit_order(store: AlertStore, hook: Hook) -> None:
    with delivering(store, webhook(hook.url)):
        store.apply([fire("park1")], T0)
        store.apply([fire("park1", at=T0 + 1)], T0 + 1)  # repeat: not sent
        store.acknowledge(store.query(AlertFilter())[0][0]["id"], "op")
        wait_for(lambda: len(hook.requests) >= 2, timeout=5, what="2 posts")
    bodies = [b for _, b in hook.requests]
    assert [(b["type"], b["action"]) for b in bodies] == [
        ("parkguard.alert", "raised"),
        ("parkguard.alert", "acknowledged"),
    ]
    assert bodies[0]["alert"]["rule"] == "fire"


def test_a_failing_webhook_is_retried_then_delivered(store: AlertStore) -> None:
    server = Hook(plan=[500, 503])
    try:
        with delivering(store, webhook(server.url, retries=3)) as fanout:
            store.apply([fire("park1")], T0)
            wait_for(lambda: fanout.delivered == 1, timeout=5, what="delivery")
        assert len(server.requests) == 3 and fanout.retried == 2
        assert store.dead_letters() == []
    finally:
        server.close()


def test_after_the_last_retry_a_dead_letter_is_recorded_and_later_changes_still_go(
    store: AlertStore,
) -> None:
    server = Hook(plan=[503, 503, 503])
    try:
        with delivering(store, webhook(server.url, retries=2)) as fanout:
            store.apply([fire("park1")], T0)
            store.apply([fire("park1", device="smoke2")], T0)
            wait_for(lambda: fanout.delivered == 1, timeout=5, what="second delivered")
        dead = store.dead_letters("duty")
        assert [(d["attempts"], d["last_error"], d["payload"]["action"]) for d in dead] == [
            (3, "HTTP 503 Service Unavailable", "raised")
        ]
        assert dead[0]["payload"]["alert"]["device"] == "smoke1"
        assert server.requests[-1][1]["alert"]["device"] == "smoke2"
    finally:
        server.close()


def test_a_refusal_is_not_retried(store: AlertStore) -> None:
    server = Hook(plan=[400])
    try:
        with delivering(store, webhook(server.url, retries=5)) as fanout:
            store.apply([fire("park1")], T0)
            wait_for(lambda: fanout.dead == 1, timeout=5, what="dead letter")
        assert len(server.requests) == 1
        assert store.dead_letters()[0]["attempts"] == 1
    finally:
        server.close()


def test_an_unreachable_webhook_is_dead_lettered(store: AlertStore) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody"
    with delivering(store, webhook(url, retries=1, timeout=1)) as fanout:
        store.apply([fire("park1")], T0)
        wait_for(lambda: fanout.dead == 1, timeout=10, what="dead letter")
    assert "Connection refused" in store.dead_letters()[0]["last_error"]


def test_min_severity_filters(store: AlertStore, hook: Hook) -> None:
    with delivering(store, webhook(hook.url, min_severity="major")):
        store.apply([Raise("low", "device:x", "warning", T0, "park1", "x", "w1", {})], T0)
        store.apply([fire("park1")], T0)
        wait_for(lambda: len(hook.requests) >= 1, timeout=5, what="post")
        time.sleep(0.2)
    assert [b["alert"]["rule"] for _, b in hook.requests] == ["fire"]


def test_wecom_markdown_escapes_what_people_wrote(store: AlertStore) -> None:
    server = Hook(answer=b'{"errcode": 0, "errmsg": "ok"}')
    try:
        with delivering(store, webhook(server.url, format="wecom")) as fanout:
            store.apply([fire("park1")], T0)
            alert_id = store.query(AlertFilter())[0][0]["id"]
            store.resolve(alert_id, "<img src=x>", "[click](http://evil) **now**\n# big")
            wait_for(lambda: fanout.delivered == 2, timeout=5, what="2 posts")
    finally:
        server.close()
    raised, resolved = (b for _, b in server.requests)
    assert raised["msgtype"] == "markdown"
    assert (
        "紧急" in raised["markdown"]["content"]
        and "Fire \\<alarm\\>" in raised["markdown"]["content"]
    )
    text = resolved["markdown"]["content"]
    assert "\\[click\\]\\(http://evil\\) \\*\\*now\\*\\* \\# big" in text
    assert "\\<img src=x\\>" in text


def test_dingtalk_signs_and_a_robot_error_code_is_retried(store: AlertStore) -> None:
    server = Hook(answer=b'{"errcode": 310000, "errmsg": "sign not match"}')
    try:
        hook = webhook(server.url, format="dingtalk", secret="SEC123", retries=1)
        with delivering(store, hook) as fanout:
            store.apply([fire("park1")], T0)
            wait_for(lambda: fanout.dead == 1, timeout=5, what="dead letter")
        path, body = server.requests[0]
        assert body["msgtype"] == "markdown" and body["markdown"]["title"].startswith("[紧急]")
        query = parse_qs(urlsplit(path).query)
        assert query["key"] == ["abc"] and query["timestamp"] and query["sign"]
        assert "errcode 310000" in store.dead_letters()[0]["last_error"]
        assert len(server.requests) == 2
    finally:
        server.close()


def test_signed_url_is_reproducible() -> None:
    hook = webhook(
        "https://oapi.dingtalk.com/robot/send?access_token=t", format="dingtalk", secret="SEC"
    )
    assert signed_url(hook, 1_700_000_000_000) == (
        "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000000"
        "&sign=" + _expected_sign("SEC", 1_700_000_000_000)
    )
    assert signed_url(webhook("http://h/x"), 1) == "http://h/x"


def _expected_sign(secret: str, ts: int) -> str:

    digest = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def test_changes_not_delivered_by_stop_are_dead_lettered(store: AlertStore) -> None:
    server = Hook(plan=[500] * 10)
    try:
        fanout = WebhookFanout(store.bus, [webhook(server.url, retries=5, backoff=5)], store)
        fanout.start()
        store.apply([fire("park1"), fire("park1", device="smoke2")], T0)
        wait_for(lambda: len(server.requests) >= 1, timeout=5, what="first attempt")
        fanout.stop()
    finally:
        server.close()
    dead = store.dead_letters()
    assert len(dead) == 2 and all("stopped" in d["last_error"] for d in dead)


def test_render_formats() -> None:

    change = AlertChange(
        7,
        T0,
        "raised",
        "system",
        None,
        "active",
        None,
        True,
        {
            "id": 1,
            "rule": "fire",
            "severity": "critical",
            "title": {"zh": "火警", "en": "Fire"},
            "device": "d1",
            "zone": "z1",
            "count": 1,
            "site": "park1",
        },
    )
    assert render(webhook("http://h/x"), change)["seq"] == 7
    assert render(webhook("http://h/x", format="dingtalk"), change)["markdown"]["title"] == (
        "[紧急] 火警"
    )

"""Alert fan-out beyond the API: MQTT ``parkguard/{site}/alerts`` (QoS 1, JSON) and webhooks
(generic JSON, WeCom and DingTalk robot markdown) with retries and a dead-letter record.

Both subscribe to the store's bus, so they see transitions in commit order, and carry only
changes marked ``notify`` (a repeat, or what happens underneath a shelved or flapping alert,
is left to the live console). The SSE stream lives with its router in ``api/routers/alerts``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.exc import SQLAlchemyError

from core.bus import Bus, Subscription
from core.contract import alerts_topic
from rules.alerts import AlertChange, AlertStore
from rules.spec import SEVERITY_RANK, Webhook

log = logging.getLogger(__name__)
SEVERITY_ZH = {"critical": "紧急", "major": "重要", "minor": "次要", "warning": "提示"}
STATE_ZH = {
    "active": "未确认",
    "acknowledged": "已确认",
    "resolved": "已解除",
    "shelved": "已搁置",
}
MAX_BACKOFF_S = 60.0
C = TypeVar("C")


# ---- MQTT -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> MqttTarget:
        """From ``mqtt://user:pass@host:port`` or ``mqtts://...`` (the collector's URL)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("an MQTT url looks like mqtt://user:pass@host:port")
        tls = parts.scheme == "mqtts"
        return cls(
            parts.hostname,
            parts.port or (8883 if tls else 1883),
            urllib.parse.unquote(parts.username) if parts.username else None,
            urllib.parse.unquote(parts.password) if parts.password else None,
            tls,
        )


class MqttPublisher(Generic[C]):
    """Publishes changes from a bus at QoS 1, one MQTT client per publisher.

    paho keeps QoS 1 messages published while the broker is away and sends them, in order,
    when it reconnects (reconnecting with backoff by itself). Subclasses say where a change
    goes (``message``); alerts and incidents share the rest."""

    name = "changes"

    def __init__(self, bus: Bus[C], target: MqttTarget) -> None:
        self.bus = bus
        self.target = target
        self.published = 0
        self.failed = 0
        self._client: mqtt.Client | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._connected = threading.Event()
        self._last: mqtt.MQTTMessageInfo | None = None

    def message(self, change: C) -> tuple[str, bytes] | None:
        """The topic and payload of a change, or None for a change not published."""
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, wait_s: float = 5.0) -> None:
        target = self.target
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"parkguard-{self.name}-{os.getpid()}-{id(self):x}",
            protocol=mqtt.MQTTv311,
        )
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 10)
        if target.username is not None:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(target.host, target.port, keepalive=30)
        client.loop_start()
        self._unsubscribe = self.bus.subscribe(self._on_change)
        if not self._connected.wait(wait_s):
            log.warning("%s MQTT: not connected to %s:%d yet", self.name, target.host, target.port)

    def stop(self, drain_s: float = 5.0) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        client, self._client = self._client, None
        if client is None:
            return
        last = self._last
        if last is not None and self._connected.is_set():
            try:
                last.wait_for_publish(timeout=drain_s)
            except (RuntimeError, ValueError):
                log.warning("%s MQTT: last message not confirmed before stopping", self.name)
        client.disconnect()
        client.loop_stop()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.error("%s MQTT: connection refused: %s", self.name, reason)
        else:
            self._connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        self._connected.clear()
        log.warning("%s MQTT: disconnected (%s); reconnecting", self.name, reason)

    def _on_change(self, change: C) -> None:
        client = self._client
        if client is None:
            return
        message = self.message(change)
        if message is None:
            return
        info = client.publish(*message, qos=1)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.published += 1  # NO_CONN: queued by paho, sent on reconnect
            self._last = info
        else:
            self.failed += 1
            log.error("%s MQTT: publish to %s failed: rc %s", self.name, message[0], info.rc)


class MqttFanout(MqttPublisher[AlertChange]):
    """Publishes each notified alert change to ``parkguard/{site}/alerts``."""

    name = "alerts"

    def message(self, change: AlertChange) -> tuple[str, bytes] | None:
        if not change.notify:
            return None
        return alerts_topic(str(change.alert["site"])), orjson.dumps(change.to_json())


# ---- webhooks -------------------------------------------------------------------------------


class DeliveryError(Exception):
    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def render(hook: Webhook, change: AlertChange) -> dict[str, Any]:
    """The request body for ``hook``'s format."""
    if hook.format == "json":
        return {"type": "parkguard.alert"} | change.to_json()
    text = _markdown(change)
    if hook.format == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": text}}
    alert = change.alert
    title = f"[{SEVERITY_ZH.get(alert['severity'], alert['severity'])}] {alert['title']['zh']}"
    return {"msgtype": "markdown", "markdown": {"title": title[:64], "text": text}}


def _markdown(change: AlertChange) -> str:
    alert = change.alert
    severity = alert["severity"]
    state = change.to_state
    lines = [
        f"**[{SEVERITY_ZH.get(severity, severity)} {severity}] "
        f"{_escape(alert['title']['zh'])} / {_escape(alert['title']['en'])}**",
        f"> 状态 state: {STATE_ZH.get(state, state)} {state} ({change.action})",
        f"> 设备 device: {alert['device'] or '-'}  区域 zone: {alert['zone'] or '-'}",
        f"> 次数 count: {alert['count']}  时间 time: {change.to_json()['at']}",
        f"> 告警 alert: #{alert['id']} ({alert['rule']})",
    ]
    if change.actor != "system":
        lines.append(f"> 操作人 by: {_escape(change.actor)}")
    if change.note:
        lines.append(f"> 说明 note: {_escape(change.note[:200])}")
    return "\n".join(lines)


def _escape(text: str) -> str:
    """Neutralise markdown and HTML in text a person or a rule file wrote."""
    out = []
    for char in text:
        if char in "\\`*_[]()<>#!|~":
            out.append("\\" + char)
        elif char in "\r\n\t":
            out.append(" ")
        elif ord(char) >= 32:
            out.append(char)
    return "".join(out)


def signed_url(hook: Webhook, now_ms: int) -> str:
    """DingTalk's signed robot url: ``timestamp`` and ``sign`` (HMAC-SHA256 of both)."""
    if hook.format != "dingtalk" or not hook.secret:
        return hook.url
    digest = hmac.new(
        hook.secret.encode(), f"{now_ms}\n{hook.secret}".encode(), hashlib.sha256
    ).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest))
    joiner = "&" if "?" in hook.url else "?"
    return f"{hook.url}{joiner}timestamp={now_ms}&sign={sign}"


def post(hook: Webhook, body: dict[str, Any]) -> None:
    """POST once; raise DeliveryError (``permanent`` for a refusal worth no retry)."""
    request = urllib.request.Request(
        signed_url(hook, int(time.time() * 1000)),
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json", "User-Agent": "ParkGuard-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout) as response:
            answer = response.read(65536)
    except urllib.error.HTTPError as exc:
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 425, 429)
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}", permanent) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{type(exc).__name__}: {reason}") from exc
    if hook.format in ("wecom", "dingtalk"):
        try:
            code = json.loads(answer or b"{}").get("errcode", 0)
        except (ValueError, AttributeError):
            code = -1
        if code != 0:
            raise DeliveryError(f"robot answered errcode {code}: {answer[:200]!r}")


class WebhookDelivery(Generic[C]):
    """One delivery thread per webhook, so each receives changes in commit order; a change
    is retried with doubling backoff and dead-lettered in the database after its last try.

    Subclasses say which changes a hook wants, how a change is rendered and how its dead
    letter is stored; alerts and incidents share this loop."""

    thread_prefix = "webhook"

    def __init__(
        self,
        bus: Bus[C],
        hooks: Sequence[Webhook],
        send: Callable[[Webhook, dict[str, Any]], None] = post,
    ) -> None:
        self.bus = bus
        self.hooks = tuple(hooks)
        self.send = send
        self.delivered = 0
        self.retried = 0
        self.dead = 0
        self.dead_letter_errors = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._subscriptions: list[Subscription[C]] = []

    def wanted(self, hook: Webhook, change: C) -> bool:
        raise NotImplementedError

    def body(self, hook: Webhook, change: C) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self, change: C) -> str:
        """The change in a log line."""
        raise NotImplementedError

    def record_dead_letter(self, hook: Webhook, change: C, attempts: int, error: str) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._stop.clear()
        for hook in self.hooks:
            subscription = self.bus.subscribe_queue(100_000)
            self._subscriptions.append(subscription)
            thread = threading.Thread(
                target=self._run,
                args=(hook, subscription),
                name=f"{self.thread_prefix}-{hook.name}",
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop; what could not be delivered before is dead-lettered, never dropped."""
        for subscription in self._subscriptions:
            subscription.close()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        for hook, subscription in zip(self.hooks, self._subscriptions, strict=True):
            while (change := subscription.get(0)) is not None:
                if self.wanted(hook, change):
                    self._dead(hook, change, 0, "service stopped before delivery")
        self._threads.clear()
        self._subscriptions.clear()

    def _run(self, hook: Webhook, subscription: Subscription[C]) -> None:
        while not self._stop.is_set():
            change = subscription.get(0.2)
            if change is not None and self.wanted(hook, change):
                self._deliver(hook, change)

    def _deliver(self, hook: Webhook, change: C) -> None:
        body = self.body(hook, change)
        error = "not attempted"
        for attempt in range(hook.retries + 1):
            if attempt:
                self.retried += 1
                wait = min(hook.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)
                if self._stop.wait(wait):
                    self._dead(hook, change, attempt, f"service stopped; last error: {error}")
                    return
            try:
                self.send(hook, body)
            except DeliveryError as exc:
                error = str(exc)
                log.warning("webhook %s: attempt %d failed: %s", hook.name, attempt + 1, error)
                if exc.permanent:
                    self._dead(hook, change, attempt + 1, error)
                    return
                continue
            self.delivered += 1
            return
        self._dead(hook, change, hook.retries + 1, error)

    def _dead(self, hook: Webhook, change: C, attempts: int, error: str) -> None:
        self.dead += 1
        log.error("webhook %s: %s dead-lettered: %s", hook.name, self.describe(change), error)
        try:
            self.record_dead_letter(hook, change, attempts, error)
        except SQLAlchemyError:
            self.dead_letter_errors += 1  # the error log line above is then the only record
            log.exception("webhook %s: the dead letter could not be stored", hook.name)


class WebhookFanout(WebhookDelivery[AlertChange]):
    """Alert changes to the rule files' webhooks."""

    def __init__(
        self,
        bus: Bus[AlertChange],
        hooks: Sequence[Webhook],
        store: AlertStore,
        send: Callable[[Webhook, dict[str, Any]], None] = post,
    ) -> None:
        super().__init__(bus, hooks, send)
        self.store = store

    def wanted(self, hook: Webhook, change: AlertChange) -> bool:
        severity = str(change.alert["severity"])
        return change.notify and SEVERITY_RANK[severity] >= SEVERITY_RANK[hook.min_severity]

    def body(self, hook: Webhook, change: AlertChange) -> dict[str, Any]:
        return render(hook, change)

    def describe(self, change: AlertChange) -> str:
        return f"alert {change.alert['id']}"

    def record_dead_letter(
        self, hook: Webhook, change: AlertChange, attempts: int, error: str
    ) -> None:
        self.store.record_dead_letter(hook.name, change, attempts, error)

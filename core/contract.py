"""The MQTT message contract every device, simulator and the collector speak.

Topic: ``parkguard/{site}/{device_id}/{channel}`` with ``channel`` one of telemetry, event,
status. Payload: one UTF-8 JSON object of at most 64 KiB (see README, "Message contract").
This module knows nothing of the catalogue or the database: it only checks shape and types.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

TOPIC_ROOT = "parkguard"
MAX_PAYLOAD_BYTES = 64 * 1024
DEAD_LETTER_PAYLOAD_BYTES = 4 * 1024
MAX_STRING_VALUE = 64
CHANNELS = ("telemetry", "event", "status")
ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_ID_RE = re.compile(rf"^{ID_PATTERN}$")
_TOPIC_RE = re.compile(rf"^{TOPIC_ROOT}/({ID_PATTERN})/({ID_PATTERN})/(telemetry|event|status)$")

Channel = Literal["telemetry", "event", "status"]
MetricValue = float | bool | str


class ContractError(ValueError):
    """A message that breaks the contract; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# Reason codes, counted per reason in metrics and dead letters.
BAD_TOPIC = "bad_topic"
TOO_LARGE = "too_large"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
INVALID_FIELDS = "invalid_fields"
UNKNOWN_DEVICE = "unknown_device"
UNKNOWN_METRIC = "unknown_metric"
UNKNOWN_EVENT = "unknown_event"
OUT_OF_RANGE = "out_of_range"
TS_FUTURE = "ts_future"
TS_TOO_OLD = "ts_too_old"
REASONS = (
    BAD_TOPIC,
    TOO_LARGE,
    NOT_UTF8,
    NOT_JSON,
    NOT_OBJECT,
    INVALID_FIELDS,
    UNKNOWN_DEVICE,
    UNKNOWN_METRIC,
    UNKNOWN_EVENT,
    OUT_OF_RANGE,
    TS_FUTURE,
    TS_TOO_OLD,
)


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    device_id: str
    channel: Channel


def topic_for(site: str, device_id: str, channel: Channel) -> str:
    if not _ID_RE.match(site) or not _ID_RE.match(device_id):
        raise ValueError(f"site and device id must match {ID_PATTERN}: {site!r}/{device_id!r}")
    return f"{TOPIC_ROOT}/{site}/{device_id}/{channel}"


def alerts_topic(site: str) -> str:
    return f"{TOPIC_ROOT}/{site}/alerts"


URGENT_CHANNELS = ("event", "status")
"""Channels the collector receives on a connection of their own and writes first: a fire
alarm never waits behind telemetry (GB 26875.1)."""


def subscription_filter(shared_group: str | None = None) -> str:
    """The collector's subscription: everything under the root, so that a device publishing to
    a wrong topic gets a dead letter instead of silence. A shared group lets several collectors
    split the load."""
    return _shared(f"{TOPIC_ROOT}/#", shared_group)


def urgent_filters(shared_group: str | None = None) -> list[str]:
    """The subscriptions of the collector's alarm connection: exactly the topics for which
    ``is_urgent_topic`` is true."""
    return [_shared(f"{TOPIC_ROOT}/+/+/{channel}", shared_group) for channel in URGENT_CHANNELS]


def is_urgent_topic(topic: str) -> bool:
    parts = topic.split("/")
    return len(parts) == 4 and parts[0] == TOPIC_ROOT and parts[3] in URGENT_CHANNELS


def _shared(topic_filter: str, shared_group: str | None) -> str:
    return f"$share/{shared_group}/{topic_filter}" if shared_group else topic_filter


def is_outbound(topic: str) -> bool:
    """Topics ParkGuard itself publishes (alerts); the collector skips them."""
    parts = topic.split("/")
    return len(parts) == 3 and parts[0] == TOPIC_ROOT and parts[2] == "alerts"


def parse_topic(topic: str) -> Topic:
    match = _TOPIC_RE.match(topic)
    if match is None:
        raise ContractError(
            BAD_TOPIC,
            f"topic {topic[:200]!r} is not parkguard/{{site}}/{{device_id}}/"
            "{telemetry|event|status} with ids of 1-64 letters, digits, '_' or '-'",
        )
    site, device_id, channel = match.groups()
    return Topic(site, device_id, channel)  # type: ignore[arg-type]


ShortStr = Annotated[str, StringConstraints(max_length=MAX_STRING_VALUE)]
Timestamp = Annotated[int, Field(strict=True, ge=0)] | Annotated[str, Field(strict=True)]
Seq = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
StrictValue = Annotated[bool, Field(strict=True)] | Annotated[float, Field(strict=True)] | ShortStr


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TelemetryPayload(_Payload):
    ts: Timestamp
    seq: Seq
    metrics: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")], StrictValue]


class EventPayload(_Payload):
    ts: Timestamp
    seq: Seq
    event: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    detail: dict[str, Any] | None = None


class StatusPayload(_Payload):
    ts: Timestamp
    online: Annotated[bool, Field(strict=True)]


_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "telemetry": TypeAdapter(TelemetryPayload),
    "event": TypeAdapter(EventPayload),
    "status": TypeAdapter(StatusPayload),
}


@dataclass(frozen=True, slots=True)
class Telemetry:
    device_id: str
    site: str
    ts_ms: int
    seq: int
    metrics: dict[str, MetricValue]


@dataclass(frozen=True, slots=True)
class Event:
    device_id: str
    site: str
    ts_ms: int
    seq: int
    event: str
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Status:
    device_id: str
    site: str
    ts_ms: int
    online: bool


Message = Telemetry | Event | Status


def parse_ts(value: int | str) -> int:
    """Epoch milliseconds from an integer or an RFC 3339 string with an offset."""
    if isinstance(value, int):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ContractError(INVALID_FIELDS, f"ts {value[:64]!r} is not RFC 3339") from exc
    if moment.tzinfo is None:
        raise ContractError(INVALID_FIELDS, f"ts {value[:64]!r} has no UTC offset")
    return int(moment.timestamp() * 1000)


def decode(topic: str, payload: bytes) -> Message:
    """Check topic and payload against the contract and return a typed message.

    Raises ContractError with the dead-letter reason code on the first problem found.
    """
    where = parse_topic(topic)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            TOO_LARGE, f"payload is {len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}"
        )
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(NOT_UTF8, f"payload is not UTF-8: {exc.reason}") from exc
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ContractError(NOT_JSON, f"payload is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ContractError(NOT_OBJECT, f"payload is a JSON {type(raw).__name__}, not an object")
    try:
        model = _ADAPTERS[where.channel].validate_python(raw)
    except ValidationError as exc:
        raise ContractError(INVALID_FIELDS, _describe(exc)) from exc
    ts_ms = parse_ts(model.ts)
    if isinstance(model, TelemetryPayload):
        return Telemetry(where.device_id, where.site, ts_ms, model.seq, dict(model.metrics))
    if isinstance(model, EventPayload):
        return Event(where.device_id, where.site, ts_ms, model.seq, model.event, model.detail)
    return Status(where.device_id, where.site, ts_ms, model.online)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)


def encode_telemetry(ts_ms: int, seq: int, metrics: dict[str, MetricValue]) -> bytes:
    return orjson.dumps({"ts": ts_ms, "seq": seq, "metrics": metrics})


def encode_event(ts_ms: int, seq: int, event: str, detail: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"ts": ts_ms, "seq": seq, "event": event}
    if detail is not None:
        body["detail"] = detail
    return orjson.dumps(body)


def encode_status(ts_ms: int, online: bool) -> bytes:
    return orjson.dumps({"ts": ts_ms, "online": online})


def now_ms() -> int:
    return time.time_ns() // 1_000_000

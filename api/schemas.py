"""What the API answers, one model per shape, named ``<Noun>Public`` (a page of them:
``<Nouns>Public``). Every field carries a description (its docstring) for the OpenAPI page.

Times are RFC 3339 strings in UTC with milliseconds (``2026-05-01T00:00:00.000Z``); where the
exact stored figure matters the epoch milliseconds are given next to them (``*_ms``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.catalogue import Metric
from core.ingest import Presence

Rfc3339 = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
MetricKind = Literal["number", "boolean", "string"]
Value = bool | float | str | None


def as_kind(spec: Metric | None, value: Any) -> Value:
    """A stored value as its catalogue kind: booleans are kept as 1.0/0.0, shown true/false."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return bool(value) if spec is not None and spec.kind == "boolean" else float(value)
    return str(value)  # not a metric value at all: shown as text rather than failing


class _Public(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)


class ErrorPublic(_Public):
    detail: str
    """What went wrong, in one sentence."""


class _Page(_Public):
    total: int
    """How many match the filters, over all pages."""
    limit: int
    """The page size asked for."""
    offset: int
    """How many matches were skipped before this page."""


# ---- health ---------------------------------------------------------------------------------


class BrokerHealthPublic(_Public):
    connected: bool
    """Whether the collector is connected to the MQTT broker now."""
    url: str
    """The broker the collector uses, without any password."""


class DatabaseHealthPublic(_Public):
    ok: bool
    """Whether ``SELECT 1`` succeeded on the relational store just now."""
    error: str | None
    """Why it failed (driver error, first line), or null."""


class QueueHealthPublic(_Public):
    depth: int
    """Messages received from the broker and not yet committed."""
    max: int
    """The queue's bound; at it, the collector stops taking messages (the broker holds them)."""


class ReadingsHealthPublic(_Public):
    backend: str
    """Where readings are stored: ``sqlite``, ``postgresql`` or ``influxdb``."""
    spooling: bool
    """True while the time-series store is unreachable and readings wait in the spool."""
    backlog: int | None
    """Readings waiting in the spool to be written (None if it could not be counted)."""
    last_error: str | None = None
    """The last write error of the time-series store, if any."""


class IngestCountsPublic(_Public):
    messages_in: int
    """MQTT messages received since the collector started."""
    stored: int
    """Messages stored (new ones) since the collector started."""
    duplicates: int
    """Redelivered messages that were already stored, since the collector started."""


class DeadLetterCountsPublic(_Public):
    total: int | None
    """Dead letters in the database, all time; null when the database cannot be read."""
    by_reason: dict[str, int] | None
    """Dead letters in the database per reason code; null when the database cannot be read."""
    since_start: dict[str, int]
    """Dead letters per reason counted by the collector since it started."""


class CollectorHealthPublic(_Public):
    source: Literal["live", "report"]
    """``live``: the collector runs in the API's process (``parkguard serve``); ``report``: it
    runs apart (``parkguard collect``) and these figures are its last report in the database."""
    reported_at: str | None
    """When that report was written (RFC 3339 UTC); null when live or when none exists."""
    last_message_at: str | None
    """When the collector last received a message (null: none since it started)."""


class HealthPublic(_Public):
    status: Literal["ok", "unhealthy"]
    """``ok`` (HTTP 200) or ``unhealthy`` (HTTP 503) when the database or broker is down."""
    problems: list[str]
    """One sentence per problem found; empty when healthy."""
    broker: BrokerHealthPublic
    """The MQTT broker connection."""
    database: DatabaseHealthPublic
    """The relational store."""
    queue: QueueHealthPublic
    """The collector's receive queue."""
    readings: ReadingsHealthPublic
    """The readings store and its outage backlog (readings are never lost while spooled)."""
    ingest: IngestCountsPublic
    """Counters of the ingest path."""
    dead_letters: DeadLetterCountsPublic
    """Rejected messages."""
    collector: CollectorHealthPublic
    """Where the broker, queue and ingest figures come from, and how fresh they are."""


# ---- devices --------------------------------------------------------------------------------


class CategoryPublic(_Public):
    name: str
    """The facility class code, e.g. ``extinguisher``."""
    zh: str
    """Its Chinese name."""
    en: str
    """Its English name."""


class DeviceTypePublic(_Public):
    name: str
    """The device type code, e.g. ``smoke_detector``."""
    zh: str | None
    """Its Chinese name; null if the type is missing from this catalogue."""
    en: str | None
    """Its English name; null if the type is missing from this catalogue."""
    category: CategoryPublic | None
    """The facility class it belongs to; null if the type is missing from this catalogue."""


class ZonePublic(_Public):
    id: str
    """Zone id."""
    kind: str
    """general, warehouse, hazmat, fire_lane, office or public."""
    name_zh: str
    """Chinese name."""
    name_en: str
    """English name."""
    building_id: str | None
    """The building the zone is in, or null for outdoor zones."""
    floor_id: str | None
    """The floor the zone is on, or null."""


class MetricValuePublic(_Public):
    value: Value
    """The last value, as its kind: a number, true/false, or a string."""
    kind: MetricKind | None
    """number, boolean or string; null if the metric is not in the type's catalogue."""
    unit: str | None
    """The catalogue's unit (``MPa``, ``°C``, ``%``), or null."""
    ts: Rfc3339 | None
    """When the device measured it, if the collector recorded that; else null."""


class DeviceStatePublic(_Public):
    presence: Presence
    """online, offline, or unknown (never heard from, or the collector lost the broker)."""
    presence_since: Rfc3339 | None
    """When the presence last changed."""
    last_seen: Rfc3339 | None
    """When the device last sent anything."""
    last_seq: int | None
    """The sequence number of its last message."""
    values: dict[str, MetricValuePublic]
    """The last value of each metric it has reported, by metric name."""
    battery_pct: float | None
    """Battery level in percent, or null if the device has none or has not reported it."""
    fault: bool
    """Whether the device reports a fault."""


class DeviceSummaryPublic(_Public):
    id: str
    """Device id (as in its MQTT topic)."""
    site_id: str
    """The site it belongs to."""
    type: str
    """Device type code."""
    zone_id: str
    """The zone it is installed in."""
    label: str
    """Its label in the register."""
    presence: Presence
    """online, offline or unknown."""
    last_seen: Rfc3339 | None
    """When it last sent anything."""


class DevicesPublic(_Page):
    items: list[DeviceSummaryPublic]
    """This page of devices, by id."""


class DevicePublic(_Public):
    id: str
    """Device id (as in its MQTT topic)."""
    site_id: str
    """The site it belongs to."""
    label: str
    """Its label in the register."""
    type: DeviceTypePublic
    """Its type, with names and facility class from the catalogue."""
    zone: ZonePublic
    """The zone it is installed in."""
    in_service_date: date | None
    """When it was put in service."""
    attributes: dict[str, Any]
    """Model attributes from the register (agent, size, next maintenance date...)."""
    x: float | None
    """Position on its floor plan, or null."""
    y: float | None
    """Position on its floor plan, or null."""
    state: DeviceStatePublic
    """Its live state."""


# ---- readings -------------------------------------------------------------------------------


class PointPublic(_Public):
    ts: Rfc3339
    """When the device measured the value."""
    ts_ms: int
    """The same, as stored: epoch milliseconds."""
    seq: int
    """The message's sequence number."""
    value: Value
    """The value, as the metric's kind: a number, true/false, or a string."""


class BucketPublic(_Public):
    start: Rfc3339
    """The bucket's start; buckets are aligned to the epoch, each ``every`` long."""
    start_ms: int
    """The same, in epoch milliseconds."""
    count: int
    """How many points fall in the bucket."""
    min: float | None
    """Smallest value (boolean metrics: 0 or 1); null for string metrics."""
    max: float | None
    """Largest value (boolean metrics: 0 or 1); null for string metrics."""
    mean: float | None
    """Mean value (boolean metrics: the share of true); null for string metrics."""


class ReadingsPublic(_Public):
    device_id: str
    """The device."""
    metric: str
    """The metric."""
    kind: MetricKind
    """number, boolean or string."""
    unit: str | None
    """The catalogue's unit, or null."""
    start: Rfc3339
    """Start of the range, included."""
    end: Rfc3339
    """End of the range, excluded."""
    every_ms: int | None
    """The bucket length when downsampled, else null."""
    points: list[PointPublic] | None
    """The stored points, oldest first (without ``every``); null when downsampled."""
    buckets: list[BucketPublic] | None
    """Buckets with at least one point, oldest first (with ``every``); else null."""
    truncated: bool
    """True when ``limit`` cut the answer short: ask again from the last ``ts`` on."""


# ---- dead letters ---------------------------------------------------------------------------


class DeadLetterPublic(_Public):
    id: int
    """Dead-letter id, increasing."""
    received: Rfc3339
    """When the collector received the message."""
    received_ms: int
    """The same, in epoch milliseconds."""
    topic: str
    """The MQTT topic it came on."""
    reason: str
    """The reason code (bad_topic, not_json, unknown_metric...)."""
    detail: str
    """Why it was rejected, in one sentence."""
    device_id: str | None
    """The device named by the topic, when the topic had one."""
    payload_size: int
    """The size of the whole payload in bytes."""
    payload_stored: int
    """How many of its first bytes were kept."""
    payload_text: str
    """The kept bytes as UTF-8, with undecodable bytes replaced by U+FFFD."""
    payload_base64: str
    """The kept bytes, base64-encoded (exact)."""


class DeadLettersPublic(_Page):
    items: list[DeadLetterPublic]
    """This page of dead letters, newest first."""

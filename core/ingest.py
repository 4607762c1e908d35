"""What the collector hands downstream after a commit: the narrow collector → rules interface.

The collector never imports `rules`; the wiring (`parkguard serve`) gives it listeners that
take a CommittedBatch. A listener runs after the batch is durable, in commit order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from core.contract import Event, Telemetry

Presence = Literal["online", "offline", "unknown"]


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    device_id: str
    presence: Presence
    ts_ms: int
    cause: Literal["status", "silence", "broker_lost", "message", "startup"]


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """Newly stored messages (duplicates left out) and presence transitions of one commit."""

    telemetry: list[Telemetry] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    presence: list[PresenceUpdate] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.telemetry or self.events or self.presence)


class BatchListener(Protocol):
    def __call__(self, batch: CommittedBatch, /) -> None: ...


@dataclass(frozen=True, slots=True)
class IngestStatus:
    """What health and the console show of the ingest path."""

    broker_connected: bool
    broker: str
    queue_depth: int
    queue_max: int
    messages_in: int
    stored: int
    duplicates: int
    dead_letters: dict[str, int]
    last_message_ms: int | None = None
    """When the last message was received (None: none since the collector started)."""
    spool_backlog: int | None = None
    """Readings waiting in the InfluxDB outage spool, as reported (the live status leaves it
    to the readings store's own status)."""
    reported_ms: int | None = None
    """When the collector reported this (``parkguard api`` reads it from the database); None
    for the live status of a collector in this process."""
    problem: str | None = None
    """Why the status cannot be trusted (no report, or a stale one); health says it."""

"""The collector's report of itself: one row per collector (its MQTT client id), written every
few seconds and at stop by ``collector.heartbeat``, so that processes without the collector
(``parkguard api``, ``parkguard health collector``) can tell whether ingest works and how
fresh that news is. Imported at the end of core.models."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base


class CollectorStatus(Base):
    __tablename__ = "collector_status"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    running: Mapped[bool] = mapped_column(Boolean)
    """False once the collector stopped cleanly (its last report)."""
    broker: Mapped[str] = mapped_column(String(512))
    """The broker's URL without its password."""
    broker_connected: Mapped[bool] = mapped_column(Boolean)
    queue_depth: Mapped[int] = mapped_column(Integer)
    queue_max: Mapped[int] = mapped_column(Integer)
    messages_in: Mapped[int] = mapped_column(BigInteger)
    stored: Mapped[int] = mapped_column(BigInteger)
    duplicates: Mapped[int] = mapped_column(BigInteger)
    dead_letters: Mapped[dict[str, int]] = mapped_column(JSON)
    """Rejected messages per reason since the collector started."""
    spool_backlog: Mapped[int | None] = mapped_column(BigInteger)
    """Readings waiting in the InfluxDB outage spool (None: unknown or no spool)."""
    last_message_ms: Mapped[int | None] = mapped_column(BigInteger)
    started_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)

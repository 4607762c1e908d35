"""The relational data model (SQLAlchemy 2, typed ORM), the same on SQLite and PostgreSQL.

Times that come from devices are stored as integer epoch milliseconds (``*_ms``): exact,
portable, and the identity of a message is (device, seq, ts).
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = String(64)
AutoId = BigInteger().with_variant(Integer, "sqlite")
ZONE_KINDS = ("general", "warehouse", "hazmat", "fire_lane", "office", "public")
PRESENCE = ("online", "offline", "unknown")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")


class Building(Base):
    __tablename__ = "buildings"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))


class Floor(Base):
    __tablename__ = "floors"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), index=True)
    level: Mapped[int] = mapped_column(Integer)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    width: Mapped[float] = mapped_column(Float, default=100.0)
    height: Mapped[float] = mapped_column(Float, default=60.0)


class Zone(Base):
    __tablename__ = "zones"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    building_id: Mapped[str | None] = mapped_column(ForeignKey("buildings.id"), index=True)
    floor_id: Mapped[str | None] = mapped_column(ForeignKey("floors.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    polygon: Mapped[list[Any]] = mapped_column(default=list)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    in_service_date: Mapped[date | None] = mapped_column(Date)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    x: Mapped[float | None] = mapped_column(Float)
    y: Mapped[float | None] = mapped_column(Float)


class DeviceState(Base):
    """The live state of a device: presence, last values, battery and fault."""

    __tablename__ = "device_state"
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    presence: Mapped[str] = mapped_column(String(8), default="unknown")
    presence_since_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    battery_pct: Mapped[float | None] = mapped_column(Float)
    fault: Mapped[bool] = mapped_column(Boolean, default=False)


class Reading(Base):
    """One metric value of one telemetry message; the primary key is the message identity.

    On SQLite the table is clustered on that key (WITHOUT ROWID): one B-tree per insert
    instead of a table and an index, which is most of the ingest path's write cost."""

    __tablename__ = "readings"
    __table_args__ = ({"sqlite_with_rowid": False},)
    device_id: Mapped[str] = mapped_column(Id, primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)
    text: Mapped[str | None] = mapped_column(String(64))


class DeviceEvent(Base):
    __tablename__ = "device_events"
    __table_args__ = (
        UniqueConstraint("device_id", "ts_ms", "seq", name="uq_device_events_identity"),
        Index("ix_device_events_ts", "ts_ms"),
    )
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(Id)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_ms: Mapped[int] = mapped_column(BigInteger)


class PresenceChange(Base):
    """Every presence transition, so availability over any past period can be recomputed."""

    __tablename__ = "presence_changes"
    __table_args__ = (Index("ix_presence_changes_device_ts", "device_id", "ts_ms"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(Id)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    presence: Mapped[str] = mapped_column(String(8))
    cause: Mapped[str] = mapped_column(String(16))


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_reason", "reason"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    received_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    topic: Mapped[str] = mapped_column(String(512))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_size: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(Id)


from core import (  # noqa: E402,F401
    models_alerts,
    models_auth,
    models_collector,
    models_compliance,
    models_incidents,
    models_maintenance,
    models_spool,
    models_training,
)

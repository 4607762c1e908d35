"""Tables of the production stack: the readings spool of the InfluxDB backend and the MQTT
credentials of the devices. Imported at the end of core.models.

``readings_spool`` holds InfluxDB line-protocol lines that could not be written while InfluxDB
was unreachable; they are committed in the collector's own transaction (so an acknowledged
message is durable) and drained oldest first (by ``id``) when InfluxDB returns.

``mqtt_credentials`` holds one Mosquitto password hash per device (``$7$`` PBKDF2-SHA512, the
format of ``mosquitto_passwd``); the secret itself is shown once when issued and never stored.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models import AutoId, Base, Id


class SpooledLine(Base):
    __tablename__ = "readings_spool"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    message: Mapped[str] = mapped_column(String(128), index=True)  # device/ts_ms/seq
    line: Mapped[str] = mapped_column(Text)
    spooled_ms: Mapped[int] = mapped_column(BigInteger)


class MqttCredential(Base):
    __tablename__ = "mqtt_credentials"
    device_id: Mapped[str] = mapped_column(Id, primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    issued_ms: Mapped[int] = mapped_column(BigInteger)

"""Settings from `PARKGUARD_*` environment variables, built by the entry points, never at import."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PARKGUARD_"


class SettingsError(Exception):
    """One sentence naming the variable that is wrong; start-up stops with it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    database_url: str = Field(
        default="sqlite:///./var/parkguard.db",
        description="SQLAlchemy URL of the relational store (SQLite file or PostgreSQL).",
    )
    readings_url: str | None = Field(
        default=None, description="Readings store URL; unset means the relational store."
    )
    influx_token: str | None = Field(
        default=None, description="InfluxDB API token for an influxdb:// readings URL."
    )
    mqtt_url: str | None = Field(
        default=None,
        description="mqtt://user:pass@host:port or mqtts://...; unset starts the built-in broker.",
    )
    mqtt_client_id: str = Field(default="parkguard-collector", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    mqtt_protocol: str = Field(default="5", pattern=r"^(5|3\.1\.1)$")
    mqtt_shared_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    mqtt_session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        le=2**32 - 1,
        description="How long the broker keeps the collector's sessions (and queues their "
        "messages) while it is away; MQTT 5 only.",
    )
    site: Path | None = Field(default=None, description="Site folder (site.yaml, devices.csv...).")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    timezone: str = "Asia/Shanghai"
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    flush_interval_ms: int = Field(
        default=25,
        ge=1,
        le=10_000,
        description="Telemetry waits at most this long for a batch. An alarm arriving while a "
        "batch commits waits for that commit, which grows with the batch; when the writer falls "
        "behind, batches grow towards batch_size by themselves (bench/alarm_latency.py, "
        "bench/ingest.py).",
    )
    queue_max: int = Field(default=50_000, ge=100, le=10_000_000)
    max_reading_age_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="Readings older than this are dead letters."
    )
    presence_sweep_s: float = Field(default=5.0, gt=0, le=3600)

    @field_validator("site", "mqtt_url", "readings_url", "mqtt_shared_group", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`PARKGUARD_SITE=` in a shell or compose file means unset, not the current folder."""
        return None if value == "" else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must look like mqtt://user:pass@host:port or mqtts://host:port")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError as exc:
            raise ValueError("port must be a number") from exc
        return value

    @field_validator("database_url", "readings_url")
    @classmethod
    def _db_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0]
        allowed = ("sqlite", "postgresql", "postgresql+psycopg", "influxdb", "influxdbs")
        if "://" not in value or scheme not in allowed:
            raise ValueError(f"scheme must be one of {', '.join(allowed)}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and overrides), turning errors into one sentence."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise SettingsError(f"{ENV_PREFIX}{field.upper()} is invalid: {first['msg']}.") from exc

"""Payload → typed, catalogue-checked message, or a ContractError naming the dead-letter reason."""

from __future__ import annotations

from dataclasses import dataclass

from core.catalogue import Catalogue, DeviceType
from core.contract import (
    INVALID_FIELDS,
    OUT_OF_RANGE,
    TS_FUTURE,
    TS_TOO_OLD,
    UNKNOWN_DEVICE,
    UNKNOWN_EVENT,
    UNKNOWN_METRIC,
    ContractError,
    Event,
    Message,
    Telemetry,
    decode,
)

FUTURE_TOLERANCE_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    site_id: str
    type: str


class Decoder:
    """Checks messages against the contract, the device register and the catalogue."""

    def __init__(
        self, catalogue: Catalogue, register: dict[str, RegisteredDevice], max_age_ms: int
    ) -> None:
        self.catalogue = catalogue
        self.register = register
        self.max_age_ms = max_age_ms

    def device_type(self, device_id: str) -> DeviceType:
        return self.catalogue.device_types[self.register[device_id].type]

    def decode(self, topic: str, payload: bytes, now_ms: int) -> Message:
        message = decode(topic, payload)
        device = self.register.get(message.device_id)
        if device is None or device.site_id != message.site:
            raise ContractError(
                UNKNOWN_DEVICE,
                f"device {message.device_id!r} is not registered at site {message.site!r}",
            )
        if message.ts_ms > now_ms + FUTURE_TOLERANCE_MS:
            raise ContractError(
                TS_FUTURE,
                f"ts is {(message.ts_ms - now_ms) / 1000:.0f} s in the future (limit 300 s)",
            )
        if message.ts_ms < now_ms - self.max_age_ms:
            raise ContractError(
                TS_TOO_OLD,
                f"ts is {(now_ms - message.ts_ms) / 1000:.0f} s old "
                f"(limit {self.max_age_ms // 1000} s)",
            )
        device_type = self.catalogue.device_types[device.type]
        if isinstance(message, Telemetry):
            self._check_metrics(device.type, device_type, message)
        elif isinstance(message, Event) and message.event not in device_type.events:
            raise ContractError(
                UNKNOWN_EVENT, f"event {message.event!r} is not one a {device.type} sends"
            )
        return message

    @staticmethod
    def _check_metrics(type_name: str, device_type: DeviceType, message: Telemetry) -> None:
        for name, value in message.metrics.items():
            metric = device_type.metrics.get(name)
            if metric is None:
                raise ContractError(
                    UNKNOWN_METRIC, f"metric {name!r} is not one a {type_name} reports"
                )
            if metric.accepts(value):
                continue
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            if metric.kind == "number" and is_number:
                raise ContractError(
                    OUT_OF_RANGE,
                    f"{name}={value!r} is outside {metric.min}..{metric.max} {metric.unit}",
                )
            raise ContractError(INVALID_FIELDS, f"{name}={value!r} is not a {metric.kind}")

"""The device catalogue: device types, their metrics (unit, range, normal band) and events."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.contract import MetricValue


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metric(_Frozen):
    kind: Literal["number", "boolean", "string"]
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    normal: tuple[float, float] | bool | None = Field(
        default=None,
        description="number: the [low, high] band in which the device is intact; "
        "boolean: the value that is normal",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Metric:
        if self.kind == "number":
            if self.min is None or self.max is None or self.min > self.max:
                raise ValueError("a number metric needs min <= max")
            if self.normal is not None and not isinstance(self.normal, tuple):
                raise ValueError("a number metric's normal band is [low, high]")
        elif self.kind == "boolean":
            if self.normal is not None and not isinstance(self.normal, bool):
                raise ValueError("a boolean metric's normal value is true or false")
        elif self.normal is not None:
            raise ValueError("a string metric has no normal value")
        return self

    def accepts(self, value: MetricValue) -> bool:
        """Whether the value has this metric's kind and lies in its physical range."""
        if self.kind == "boolean":
            return isinstance(value, bool)
        if self.kind == "string":
            return isinstance(value, str)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        assert self.min is not None and self.max is not None
        return self.min <= value <= self.max

    def is_normal(self, value: MetricValue) -> bool:
        if self.normal is None:
            return True
        if isinstance(self.normal, bool):
            return value is self.normal
        low, high = self.normal
        return not isinstance(value, bool | str) and low <= value <= high


class DeviceType(_Frozen):
    zh: str
    en: str
    category: str
    heartbeat_s: int = Field(gt=0)
    metrics: dict[str, Metric]
    events: frozenset[str]


class Category(_Frozen):
    zh: str
    en: str


class Catalogue(_Frozen):
    device_types: dict[str, DeviceType]
    categories: dict[str, Category]

    @model_validator(mode="after")
    def _known_categories(self) -> Catalogue:
        for name, device_type in self.device_types.items():
            if device_type.category not in self.categories:
                raise ValueError(f"{name}: unknown category {device_type.category!r}")
        return self

    def type_of(self, name: str) -> DeviceType:
        return self.device_types[name]


@cache
def load_catalogue() -> Catalogue:
    text = resources.files("core").joinpath("catalogue.yaml").read_text(encoding="utf-8")
    return Catalogue.model_validate(yaml.safe_load(text))

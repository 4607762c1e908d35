"""Durations in scenario files: ``90``, ``90s``, ``500ms``, ``10m``, ``2m30s``, ``1h``, ``-2m``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*([+-]?)((?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+|\d+(?:\.\d+)?)\s*$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
HELP = "a duration such as 500ms, 30s, 2m30s, 1h or a number of seconds"


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``30s``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not {HELP}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is not None:
            total = sum(float(n) * _UNIT_S[unit or "s"] for n, unit in _PART.findall(match[2]))
            return -total if match[1] == "-" else total
    raise ValueError(f"{str(value)[:40]!r} is not {HELP}")


def show(seconds: float) -> str:
    """A duration as a person writes it: 45s, 2m30s, 1h5m, 0.5s."""
    whole = round(seconds)
    if abs(seconds - whole) > 1e-9 or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n)


Duration = Annotated[float, BeforeValidator(parse_duration)]

"""What people send, checked at the API's edge: request bodies, free text and query times.
A refusal is a 422 with one sentence."""

from __future__ import annotations

import re

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict

from api.timefmt import parse_time

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Body(BaseModel):
    """A request body: unknown fields refused, text stripped, fields described by docstrings."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, use_attribute_docstrings=True
    )


def clean_text(value: str | None) -> str | None:
    """A field validator for words kept in a journal: no control characters (a tab and a line
    break are words' own), and empty means none."""
    if value is None:
        return None
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value or None


def query_time(value: str | None, name: str) -> int | None:
    """A query parameter's time (RFC 3339 or epoch ms) as epoch ms; None when not given."""
    if value is None:
        return None
    try:
        return parse_time(value, name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None

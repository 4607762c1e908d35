"""Checking free text from people (notes, fixes, titles) once, at the edge."""

from __future__ import annotations

import re

from maintenance.errors import InvalidInput

_CONTROL_LINE = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BLOCK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PERSON = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def clean_text(
    value: str | None,
    field: str,
    *,
    max_length: int,
    required: bool = False,
    multiline: bool = True,
) -> str | None:
    """The text stripped, or None when empty and optional; InvalidInput names the field.

    Text is stored verbatim otherwise (markup is escaped where it is shown, never here); only
    control characters are refused, because PostgreSQL cannot store NUL and they serve no one.
    """
    if value is None or not value.strip():
        if required:
            raise InvalidInput(f"{field} is required and must not be blank")
        return None
    value = value.strip()
    if len(value) > max_length:
        raise InvalidInput(f"{field} is {len(value)} characters long; at most {max_length}")
    pattern = _CONTROL_BLOCK if multiline else _CONTROL_LINE
    if pattern.search(value):
        kind = "control characters" if multiline else "line breaks or control characters"
        raise InvalidInput(f"{field} must not contain {kind}")
    return value


def check_person(value: str | None, field: str = "user") -> str | None:
    """A user name as given in X-ParkGuard-User or an assignee: 1-64 of A-Z a-z 0-9 _ . @ -."""
    if value is None or value == "":
        return None
    if not _PERSON.match(value):
        raise InvalidInput(f"{field} {value[:40]!r} must be 1-64 letters, digits or any of _ . @ -")
    return value

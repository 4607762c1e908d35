"""Taking a device out of service on purpose, and putting it back.

A device out of service is not counted in the intactness figure, and is listed apart with who
took it out, why, since when and when it is expected back: never silently dropped. The record
cannot be backdated (it starts when it is recorded) nor edited afterwards; putting the device
back closes it with who and a note. One open record per device is a database guarantee.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import Device
from core.models_compliance import OutOfService

REASON_MAX = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class OutOfServiceError(Exception):
    """A request refused; the message is one sentence for the person asking."""


class NotFound(OutOfServiceError):
    pass


class Conflict(OutOfServiceError):
    pass


class InvalidInput(OutOfServiceError, ValueError):
    pass


def clean(text: str | None, name: str, *, required: bool) -> str | None:
    """Trimmed text without control characters; refused when required and empty, or too long."""
    if text is None or not text.strip():
        if required:
            raise InvalidInput(f"a {name} is required")
        return None
    if _CONTROL.search(text):
        raise InvalidInput(f"the {name} contains control characters")
    text = text.strip()
    if len(text) > REASON_MAX:
        raise InvalidInput(f"the {name} is longer than {REASON_MAX} characters")
    return text


def current(session: Session, device_id: str) -> OutOfService | None:
    return session.scalar(select(OutOfService).where(OutOfService.open_key == device_id))


def take_out(
    session: Session,
    device_id: str,
    *,
    by: str,
    reason: str,
    now_ms: int,
    expected_back_ms: int | None = None,
) -> OutOfService:
    """Record the device out of service from now; the caller commits."""
    why = clean(reason, "reason", required=True)
    assert why is not None
    if session.get(Device, device_id) is None:
        raise NotFound(f"no device with id {device_id!r}")
    if expected_back_ms is not None and expected_back_ms <= now_ms:
        raise InvalidInput("the expected return must be in the future")
    held = current(session, device_id)
    if held is not None:
        raise Conflict(
            f"device {device_id} has been out of service since record {held.id}, "
            f"taken out by {held.taken_by}"
        )
    record = OutOfService(
        open_key=device_id,
        device_id=device_id,
        since_ms=now_ms,
        taken_by=by,
        reason=why,
        expected_back_ms=expected_back_ms,
    )
    session.add(record)
    try:
        session.flush()
    except IntegrityError:  # someone took it out a moment ago
        session.rollback()
        raise Conflict(
            f"device {device_id} was just taken out of service by someone else"
        ) from None
    return record


def put_back(
    session: Session, device_id: str, *, by: str, note: str | None, now_ms: int
) -> OutOfService:
    """Close the device's open out-of-service record; the caller commits."""
    text = clean(note, "note", required=False)
    if session.get(Device, device_id) is None:
        raise NotFound(f"no device with id {device_id!r}")
    record = session.scalar(
        select(OutOfService).where(OutOfService.open_key == device_id).with_for_update()
    )
    if record is None:
        raise Conflict(f"device {device_id} is not out of service")
    record.open_key = None
    record.until_ms = max(now_ms, record.since_ms)
    record.returned_by = by
    record.return_note = text
    session.flush()
    return record


def history(session: Session, device_id: str, limit: int = 100) -> list[OutOfService]:
    """The device's out-of-service records, newest first."""
    return list(
        session.scalars(
            select(OutOfService)
            .where(OutOfService.device_id == device_id)
            .order_by(OutOfService.since_ms.desc(), OutOfService.id.desc())
            .limit(limit)
        )
    )

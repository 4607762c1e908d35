"""The safety-training register (clause 5.5.1: regular safety training of all staff).

A session is the local day it was held (park time zone), a topic, a trainer, the people who
attended and how many: the count is required (a head count is enough), the names are optional
and never more than the count. Everything is checked here, before anything is written, so the
API and any other caller refuse the same things with the same sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Site
from core.models_training import TrainingSession

TOPIC_MAX = 200
TRAINER_MAX = 100
NAME_MAX = 100
NOTE_MAX = 2000
ATTENDEES_MAX = 5000
HOURS_MAX = 24.0
OLDEST = date(2000, 1, 1)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


class TrainingInputError(ValueError):
    """A session the register refuses; the message is one sentence naming the field."""


@dataclass(frozen=True, slots=True)
class NewSession:
    held_on: date
    topic: str
    trainer: str
    attendee_count: int
    attendees: tuple[str, ...] = ()
    hours: float | None = None
    note: str | None = None
    site_id: str | None = None
    """The site; None: the only site of the park (refused when there are several)."""


def _text(value: str | None, name: str, limit: int, *, required: bool) -> str | None:
    if value is None or not value.strip():
        if required:
            raise TrainingInputError(f"{name} is required")
        return None
    text = value.strip()
    if _CONTROL.search(text):
        raise TrainingInputError(f"{name} contains control or direction characters")
    if "\n" in text and name != "note":
        raise TrainingInputError(f"{name} must be one line")
    if len(text) > limit:
        raise TrainingInputError(f"{name} is longer than {limit} characters")
    return text


def check(new: NewSession, today: date) -> NewSession:
    """The session with its texts trimmed, or TrainingInputError naming what is wrong."""
    if new.held_on > today:
        raise TrainingInputError(
            f"held_on {new.held_on.isoformat()} is in the future (today is {today.isoformat()} "
            "in the park): record a session once it has been held"
        )
    if new.held_on < OLDEST:
        raise TrainingInputError(f"held_on must be on or after {OLDEST.isoformat()}")
    topic = _text(new.topic, "topic", TOPIC_MAX, required=True)
    trainer = _text(new.trainer, "trainer", TRAINER_MAX, required=True)
    note = _text(new.note, "note", NOTE_MAX, required=False)
    names: list[str] = []
    for i, name in enumerate(new.attendees):
        cleaned = _text(name, f"attendees[{i}]", NAME_MAX, required=True)
        assert cleaned is not None
        if cleaned in names:
            raise TrainingInputError(f"attendees[{i}] {cleaned!r} is listed twice")
        names.append(cleaned)
    if isinstance(new.attendee_count, bool) or not 1 <= new.attendee_count <= ATTENDEES_MAX:
        raise TrainingInputError(f"attendee_count must be between 1 and {ATTENDEES_MAX}")
    if len(names) > new.attendee_count:
        raise TrainingInputError(
            f"attendee_count {new.attendee_count} is less than the {len(names)} names given"
        )
    if new.hours is not None and not 0 < new.hours <= HOURS_MAX:
        raise TrainingInputError(f"hours must be more than 0 and at most {HOURS_MAX:g}")
    assert topic is not None and trainer is not None
    return NewSession(
        new.held_on,
        topic,
        trainer,
        new.attendee_count,
        tuple(names),
        new.hours,
        note,
        new.site_id,
    )


def site_of(session: Session, site_id: str | None) -> tuple[str, ZoneInfo]:
    """The site (given, or the only one) and its time zone."""
    rows = session.execute(select(Site.id, Site.timezone).order_by(Site.id)).all()
    if site_id is None:
        if len(rows) != 1:
            raise TrainingInputError(
                "site_id is required: the park has "
                + ("no site yet" if not rows else f"{len(rows)} sites")
            )
        found = rows[0]
    else:
        match = next((r for r in rows if r.id == site_id), None)
        if match is None:
            raise TrainingInputError(f"no site with id {site_id[:64]!r}")
        found = match
    try:
        zone = ZoneInfo(found.timezone or "Asia/Shanghai")
    except (KeyError, ValueError):
        zone = ZoneInfo("Asia/Shanghai")
    return str(found.id), zone


def record(session: Session, new: NewSession, *, by: str, now_ms: int) -> TrainingSession:
    """Check and add a session; the caller commits."""
    site_id, zone = site_of(session, new.site_id)
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    ok = check(new, today)
    row = TrainingSession(
        site_id=site_id,
        held_on=ok.held_on,
        topic=ok.topic,
        trainer=ok.trainer,
        attendees=list(ok.attendees),
        attendee_count=ok.attendee_count,
        hours=ok.hours,
        note=ok.note,
        recorded_by=by,
        recorded_ms=now_ms,
    )
    session.add(row)
    session.flush()
    return row


def sessions_between(
    session: Session,
    first: date,
    last: date,
    *,
    site_id: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[TrainingSession], int]:
    """Sessions held on days in [first, last], oldest first, and how many in all."""
    where = [TrainingSession.held_on >= first, TrainingSession.held_on <= last]
    if site_id is not None:
        where.append(TrainingSession.site_id == site_id)
    total = session.scalar(select(func.count()).select_from(TrainingSession).where(*where))
    query = (
        select(TrainingSession)
        .where(*where)
        .order_by(TrainingSession.held_on, TrainingSession.id)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query)), int(total or 0)


def last_before(session: Session, day: date) -> TrainingSession | None:
    """The latest session held before ``day``."""
    return session.scalars(
        select(TrainingSession)
        .where(TrainingSession.held_on < day)
        .order_by(TrainingSession.held_on.desc(), TrainingSession.id.desc())
        .limit(1)
    ).first()


def days_between(a: date, b: date) -> int:
    return (b - a) // timedelta(days=1)

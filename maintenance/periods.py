"""Inspection periods: where a daily, weekly... or cron period starts and ends, in the park's zone.

A period starts at local midnight (named frequencies) or at a cron fire time, and ends where the
next one starts. Instants come in and go out as aware UTC datetimes; only the boundaries are
computed in local time, so Asia/Shanghai's midnight is 16:00 UTC the day before.

Cron expressions mean what they mean in crontab(5): day of week 0 or 7 is Sunday (APScheduler
3 counts from Monday, so the field is translated here), and an expression that restricts both
day of month and day of week is refused, because crontab ORs the two and APScheduler ANDs them.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

Frequency = Literal["daily", "weekly", "half_monthly", "monthly", "quarterly", "yearly"]
FREQUENCIES: tuple[Frequency, ...] = (
    "daily",
    "weekly",
    "half_monthly",
    "monthly",
    "quarterly",
    "yearly",
)
NOMINAL: dict[str, timedelta] = {
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "half_monthly": timedelta(days=15),
    "monthly": timedelta(days=30),
    "quarterly": timedelta(days=91),
    "yearly": timedelta(days=365),
}
CRON_MIN_GAP = timedelta(hours=1)
_LOOKBACK = (timedelta(days=2), timedelta(days=32), timedelta(days=367), timedelta(days=5 * 366))


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) as aware UTC instants."""

    start: datetime
    end: datetime


class Schedule(Protocol):
    @property
    def label(self) -> str:
        """``monthly`` or ``cron: 0 8 * * 1``: how tasks record their frequency."""
        ...

    @property
    def nominal(self) -> timedelta:
        """The typical length of a period, to compare strictness."""
        ...

    def containing(self, at: datetime) -> Period | None:
        """The period in which ``at`` lies (None: a cron that never fired in five years)."""
        ...

    def following(self, period: Period) -> Period:
        """The period right after ``period``."""
        ...

    def first_after(self, at: datetime) -> Period | None:
        """The first period that starts strictly after ``at``."""
        ...


def periods_between(schedule: Schedule, after: datetime, until: datetime) -> list[Period]:
    """Every period that starts in (after, until], oldest first."""
    found: list[Period] = []
    period = schedule.first_after(after)
    while period is not None and period.start <= until:
        found.append(period)
        period = schedule.following(period)
    return found


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which ``day`` begins in ``tz``."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class CalendarSchedule:
    """Periods that begin at local midnight on calendar boundaries."""

    frequency: Frequency
    tz: ZoneInfo

    @property
    def label(self) -> str:
        return self.frequency

    @property
    def nominal(self) -> timedelta:
        return NOMINAL[self.frequency]

    def containing(self, at: datetime) -> Period:
        day = self._start_day(at.astimezone(self.tz).date())
        start = local_midnight(day, self.tz)
        if start > at:  # only where a zone skips midnight itself
            day = self._start_day(day - timedelta(days=1))
            start = local_midnight(day, self.tz)
        return Period(start, local_midnight(self._next_day(day), self.tz))

    def following(self, period: Period) -> Period:
        day = self._start_day(period.end.astimezone(self.tz).date())
        return Period(period.end, local_midnight(self._next_day(day), self.tz))

    def first_after(self, at: datetime) -> Period:
        return self.following(self.containing(at))

    def _start_day(self, day: date) -> date:
        match self.frequency:
            case "daily":
                return day
            case "weekly":
                return day - timedelta(days=day.weekday())
            case "half_monthly":
                return day.replace(day=1 if day.day <= 15 else 16)
            case "monthly":
                return day.replace(day=1)
            case "quarterly":
                return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
            case "yearly":
                return date(day.year, 1, 1)

    def _next_day(self, start: date) -> date:
        match self.frequency:
            case "daily":
                return start + timedelta(days=1)
            case "weekly":
                return start + timedelta(days=7)
            case "half_monthly":
                return start.replace(day=16) if start.day == 1 else _month_start(start, 1)
            case "monthly":
                return _month_start(start, 1)
            case "quarterly":
                return _month_start(start, 3)
            case "yearly":
                return date(start.year + 1, 1, 1)


def _month_start(start: date, months: int) -> date:
    """The first day of the month ``months`` after ``start``'s month."""
    index = start.year * 12 + start.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


class CronSchedule:
    """Periods that begin at the fire times of a crontab(5) expression, in the park's zone."""

    __slots__ = ("_trigger", "expression", "tz")

    def __init__(self, expression: str, tz: ZoneInfo) -> None:
        self.expression = " ".join(expression.split())
        self.tz = tz
        self._trigger = cron_trigger(self.expression, tz)

    @property
    def label(self) -> str:
        return f"cron: {self.expression}"

    @property
    def nominal(self) -> timedelta:
        fires = self._fires_from(datetime(2026, 1, 1, tzinfo=UTC), 12)
        gaps = sorted(b - a for a, b in itertools.pairwise(fires))
        return gaps[len(gaps) // 2] if gaps else timedelta(days=3650)

    def min_gap(self, sample: int = 400) -> timedelta | None:
        fires = self._fires_from(datetime(2026, 1, 1, tzinfo=UTC), sample)
        gaps = [b - a for a, b in itertools.pairwise(fires)]
        return min(gaps) if gaps else None

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after``."""
        fire = self._trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
        return None if fire is None else fire.astimezone(UTC)

    def containing(self, at: datetime) -> Period | None:
        for window in _LOOKBACK:
            last: datetime | None = None
            fire = self.next_fire(at - window)
            while fire is not None and fire <= at:
                last = fire
                fire = self.next_fire(fire)
            if last is not None:
                return Period(last, fire or last + window)
        return None

    def following(self, period: Period) -> Period:
        return self._period_at(period.end)

    def first_after(self, at: datetime) -> Period | None:
        fire = self.next_fire(at)
        return None if fire is None else self._period_at(fire)

    def _period_at(self, start: datetime) -> Period:
        end = self.next_fire(start)
        return Period(start, end if end is not None else start + timedelta(days=3650))

    def _fires_from(self, at: datetime, count: int) -> list[datetime]:
        fires: list[datetime] = []
        fire = self.next_fire(at)
        while fire is not None and len(fires) < count:
            fires.append(fire)
            fire = self.next_fire(fire)
        return fires


_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DOW_ITEM = re.compile(r"^(\*|[0-9a-z]{1,3})(?:-([0-9a-z]{1,3}))?(?:/(\d{1,2}))?$")


def cron_trigger(expression: str, tz: ZoneInfo) -> CronTrigger:
    """An APScheduler trigger for a crontab(5) expression; ValueError in one sentence."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {expression!r} needs 5 fields (minute hour day month weekday), "
            f"got {len(fields)}"
        )
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ValueError(
            f"cron expression {expression!r} restricts both day of month and day of week, "
            "which crontab and APScheduler read differently; restrict only one"
        )
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_weekday_field(weekday),
            timezone=tz,
        )
    except ValueError as exc:
        raise ValueError(f"cron expression {expression!r} is invalid: {exc}") from None


def _weekday_field(field: str) -> str:
    """crontab day of week (0/7 = Sunday, names) → an explicit APScheduler list of names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        match = _DOW_ITEM.match(item)
        if match is None:
            raise ValueError(f"day of week {field!r} is not a crontab day-of-week field")
        first, last, step = match.groups()
        if first == "*":
            low, high = 0, 6
        else:
            low = _weekday_number(first, field)
            high = _weekday_number(last, field) if last else (6 if step else low)
        if last and high < low:
            if high == 0:
                high = 7
            else:
                raise ValueError(f"day of week range {item!r} runs backwards")
        stride = int(step) if step else 1
        if stride < 1:
            raise ValueError(f"day of week step in {item!r} must be at least 1")
        days.update(value % 7 for value in range(low, high + 1, stride))
    return ",".join(_DOW_NAMES[d] for d in sorted(days))


def _weekday_number(token: str, field: str) -> int:
    if token.isdigit():
        value = int(token)
        if value > 7:
            raise ValueError(f"day of week {field!r}: {value} is not 0-7")
        return value
    if token in _DOW_NAMES:
        return _DOW_NAMES.index(token)
    raise ValueError(f"day of week {field!r}: {token!r} is not a day")

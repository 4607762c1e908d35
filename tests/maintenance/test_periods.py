"""Period boundaries in the park's zone: Shanghai midnight is 16:00 UTC the day before."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from maintenance.periods import (
    FREQUENCIES,
    CalendarSchedule,
    CronSchedule,
    periods_between,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def local(*args: int, tz: ZoneInfo = SHANGHAI) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[arg-type,misc]


def test_daily_period_turns_at_shanghai_midnight_not_utc_midnight() -> None:
    daily = CalendarSchedule("daily", SHANGHAI)
    before = datetime(2026, 3, 9, 15, 59, 59, tzinfo=UTC)  # 23:59:59 local on the 9th
    after = datetime(2026, 3, 9, 16, 0, 0, tzinfo=UTC)  # 00:00 local on the 10th
    assert daily.containing(before).start == local(2026, 3, 9)
    assert daily.containing(after).start == local(2026, 3, 10)
    assert daily.containing(after).start == datetime(2026, 3, 9, 16, tzinfo=UTC)
    # at 00:30 UTC it is already 08:30 in the park: still the same local day
    assert daily.containing(datetime(2026, 3, 10, 0, 30, tzinfo=UTC)).start == local(2026, 3, 10)


def test_same_instant_gives_different_days_in_different_zones() -> None:
    instant = datetime(2026, 3, 9, 20, 0, tzinfo=UTC)  # 04:00 on the 10th in Shanghai
    assert CalendarSchedule("daily", SHANGHAI).containing(instant).start == local(2026, 3, 10)
    assert CalendarSchedule("daily", ZoneInfo("UTC")).containing(instant).start == datetime(
        2026, 3, 9, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("frequency", "at", "start", "end"),
    [
        ("weekly", (2026, 1, 1, 12), (2025, 12, 29), (2026, 1, 5)),  # ISO week, Monday start
        ("half_monthly", (2026, 2, 15, 23), (2026, 2, 1), (2026, 2, 16)),
        ("half_monthly", (2026, 2, 16, 0), (2026, 2, 16), (2026, 3, 1)),  # 13 days in February
        ("half_monthly", (2028, 2, 29, 12), (2028, 2, 16), (2028, 3, 1)),  # leap year
        ("half_monthly", (2026, 1, 31, 23), (2026, 1, 16), (2026, 2, 1)),  # 16 days in January
        ("half_monthly", (2026, 4, 30, 23), (2026, 4, 16), (2026, 5, 1)),
        ("monthly", (2026, 1, 31, 23), (2026, 1, 1), (2026, 2, 1)),
        ("monthly", (2026, 2, 28, 23), (2026, 2, 1), (2026, 3, 1)),
        ("monthly", (2026, 12, 31, 23), (2026, 12, 1), (2027, 1, 1)),
        ("quarterly", (2026, 3, 31, 23), (2026, 1, 1), (2026, 4, 1)),
        ("quarterly", (2026, 11, 27, 8), (2026, 10, 1), (2027, 1, 1)),
        ("yearly", (2026, 12, 31, 23), (2026, 1, 1), (2027, 1, 1)),
    ],
)
def test_calendar_periods_and_month_ends(
    frequency: str, at: tuple[int, ...], start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    schedule = CalendarSchedule(frequency, SHANGHAI)  # type: ignore[arg-type]
    period = schedule.containing(local(*at))
    assert (period.start, period.end) == (local(*start), local(*end))
    assert schedule.following(period).start == period.end


@pytest.mark.parametrize("frequency", FREQUENCIES)
def test_consecutive_periods_tile_time_without_gaps(frequency: str) -> None:
    schedule = CalendarSchedule(frequency, SHANGHAI)  # type: ignore[arg-type]
    periods = periods_between(schedule, local(2025, 12, 20), local(2028, 3, 5))
    assert periods
    for a, b in itertools.pairwise(periods):
        assert a.end == b.start
        assert a.start < a.end
    for period in periods:
        assert period.start.astimezone(SHANGHAI).time().hour == 0
        assert schedule.containing(period.start) == period
        assert schedule.containing(period.end - timedelta(microseconds=1)) == period


def test_half_monthly_periods_of_a_year_are_24() -> None:
    schedule = CalendarSchedule("half_monthly", SHANGHAI)
    periods = periods_between(schedule, local(2025, 12, 31), local(2026, 12, 31, 23))
    assert len(periods) == 24
    assert [p.start.astimezone(SHANGHAI).day for p in periods[:4]] == [1, 16, 1, 16]


def test_periods_between_is_exclusive_after_and_inclusive_until() -> None:
    daily = CalendarSchedule("daily", SHANGHAI)
    got = periods_between(daily, local(2026, 5, 1), local(2026, 5, 3))
    assert [p.start for p in got] == [local(2026, 5, 2), local(2026, 5, 3)]
    assert periods_between(daily, local(2026, 5, 1, 1), local(2026, 5, 1, 23)) == []


def test_daylight_saving_days_have_23_and_25_hours() -> None:
    daily = CalendarSchedule("daily", NEW_YORK)
    spring = daily.containing(local(2026, 3, 8, 12, tz=NEW_YORK))
    autumn = daily.containing(local(2026, 11, 1, 12, tz=NEW_YORK))
    assert spring.end - spring.start == timedelta(hours=23)
    assert autumn.end - autumn.start == timedelta(hours=25)


def test_cron_periods_run_from_fire_to_fire_in_park_time() -> None:
    mondays = CronSchedule("0 9 * * 1", SHANGHAI)  # crontab: 1 = Monday
    period = mondays.containing(local(2026, 11, 27, 10))  # a Friday
    assert period is not None
    assert period.start == local(2026, 11, 23, 9)
    assert period.end == local(2026, 11, 30, 9)
    assert mondays.nominal == timedelta(days=7)
    assert mondays.label == "cron: 0 9 * * 1"


@pytest.mark.parametrize(
    ("weekday", "first"),
    [("0", 22), ("7", 22), ("sun", 22), ("6", 28), ("1-5", 23), ("*/2", 22), ("sat-sun", 22)],
)
def test_cron_weekday_means_what_crontab_means(weekday: str, first: int) -> None:
    """APScheduler 3 counts weekdays from Monday; plans use crontab's Sunday = 0."""
    schedule = CronSchedule(f"0 8 * * {weekday}", SHANGHAI)
    first_period = schedule.first_after(local(2026, 11, 21, 12))  # a Saturday noon
    assert first_period is not None
    assert first_period.start == local(2026, 11, first, 8)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 8 * *", "needs 5 fields"),
        ("0 8 1 * 1", "restricts both day of month and day of week"),
        ("0 25 * * *", "is invalid"),
        ("0 8 * * 9", "is not 0-7"),
        ("0 8 * * moonday", "not a crontab day-of-week"),
    ],
)
def test_bad_cron_expressions_say_why(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CronSchedule(expression, SHANGHAI)

"""Times at the API's edge: RFC 3339 or epoch milliseconds in, RFC 3339 UTC out, and durations.

Inside, times are integer epoch milliseconds (as stored). Each parser raises ValueError with
one sentence that a route turns into a 422.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write
_MS = timedelta(milliseconds=1)
# A '+' in a query string arrives as a space: "2026-05-01T08:00:00 08:00" meant "+08:00".
_SPACE_OFFSET = re.compile(r"^(.*\d) (\d{2}(?::?\d{2})?)$")
_DURATION = re.compile(r"^(\d{1,12})(ms|s|m|h|d|w)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def to_rfc3339(ms: int) -> str:
    """``2026-05-01T00:00:00.000Z`` for epoch milliseconds, always UTC, always milliseconds."""
    moment = EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_time(value: str, name: str) -> int:
    """Epoch milliseconds from digits (epoch ms) or an RFC 3339 date-time with an offset."""
    text = value.strip()
    if text.isdigit():
        if len(text) > 15 or int(text) > MAX_MS:
            raise ValueError(f"{name} {_show(value)} is beyond the year 9999")
        return int(text)
    match = _SPACE_OFFSET.match(text)
    if match is not None:
        text = f"{match[1]}+{match[2]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{name} {_show(value)} is neither epoch milliseconds nor an RFC 3339 date-time "
            "such as 2026-05-01T08:00:00+08:00"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} {_show(value)} has no UTC offset (add Z or +08:00)")
    ms = (moment - EPOCH) // _MS
    if ms < 0:
        raise ValueError(f"{name} {_show(value)} is before 1970-01-01T00:00:00Z")
    return ms


def parse_duration(value: str, name: str) -> int:
    """Milliseconds from ``500ms``, ``30s``, ``15m``, ``1h``, ``1d``, ``1w`` or plain seconds."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise ValueError(
            f"{name} {_show(value)} is not a duration such as 30s, 15m, 1h, 1d or a number "
            "of seconds"
        )
    return int(match[1]) * _UNIT_MS[match[2] or "s"]


def _show(value: str) -> str:
    """The value as the caller sent it, cut short so a hostile parameter is not echoed whole."""
    return repr(value if len(value) <= 64 else value[:64] + "…")

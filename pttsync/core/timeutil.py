"""Time in pttsync: integer nanoseconds since the Unix epoch, UTC.

Every time in a record, a tree node or a message is an `int` of nanoseconds
in [0, MAX_TIME]: from 1970-01-01 up to, not including, 2262-01-01.  That
bound keeps every time *and every period end* (the end of the year 2261 is
2262-01-01) below 2**63, so they all fit SQLite's signed 64-bit INTEGER.
Calendar boundaries (hour, day, month, year) are UTC; there is no local time
anywhere in the core.

Nothing here reads the clock: callers pass `now` in.
"""

from __future__ import annotations

import datetime as _dt
import re

from ..errors import UsageError

NS_PER_SECOND = 1_000_000_000
HOUR_NS = 3600 * NS_PER_SECOND
DAY_NS = 24 * HOUR_NS
_UTC = _dt.UTC
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
# 2262-01-01T00:00:00Z minus one nanosecond; see the module docstring.
MAX_TIME = (_dt.datetime(2262, 1, 1, tzinfo=_UTC) - _EPOCH).days * DAY_NS - 1


def check_time(t: int) -> int:
    """Return `t` if it is a valid pttsync time, else raise UsageError."""
    if type(t) is not int or not 0 <= t <= MAX_TIME:
        raise UsageError(f"time {t!r} is not an integer nanosecond count in [0, {MAX_TIME}]")
    return t


def _to_datetime(t: int) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(seconds=t // NS_PER_SECOND)


def _from_datetime(d: _dt.datetime) -> int:
    delta = d - _EPOCH
    return (delta.days * 86400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


def hour_start(t: int) -> int:
    return t - t % HOUR_NS


def day_start(t: int) -> int:
    return t - t % DAY_NS


def month_start(t: int) -> int:
    d = _to_datetime(t)
    return _from_datetime(_dt.datetime(d.year, d.month, 1, tzinfo=_UTC))


def year_start(t: int) -> int:
    return _from_datetime(_dt.datetime(_to_datetime(t).year, 1, 1, tzinfo=_UTC))


def next_month_start(t: int) -> int:
    d = _to_datetime(t)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return _from_datetime(_dt.datetime(year, month, 1, tzinfo=_UTC))


def next_year_start(t: int) -> int:
    return _from_datetime(_dt.datetime(_to_datetime(t).year + 1, 1, 1, tzinfo=_UTC))


# ---------------------------------------------------------------------------
# ISO 8601 text, for the CLI and for humans.

_ISO = re.compile(
    r"^(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[Tt ](?P<hm>[0-9]{2}:[0-9]{2})(?::(?P<s>[0-9]{2})(?:\.(?P<frac>[0-9]{1,9}))?)?)?"
    r"(?P<tz>[Zz]|[+-][0-9]{2}:?[0-9]{2})?$",
    re.ASCII,
)


def parse_iso(text: str) -> int:
    """Parse an ISO 8601 date or date-time into nanoseconds since the epoch.

    Accepts `2025-01-01`, `2025-01-01T12:30`, `2025-01-01T12:30:05.123456789Z`
    and explicit offsets such as `+09:00`.  A time without an offset is UTC.

    Raises:
        UsageError: the text is not such a date, or is outside [1970, 2262].
    """
    m = _ISO.match(text.strip())
    if m is None:
        raise UsageError(
            f"{text!r} is not an ISO 8601 date or time (try 2025-01-01 or 2025-01-01T12:00:00Z)"
        )
    base = m["date"] + "T" + (m["hm"] or "00:00") + ":" + (m["s"] or "00")
    tz = m["tz"] or "+00:00"
    if tz in ("Z", "z"):
        tz = "+00:00"
    try:
        utc = _dt.datetime.fromisoformat(base + tz).astimezone(_UTC)
    except ValueError as exc:
        raise UsageError(f"{text!r} is not a valid date or time: {exc}") from None
    except OverflowError:
        raise UsageError(f"{text!r} is outside the supported range") from None
    frac = (m["frac"] or "").ljust(9, "0")
    t = _from_datetime(utc) + (int(frac) if frac else 0)
    if not 0 <= t <= MAX_TIME:
        raise UsageError(f"{text!r} is outside the supported range [1970-01-01, 2262-01-01)")
    return t


def to_iso(t: int) -> str:
    """Format nanoseconds as ISO 8601 UTC, with as many fraction digits as needed."""
    text = _to_datetime(t).strftime("%Y-%m-%dT%H:%M:%S")
    frac = t % NS_PER_SECOND
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"

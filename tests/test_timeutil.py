"""UTC calendar boundaries and ISO 8601 text."""

from __future__ import annotations

import pytest

from pttsync.core import timeutil as tu
from pttsync.errors import UsageError


def test_boundaries_of_an_ordinary_time() -> None:
    t = tu.parse_iso("2009-02-13T23:31:30.123456789Z")
    assert tu.to_iso(tu.hour_start(t)) == "2009-02-13T23:00:00Z"
    assert tu.to_iso(tu.day_start(t)) == "2009-02-13T00:00:00Z"
    assert tu.to_iso(tu.month_start(t)) == "2009-02-01T00:00:00Z"
    assert tu.to_iso(tu.next_month_start(t)) == "2009-03-01T00:00:00Z"
    assert tu.to_iso(tu.year_start(t)) == "2009-01-01T00:00:00Z"
    assert tu.to_iso(tu.next_year_start(t)) == "2010-01-01T00:00:00Z"


def test_december_rolls_into_the_next_year() -> None:
    t = tu.parse_iso("2024-12-31T23:59:59.999999999Z")
    assert tu.to_iso(tu.next_month_start(t)) == "2025-01-01T00:00:00Z"


def test_leap_february() -> None:
    t = tu.parse_iso("2024-02-29T12:00Z")
    assert tu.next_month_start(t) - tu.month_start(t) == 29 * tu.DAY_NS


def test_every_period_end_fits_in_64_bits() -> None:
    assert tu.next_year_start(tu.MAX_TIME) < 2**63
    assert tu.to_iso(tu.MAX_TIME) == "2261-12-31T23:59:59.999999999Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-01", "2025-01-01T00:00:00Z"),
        ("2025-01-01T12:30", "2025-01-01T12:30:00Z"),
        ("2025-01-01 12:30:05", "2025-01-01T12:30:05Z"),
        ("2025-01-01T09:00:00+09:00", "2025-01-01T00:00:00Z"),
        ("2025-01-01T00:00:00.5Z", "2025-01-01T00:00:00.5Z"),
        ("1970-01-01T00:00:00.000000001Z", "1970-01-01T00:00:00.000000001Z"),
    ],
)
def test_parse_iso(text: str, expected: str) -> None:
    assert tu.to_iso(tu.parse_iso(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2025-13-01",
        "2025-02-30",
        "2025-01-01T25:00",
        "1969-12-31T23:59:59Z",
        "2262-01-01",
        "2025-01-01T00:00:00.1234567891Z",
    ],
)
def test_parse_iso_rejects_bad_text(text: str) -> None:
    with pytest.raises(UsageError):
        tu.parse_iso(text)


def test_check_time() -> None:
    assert tu.check_time(0) == 0
    for bad in (-1, tu.MAX_TIME + 1, True, 1.5):
        with pytest.raises(UsageError):
            tu.check_time(bad)  # type: ignore[arg-type]

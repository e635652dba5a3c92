from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from llmtally.api.errors import BadRequestError
from llmtally.api.timeparams import local_day_range, parse_instant, parse_timezone

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "name",
    [
        "UTC",
        "Europe/Paris",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Australia/Eucla",
        "America/Argentina/Buenos_Aires",
        "Etc/GMT+5",
    ],
)
def test_known_zones(name: str) -> None:
    assert parse_timezone(name).key == name


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus",
        "../../etc/passwd",
        "/etc/localtime",
        "Europe/",
        "a" * 80,
        "Europe/../UTC",
        "UTC\x00",
        " UTC",
        "Europe\\Paris",
    ],
)
def test_unknown_or_malformed_zones_are_400(name: str) -> None:
    with pytest.raises(BadRequestError, match="tz:"):
        parse_timezone(name)


def test_the_default_range_is_the_last_30_local_days() -> None:
    kolkata = parse_timezone("Asia/Kolkata")  # 20:00 UTC is already the 29th there
    assert local_day_range(None, None, kolkata, now=NOW) == (date(2026, 10, 31), date(2026, 11, 29))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-02-30", None, "start: not a date"),
        ("yesterday", None, "start: not a date"),
        ("2026-11-20", "2026-11-01", "must not be after"),
        ("2024-01-01", "2026-01-01", "more than 366 days"),
    ],
)
def test_bad_ranges_are_400(start: str, end: str | None, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        local_day_range(start, end, parse_timezone("UTC"), now=NOW)


def test_instants() -> None:
    paris = parse_timezone("Europe/Paris")
    assert parse_instant("2026-11-28", "start", paris) == datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    assert parse_instant("2026-11-28T10:00:00Z", "start", paris) == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert parse_instant("2026-11-28T10:00:00", "start", paris) == datetime(2026, 11, 28, 9, tzinfo=UTC)
    with pytest.raises(BadRequestError, match="end: not a date"):
        parse_instant("28/11/2026", "end", paris)

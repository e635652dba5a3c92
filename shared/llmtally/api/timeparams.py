"""Query parameters of the usage routes: timezones, local-day ranges, instants. Errors are 400s."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from llmtally.api.errors import BadRequestError

#: IANA names: `UTC`, `Asia/Kolkata`, `America/Argentina/Buenos_Aires`, `Etc/GMT+5`.
_TZ_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]{0,30}(/[A-Za-z0-9_+\-]{1,30}){0,2}$")
MAX_RANGE_DAYS: Final = 366
DEFAULT_RANGE_DAYS: Final = 30


def parse_timezone(name: str | None) -> ZoneInfo:
    """An IANA timezone (default UTC); a malformed or unknown name is a 400."""
    if name is None or name == "":
        return ZoneInfo("UTC")
    if not _TZ_NAME.match(name) or ".." in name:
        raise BadRequestError("tz: not an IANA timezone name (e.g. UTC, Europe/Paris, Asia/Kolkata)")
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise BadRequestError(f"tz: unknown timezone {name!r}") from exc


def parse_day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise BadRequestError(f"{name}: not a date (YYYY-MM-DD)") from exc


def parse_instant(value: str, name: str, tz: ZoneInfo) -> datetime:
    """`YYYY-MM-DD` (the start of that local day) or an ISO 8601 datetime (an offset, else local in `tz`)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError as exc:
        raise BadRequestError(f"{name}: not a date or an ISO 8601 datetime") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def local_day_range(
    start: str | None, end: str | None, tz: ZoneInfo, *, now: datetime | None = None
) -> tuple[date, date]:
    """An inclusive range of local days: defaults to the last 30 days ending today (in `tz`)."""
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    last = parse_day(end, "end") if end else today
    first = parse_day(start, "start") if start else last - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if first > last:
        raise BadRequestError("start: must not be after end")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise BadRequestError(f"the range covers more than {MAX_RANGE_DAYS} days")
    return first, last

"""Usage queries on the rollups only: a summary for a range in a timezone, and a day-by-day series.

Both are exact and read a number of items bounded by the days and dimension values in range,
never by the number of events: the range is decomposed into the coarsest UTC buckets that fit
(`llmtally.rollups.decompose`) and each granularity's run of consecutive buckets is one Query per
dimension (`RollupRepository.query_run`).

Ranges must fall on 15-minute boundaries (every IANA zone's local midnight does, Asia/Kolkata,
Asia/Kathmandu, Australia/Eucla and America/St_Johns included); anything else is refused with
`InvalidRangeError` rather than silently rounded, so a figure never covers a period other than
the one asked for. Dates stand for whole local days (an end date is inclusive).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from llmtally.money import nanos_to_usd
from llmtally.repositories.rollups import RollupRepository
from llmtally.rollups import (
    DIMENSIONS,
    Counters,
    Dimension,
    Granularity,
    InvalidRangeError,
    check_aligned,
    decompose,
    plan_runs,
    split_model_value,
    sum_counters,
)

MAX_SERIES_DAYS: Final = 366
#: A daily series' run may bridge this many unneeded buckets to save a Query (e.g. the one hour
#: split into quarters at each local midnight of a :30 zone).
SERIES_MAX_GAP: Final = 4
_LATENCY_QUANTUM: Final = Decimal("0.1")


class Breakdown(BaseModel):
    """One provider, operation or model: the seed's `requests`, `tokens`, `cost_usd`, and more."""

    model_config = ConfigDict(frozen=True)

    requests: int
    tokens: int
    cost_usd: Decimal
    billed_cost_usd: Decimal
    errors: int
    unpriced_requests: int
    usage_missing: int = 0
    provider: str | None = None


class UsageSummary(BaseModel):
    """The seed's summary shape plus averages, the ledger, errors and unpriced requests.

    `total_cost_usd` is the current rating; `billed_cost_usd` is what was billed at ingest (they
    differ only after a re-rating rebuild). `items_read`/`queries` say what the answer cost.
    `cache_hits` are requests the response cache answered (in `total_requests`, at $0);
    `saved_cost_usd` is what those answers cost when they were first produced. `usage_missing` counts
    requests whose provider never reported usage (their tokens and cost are lower bounds).
    """

    model_config = ConfigDict(frozen=True)

    user_id: str
    timezone: str
    start: datetime
    end: datetime
    total_requests: int
    total_tokens: int
    total_cost_usd: Decimal
    billed_cost_usd: Decimal
    avg_cost_per_request_usd: Decimal
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    errors: int
    unpriced_requests: int
    usage_missing: int
    avg_latency_ms: Decimal
    cache_hits: int
    saved_cost_usd: Decimal
    by_provider: dict[str, Breakdown]
    by_operation: dict[str, Breakdown]
    by_model: dict[str, Breakdown]
    items_read: int
    queries: int


class DailyUsage(BaseModel):
    """One local day of a series (zero-filled)."""

    model_config = ConfigDict(frozen=True)

    date: date
    requests: int
    tokens: int
    cost_usd: Decimal
    billed_cost_usd: Decimal
    errors: int
    unpriced_requests: int
    usage_missing: int = 0


@dataclass(frozen=True, slots=True)
class DailySeries:
    days: list[DailyUsage]
    items_read: int
    queries: int


# -- ranges ------------------------------------------------------------------------------------


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRangeError(f"unknown timezone {tz[:64]!r}; use an IANA name such as Asia/Kolkata") from exc


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def resolve_range(start: date | datetime, end: date | datetime, tz: str = "UTC") -> tuple[datetime, datetime]:
    """[start, end) in UTC. A date is its local midnight; an end *date* is inclusive (its whole day).

    A naive datetime is local time in `tz`. Both ends must fall on 15-minute boundaries.
    """
    where = zone(tz)

    def point(value: date | datetime, *, is_end: bool) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=where)
        return local_midnight(value + timedelta(days=1) if is_end else value, where)

    low = check_aligned(point(start, is_end=False), "start")
    high = check_aligned(point(end, is_end=True), "end")
    if high < low:
        raise InvalidRangeError(f"end {high.isoformat()} is before start {low.isoformat()}")
    return low, high


def last_days(days: int, tz: str = "UTC", *, today: date | None = None) -> list[date]:
    """The `days` local days ending today (oldest first)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_SERIES_DAYS:
        raise InvalidRangeError(f"days must be between 1 and {MAX_SERIES_DAYS}")
    today = today or datetime.now(zone(tz)).date()
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


# -- the summary -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RangeTotals:
    """Counters per dimension value over a range, and what reading them cost."""

    by_dimension: dict[Dimension, dict[str, Counters]]
    items_read: int
    queries: int

    def total(self) -> Counters:
        return sum_counters(self.by_dimension.get(Dimension.TOTAL, {}).values())


def range_totals(
    user_id: str,
    low: datetime,
    high: datetime,
    dimensions: Sequence[Dimension] = DIMENSIONS,
    *,
    repository: RollupRepository | None = None,
    consistent: bool = False,
) -> RangeTotals:
    """Each dimension value's counters over [low, high) (15-minute aligned): the coarsest buckets that
    fit, one Query per run of consecutive buckets and dimension."""
    runs = plan_runs(decompose(low, high))
    requests = [(dimension, run) for dimension in dimensions for run in runs]
    items = (repository or RollupRepository()).read_runs(user_id, requests, consistent=consistent) if requests else []
    by_dimension: dict[Dimension, dict[str, Counters]] = {d: {} for d in dimensions}
    for item in items:
        by_dimension[item.key.dimension].setdefault(item.key.value, Counters()).add(item.counters)
    return RangeTotals(by_dimension, items_read=len(items), queries=len(requests))


def summarize(
    user_id: str,
    start: date | datetime,
    end: date | datetime,
    tz: str = "UTC",
    *,
    repository: RollupRepository | None = None,
) -> UsageSummary:
    """Totals and breakdowns by provider, operation and model for [start, end) (see `resolve_range`)."""
    low, high = resolve_range(start, end, tz)
    totals = range_totals(user_id, low, high, repository=repository)
    by_dimension = totals.by_dimension
    total = totals.total()
    where = zone(tz)
    return UsageSummary(
        user_id=user_id,
        timezone=tz,
        start=low.astimezone(where),
        end=high.astimezone(where),
        total_requests=total.requests,
        total_tokens=total.total_tokens,
        total_cost_usd=nanos_to_usd(total.cost_nanos),
        billed_cost_usd=nanos_to_usd(total.billed_cost_nanos),
        avg_cost_per_request_usd=nanos_to_usd(_divide(total.cost_nanos, total.requests)),
        input_tokens=total.input_tokens,
        cache_read_tokens=total.cache_read_tokens,
        cache_write_tokens=total.cache_write_tokens,
        output_tokens=total.output_tokens,
        reasoning_tokens=total.reasoning_tokens,
        errors=total.errors,
        unpriced_requests=total.unpriced_requests,
        usage_missing=total.usage_missing,
        avg_latency_ms=average_latency(total),
        cache_hits=total.cache_hits,
        saved_cost_usd=nanos_to_usd(total.saved_nanos),
        by_provider=_breakdowns(by_dimension[Dimension.PROVIDER]),
        by_operation=_breakdowns(by_dimension[Dimension.OPERATION]),
        by_model=_model_breakdowns(by_dimension[Dimension.MODEL]),
        items_read=totals.items_read,
        queries=totals.queries,
    )


def average_latency(counters: Counters) -> Decimal:
    if not counters.requests:
        return Decimal(0).quantize(_LATENCY_QUANTUM)
    return (Decimal(counters.latency_ms_sum) / counters.requests).quantize(_LATENCY_QUANTUM, ROUND_HALF_EVEN)


def _divide(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half to even (0 for an empty denominator)."""
    if not denominator:
        return 0
    return int((Decimal(numerator) / denominator).quantize(Decimal(1), ROUND_HALF_EVEN))


def _breakdown(counters: Counters, provider: str | None = None) -> Breakdown:
    return Breakdown(
        requests=counters.requests,
        tokens=counters.total_tokens,
        cost_usd=nanos_to_usd(counters.cost_nanos),
        billed_cost_usd=nanos_to_usd(counters.billed_cost_nanos),
        errors=counters.errors,
        unpriced_requests=counters.unpriced_requests,
        usage_missing=counters.usage_missing,
        provider=provider,
    )


def _breakdowns(values: Mapping[str, Counters]) -> dict[str, Breakdown]:
    return {value: _breakdown(counters) for value, counters in sorted(values.items()) if counters.requests}


def _model_breakdowns(values: Mapping[str, Counters]) -> dict[str, Breakdown]:
    """Keyed by the model's name, as the seed; `provider/model` where two providers share a name."""
    named = [(split_model_value(value), counters) for value, counters in sorted(values.items()) if counters.requests]
    seen: dict[str, int] = {}
    for (_, model), _counters in named:
        seen[model] = seen.get(model, 0) + 1
    return {
        (model if seen[model] == 1 else f"{provider}/{model}"): _breakdown(counters, provider)
        for (provider, model), counters in named
    }


# -- the daily series --------------------------------------------------------------------------


def daily_usage(
    user_id: str,
    days: int = 30,
    tz: str = "UTC",
    *,
    today: date | None = None,
    repository: RollupRepository | None = None,
) -> DailySeries:
    """One row per local day for the `days` days ending today in `tz`, zero-filled.

    Every day is decomposed into aligned UTC buckets; the union is read from the total dimension
    with one Query per run of consecutive buckets of a granularity.
    """
    where = zone(tz)
    dates = last_days(days, tz, today=today)
    owner: dict[tuple[Granularity, datetime], int] = {}
    for index, day in enumerate(dates):
        low = local_midnight(day, where)
        high = local_midnight(day + timedelta(days=1), where)
        for piece in decompose(low, high):
            owner[piece] = index
    runs = plan_runs(owner, max_gap=SERIES_MAX_GAP)
    items = (repository or RollupRepository()).read_runs(user_id, [(Dimension.TOTAL, run) for run in runs])
    sums = [Counters() for _ in dates]
    for item in items:
        day_index = owner.get((item.key.granularity, item.key.bucket))
        if day_index is not None:  # else a bridged gap bucket: read, not needed
            sums[day_index].add(item.counters)
    rows = [
        DailyUsage(
            date=day,
            requests=c.requests,
            tokens=c.total_tokens,
            cost_usd=nanos_to_usd(c.cost_nanos),
            billed_cost_usd=nanos_to_usd(c.billed_cost_nanos),
            errors=c.errors,
            unpriced_requests=c.unpriced_requests,
            usage_missing=c.usage_missing,
        )
        for day, c in zip(dates, sums, strict=True)
    ]
    return DailySeries(rows, items_read=len(items), queries=len(runs))


# -- dict forms (the seed's API, the CLI) -------------------------------------------------------


def usage_summary(
    user_id: str,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    *,
    days: int | None = None,
    tz: str = "UTC",
    today: date | None = None,
    repository: RollupRepository | None = None,
) -> dict[str, Any]:
    """The summary as a dict (Decimal money): for [start, end), or the last `days` local days."""
    if start is None or end is None:
        if start is not None or end is not None:
            raise InvalidRangeError("give both start and end, or days")
        dates = last_days(days or 30, tz, today=today)
        start, end = dates[0], dates[-1]
    elif days is not None:
        raise InvalidRangeError("give either start and end, or days, not both")
    return summarize(user_id, start, end, tz, repository=repository).model_dump()


def daily_series(
    user_id: str,
    days: int = 30,
    tz: str = "UTC",
    *,
    today: date | None = None,
    repository: RollupRepository | None = None,
) -> list[dict[str, Any]]:
    """The daily series as dicts (`date`, `requests`, `tokens`, `cost_usd`, …)."""
    return [row.model_dump() for row in daily_usage(user_id, days, tz, today=today, repository=repository).days]


def get_usage_summary(
    user_id: str, start_date: date | datetime, end_date: date | datetime, tz: str = "UTC"
) -> dict[str, Any]:
    """The seed's `UsageTracker.get_usage_summary(user_id, start_date, end_date)`, from rollups.

    Dates are whole local days, both inclusive; datetimes are a half-open [start, end).
    """
    return summarize(user_id, start_date, end_date, tz).model_dump()


__all__ = [
    "MAX_SERIES_DAYS",
    "Breakdown",
    "DailySeries",
    "DailyUsage",
    "UsageSummary",
    "daily_series",
    "daily_usage",
    "get_usage_summary",
    "resolve_range",
    "summarize",
    "usage_summary",
]

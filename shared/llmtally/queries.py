"""Usage queries on the rollups only: a summary for a range in a timezone, and a day-by-day series.

Both are exact and read a number of items bounded by the days and dimension values in range,
never by the number of events: the range is decomposed into UTC days and quarters, a day read
whole with the quarters outside the range subtracted when that reads fewer
(`llmtally.rollups.signed_decompose`), and each granularity's run of consecutive buckets is one
Query per stored partition (`RollupRepository.read_runs`).

Ranges must fall on 15-minute boundaries (every IANA zone's local midnight does, Asia/Kolkata,
Asia/Kathmandu, Australia/Eucla and America/St_Johns included); anything else is refused with
`InvalidRangeError` rather than silently rounded, so a figure never covers a period other than
the one asked for. Dates stand for whole local days (an end date is inclusive).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from llmtally.events import TAG_KEY_PATTERN
from llmtally.money import nanos_to_usd
from llmtally.packing import partition_of
from llmtally.repositories.rollups import RollupItem, RollupRepository, RunItems
from llmtally.rollups import (
    DIMENSIONS,
    NO_TAG_VALUE,
    TAG_CELL_PREFIX,
    TAG_PREFIX,
    Counters,
    Dimension,
    Granularity,
    InvalidRangeError,
    check_aligned,
    plan_runs,
    signed_decompose,
    split_cell_value,
    split_model_value,
    split_tag_cell_value,
    sum_counters,
    tag_cell_dimension,
    tag_dimension,
    tag_key_of,
)

MAX_SERIES_DAYS: Final = 366
#: What an unfiltered summary reads: the total and one dimension per breakdown.
BASE_SUMMARY_DIMENSIONS: Final = tuple(d for d in DIMENSIONS if d is not Dimension.CELL)
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
    where: dict[str, str] | None = None
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
    where: Filter | None = None


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


# -- dimensions and the `where` filter ---------------------------------------------------------

#: The dimensions a breakdown (`by`) or a filter (`where`) names, besides `tag:<key>`.
BASE_BY: Final = ("provider", "model", "operation")
MAX_BREAKDOWN_LIMIT: Final = 1000
DEFAULT_BREAKDOWN_LIMIT: Final = 25
#: The breakdown's rows past `limit`, summed, and its total row.
REST_VALUE: Final = "(rest)"
TOTAL_ROW_VALUE: Final = "(total)"
_SHARE_QUANTUM: Final = Decimal("0.01")


class InvalidQueryError(InvalidRangeError):
    """A `by` or `where` the rollups cannot answer; `reason` is safe to show (a 400)."""


def parse_dimension(text: str) -> str:
    """`provider`, `model`, `operation` or `tag:<key>` (the key checked like the event contract's)."""
    if text in BASE_BY:
        return text
    key = tag_key_of(text)
    if key is not None and re.match(TAG_KEY_PATTERN, key):
        return text
    raise InvalidQueryError(
        f"dimension {text[:80]!r} is not one of provider, model, operation or tag:<key> "
        f"(a key matches {TAG_KEY_PATTERN})"
    )


@dataclass(frozen=True, slots=True)
class Filter:
    """One `where`: a dimension (`provider`, `model`, `operation`, `tag:<key>`) and its value.

    A model filter names the model (every provider's model of that name matches)."""

    dimension: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Filter:
        """`<dimension>:<value>`, e.g. `model:gpt-5`, `tag:customer:acme` (the value may hold `:`)."""
        if text.startswith(TAG_PREFIX):
            key, sep, value = text[len(TAG_PREFIX) :].partition(":")
            dimension = TAG_PREFIX + key
        else:
            dimension, sep, value = text.partition(":")
        if not sep or not value:
            raise InvalidQueryError(
                f"where {text[:80]!r} is not <dimension>:<value> (e.g. model:gpt-5, tag:customer:acme)"
            )
        if len(value) > 256:
            raise InvalidQueryError("a where value has at most 256 characters")
        if value == NO_TAG_VALUE and dimension.startswith(TAG_PREFIX):
            # Not a value anything is rolled up under (a sent value has no parentheses): answering it
            # from the tag's rollups would be a silent zero.
            raise InvalidQueryError(
                f"where {text[:80]!r}: {NO_TAG_VALUE} (the calls without the key) is the breakdown's remainder, "
                "not a filter; filter on a value, (other), provider, model or operation"
            )
        return cls(parse_dimension(dimension), value)

    def as_dict(self) -> dict[str, str]:
        return {"dimension": self.dimension, "value": self.value}


def _attributes(dimension: str, value: str) -> dict[str, str]:
    """What one rollup item's value says, by dimension name (a model's as its name and provider)."""
    if dimension == Dimension.TOTAL:
        return {}
    if dimension == Dimension.PROVIDER:
        return {"provider": value}
    if dimension == Dimension.MODEL:
        provider, model = split_model_value(value)
        return {"provider": provider, "model": model}
    if dimension == Dimension.OPERATION:
        return {"operation": value}
    if dimension == Dimension.CELL:
        provider, model, operation = split_cell_value(value)
        return {"provider": provider, "model": model, "operation": operation}
    if dimension.startswith(TAG_CELL_PREFIX):
        provider, model, operation, tag_value = split_tag_cell_value(value)
        key = dimension[len(TAG_CELL_PREFIX) :]
        return {"provider": provider, "model": model, "operation": operation, TAG_PREFIX + key: tag_value}
    return {dimension: value}  # tag:<key>


def _partition_for(names: Iterable[str]) -> str:
    """The one partition whose items carry every named attribute (fewest items first)."""
    wanted = set(names)
    tags = {name for name in wanted if name.startswith(TAG_PREFIX)}
    base = wanted - tags
    if len(tags) > 1:
        raise InvalidQueryError(
            "tags are rolled up one key at a time: a breakdown by one tag key under a filter on another "
            "is not answered (filter or break down by provider, model or operation instead)"
        )
    if tags:
        (tag,) = tags
        key = tag[len(TAG_PREFIX) :]
        return tag_cell_dimension(key) if base else tag_dimension(key)
    if not base:
        return Dimension.TOTAL.value
    if base == {"provider"}:
        return Dimension.PROVIDER.value
    if base <= {"provider", "model"}:
        return Dimension.MODEL.value
    if base == {"operation"}:
        return Dimension.OPERATION.value
    return Dimension.CELL.value


def _selects(where: Filter | None, attributes: Mapping[str, str]) -> bool:
    return where is None or attributes.get(where.dimension) == where.value


def _read(
    user_id: str,
    low: datetime,
    high: datetime,
    dimensions: Sequence[str],
    repository: RollupRepository | None,
    *,
    consistent: bool = False,
) -> tuple[list[RollupItem], int]:
    """The logical items of `dimensions` over [low, high), each with its piece's sign applied
    (`signed_decompose`: a day read whole has the quarters outside the range subtracted)."""
    signs = {(granularity, bucket): sign for granularity, bucket, sign in signed_decompose(low, high)}
    runs = plan_runs(signs)
    requests = [(dimension, run) for dimension in dimensions for run in runs]
    repo = repository or RollupRepository()
    queries = len({(partition_of(dimension), run) for dimension, run in requests})
    if not requests:
        return [], queries
    read = repo.read_runs(user_id, requests, consistent=consistent)
    out = RunItems(_signed(item, signs.get((item.key.granularity, item.key.bucket), 0)) for item in read)
    out.items_read = stored_items(read)
    return out, queries


def _signed(item: RollupItem, sign: int) -> RollupItem:
    return item if sign == 1 else RollupItem(item.key, Counters().minus(item.counters) if sign else Counters())


def stored_items(items: Sequence[RollupItem]) -> int:
    """The stored items behind the logical ones read (packed items hold many: `llmtally.packing`)."""
    return int(getattr(items, "items_read", len(items)))


def filtered_total(
    user_id: str,
    low: datetime,
    high: datetime,
    where: Filter | None = None,
    *,
    repository: RollupRepository | None = None,
    consistent: bool = False,
) -> Counters:
    """Everything `where` selects in [low, high) (15-minute aligned): one dimension's items."""
    dimension = _partition_for([where.dimension] if where else [])
    items, _ = _read(user_id, low, high, [dimension], repository, consistent=consistent)
    return sum_counters(i.counters for i in items if _selects(where, _attributes(dimension, i.key.value)))


def totals_by(
    user_id: str,
    by: str,
    low: datetime,
    high: datetime,
    where: Filter | None = None,
    *,
    repository: RollupRepository | None = None,
) -> dict[str, Counters]:
    """Each `by` value's counters over [low, high) (15-minute aligned) of the calls `where` selects:
    one partition (the fewest items carrying both), items bounded by buckets × values."""
    dimension = _partition_for([by] + ([where.dimension] if where else []))
    items, _ = _read(user_id, low, high, [dimension], repository)
    groups: dict[str, Counters] = {}
    for item in items:
        attributes = _attributes(dimension, item.key.value)
        if _selects(where, attributes):
            groups.setdefault(attributes[by], Counters()).add(item.counters)
    return groups


def tag_value_total_nanos(
    user_id: str,
    key: str,
    value: str,
    start: datetime,
    end: datetime,
    *,
    repository: RollupRepository | None = None,
    consistent: bool = False,
) -> int:
    """The exact cost (nano-USD) of the calls rolled up under tag `key` = `value` in [start, end)
    (a tag budget's ledger): the `tag:{key}` items of the range."""
    where = Filter(tag_dimension(key), value)
    return filtered_total(user_id, start, end, where, repository=repository, consistent=consistent).cost_nanos


# -- the summary -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RangeTotals:
    """Counters per dimension value over a range, and what reading them cost."""

    by_dimension: dict[str, dict[str, Counters]]
    items_read: int
    queries: int

    def total(self) -> Counters:
        return sum_counters(self.by_dimension.get(Dimension.TOTAL, {}).values())


def range_totals(
    user_id: str,
    low: datetime,
    high: datetime,
    dimensions: Sequence[str] = BASE_SUMMARY_DIMENSIONS,
    *,
    repository: RollupRepository | None = None,
    consistent: bool = False,
) -> RangeTotals:
    """Each dimension value's counters over [low, high) (15-minute aligned): the coarsest buckets that
    fit, one Query per run of consecutive buckets and dimension."""
    items, queries = _read(user_id, low, high, [str(d) for d in dimensions], repository, consistent=consistent)
    by_dimension: dict[str, dict[str, Counters]] = {str(d): {} for d in dimensions}
    for item in items:
        by_dimension[item.key.dimension].setdefault(item.key.value, Counters()).add(item.counters)
    return RangeTotals(by_dimension, items_read=stored_items(items), queries=queries)


def summarize(
    user_id: str,
    start: date | datetime,
    end: date | datetime,
    tz: str = "UTC",
    *,
    repository: RollupRepository | None = None,
    where: Filter | None = None,
) -> UsageSummary:
    """Totals and breakdowns by provider, operation and model for [start, end) (see `resolve_range`).

    With `where`, everything is of the calls it selects: one partition is read (the (model,
    operation) cells, or the filter's tag key's cells) and the breakdowns are composed from it."""
    low, high = resolve_range(start, end, tz)
    by_dimension: dict[str, dict[str, Counters]]
    if where is None:
        totals = range_totals(user_id, low, high, repository=repository)
        by_dimension = totals.by_dimension
        total = totals.total()
        items_read, queries = totals.items_read, totals.queries
    else:
        dimension = _partition_for([where.dimension, *BASE_BY])
        items, queries = _read(user_id, low, high, [dimension], repository)
        items_read = stored_items(items)
        by_dimension = {d: {} for d in BASE_BY}
        total = Counters()
        for item in items:
            attributes = _attributes(dimension, item.key.value)
            if not _selects(where, attributes):
                continue
            total.add(item.counters)
            by_dimension["provider"].setdefault(attributes["provider"], Counters()).add(item.counters)
            model = f"{attributes['provider']}#{attributes['model']}"
            by_dimension["model"].setdefault(model, Counters()).add(item.counters)
            by_dimension["operation"].setdefault(attributes["operation"], Counters()).add(item.counters)
    local = zone(tz)
    return UsageSummary(
        user_id=user_id,
        timezone=tz,
        start=low.astimezone(local),
        end=high.astimezone(local),
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
        where=where.as_dict() if where else None,
        items_read=items_read,
        queries=queries,
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
    where: Filter | None = None,
) -> DailySeries:
    """One row per local day for the `days` days ending today in `tz`, zero-filled.

    Every day is decomposed into aligned UTC buckets; the union is read from the total dimension
    (with `where`: the filter's own dimension, its value selected) with one Query per run of
    consecutive buckets of a granularity.
    """
    local = zone(tz)
    dates = last_days(days, tz, today=today)
    # A bucket can count in two days with opposite signs (a UTC day's quarters past one local
    # midnight are subtracted from one day and added to the next: `signed_decompose`).
    owner: dict[tuple[Granularity, datetime], list[tuple[int, int]]] = {}
    for index, day in enumerate(dates):
        low = local_midnight(day, local)
        high = local_midnight(day + timedelta(days=1), local)
        for granularity, bucket, sign in signed_decompose(low, high):
            owner.setdefault((granularity, bucket), []).append((index, sign))
    runs = plan_runs(owner, max_gap=SERIES_MAX_GAP)
    dimension = _partition_for([where.dimension] if where else [])
    items = (repository or RollupRepository()).read_runs(user_id, [(dimension, run) for run in runs])
    sums = [Counters() for _ in dates]
    for item in items:
        if not _selects(where, _attributes(dimension, item.key.value)):
            continue
        # (a bridged gap bucket has no owner: read, not needed)
        for day_index, sign in owner.get((item.key.granularity, item.key.bucket), ()):
            if sign == 1:
                sums[day_index].add(item.counters)
            else:
                sums[day_index] = sums[day_index].minus(item.counters)
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
    return DailySeries(rows, items_read=stored_items(items), queries=len(runs), where=where)


# -- breakdowns --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    value: str
    counters: Counters
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class BreakdownResult:
    """A range's spend by one dimension under an optional filter (`llmtally.api.models.BreakdownResponse`)."""

    user_id: str
    timezone: str
    start: datetime
    end: datetime
    by: str
    where: Filter | None
    rows: list[BreakdownRow]
    other: BreakdownRow | None
    folded_values: int
    total: BreakdownRow
    items_read: int
    queries: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The response's shape (Decimal money, share of the total in percent, two places)."""
        total_cost = self.total.counters.cost_nanos
        return {
            "user_id": self.user_id,
            "timezone": self.timezone,
            "start": self.start,
            "end": self.end,
            "by": self.by,
            "where": self.where.as_dict() if self.where else None,
            "rows": [_row_dict(row, total_cost) for row in self.rows],
            "other": _row_dict(self.other, total_cost) if self.other else None,
            "folded_values": self.folded_values,
            "total": _row_dict(self.total, total_cost),
            "items_read": self.items_read,
            "queries": self.queries,
        }


def _row_dict(row: BreakdownRow, total_cost: int) -> dict[str, Any]:
    c = row.counters
    share = Decimal(0) if not total_cost else Decimal(c.cost_nanos * 100) / Decimal(total_cost)
    return {
        "value": row.value,
        "provider": row.provider,
        "requests": c.requests,
        "input_tokens": c.input_tokens,
        "cache_read_tokens": c.cache_read_tokens,
        "cache_write_tokens": c.cache_write_tokens,
        "output_tokens": c.output_tokens,
        "reasoning_tokens": c.reasoning_tokens,
        "total_tokens": c.total_tokens,
        "cost_usd": nanos_to_usd(c.cost_nanos),
        "billed_cost_usd": nanos_to_usd(c.billed_cost_nanos),
        "share_percent": share.quantize(_SHARE_QUANTUM, ROUND_HALF_EVEN),
        "errors": c.errors,
        "unpriced_requests": c.unpriced_requests,
        "usage_missing": c.usage_missing,
    }


#: `folded(user_id, tag key, UTC months)` → distinct values folded into `(other)` in those months.
FoldedCounter = Callable[[str, str, list[str]], int]


def utc_months(low: datetime, high: datetime) -> list[str]:
    """The UTC months `YYYY-MM` that [low, high) touches (tag values are bounded per UTC month)."""
    months: list[str] = []
    cursor = Granularity.MONTH.floor(low)
    while cursor < high or not months:
        months.append(cursor.astimezone(UTC).strftime("%Y-%m"))
        cursor = Granularity.MONTH.next(cursor)
    return months


def breakdown(
    user_id: str,
    by: str,
    start: date | datetime,
    end: date | datetime,
    tz: str = "UTC",
    *,
    where: Filter | None = None,
    limit: int = DEFAULT_BREAKDOWN_LIMIT,
    repository: RollupRepository | None = None,
    folded: FoldedCounter | None = None,
) -> BreakdownResult:
    """[start, end)'s spend by `by` (provider, model, operation, tag:<key>) of the calls `where`
    selects, costliest first, from the rollups only.

    One partition holds the rows (the fewest items carrying both `by` and the filter's dimension:
    `_partition_for`); a tag breakdown also reads the filter's total, so the calls without the key
    show as a `(none)` row and the shares add up to 100. Items read are bounded by days × values in
    range. Tag × tag (a breakdown by one key filtered on another) is refused: tags are rolled up one
    key at a time (docs/pipeline.md)."""
    by = parse_dimension(by)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BREAKDOWN_LIMIT:
        raise InvalidQueryError(f"limit must be between 1 and {MAX_BREAKDOWN_LIMIT}")
    low, high = resolve_range(start, end, tz)
    rows_dimension = _partition_for([by] + ([where.dimension] if where else []))
    by_tag = tag_key_of(by) is not None and not (where is not None and where.dimension == by)
    total_dimension = _partition_for([where.dimension] if where else []) if by_tag else None
    dimensions = [rows_dimension] + ([total_dimension] if total_dimension and total_dimension != rows_dimension else [])
    items, queries = _read(user_id, low, high, dimensions, repository)
    groups: dict[tuple[str, str | None], Counters] = {}
    total = Counters()
    for item in items:
        attributes = _attributes(item.key.dimension, item.key.value)
        if not _selects(where, attributes):
            continue
        if item.key.dimension == rows_dimension:
            provider = attributes.get("provider") if by == "model" else None
            groups.setdefault((attributes[by], provider), Counters()).add(item.counters)
            if total_dimension is None:
                total.add(item.counters)
        else:
            total.add(item.counters)
    if total_dimension is not None:
        untagged = total.minus(sum_counters(groups.values()))
        if not untagged.is_zero():
            groups[(NO_TAG_VALUE, None)] = untagged
    ordered = sorted(
        (BreakdownRow(value, c, provider) for (value, provider), c in groups.items() if c.requests),
        key=lambda row: (-row.counters.cost_nanos, -row.counters.requests, row.value, row.provider or ""),
    )
    rest = ordered[limit:]
    other = BreakdownRow(REST_VALUE, sum_counters(row.counters for row in rest)) if rest else None
    key = tag_key_of(by)
    folded_count = folded(user_id, key, utc_months(low, high)) if key is not None and folded is not None else 0
    local = zone(tz)
    return BreakdownResult(
        user_id=user_id,
        timezone=tz,
        start=low.astimezone(local),
        end=high.astimezone(local),
        by=by,
        where=where,
        rows=ordered[:limit],
        other=other,
        folded_values=folded_count,
        total=BreakdownRow(TOTAL_ROW_VALUE, total),
        items_read=stored_items(items),
        queries=queries,
    )


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
    "BreakdownResult",
    "BreakdownRow",
    "DailySeries",
    "DailyUsage",
    "Filter",
    "InvalidQueryError",
    "UsageSummary",
    "breakdown",
    "daily_series",
    "daily_usage",
    "filtered_total",
    "get_usage_summary",
    "parse_dimension",
    "range_totals",
    "resolve_range",
    "summarize",
    "tag_value_total_nanos",
    "totals_by",
    "usage_summary",
]

"""Rollups: the key design, per-batch delta coalescing and the segment-tree decomposition of ranges.

Pure logic, no I/O (the table is `llmtally.repositories.rollups.RollupRepository`).

Logical key design: how queries address rollups (`llmtally.packing` says how they are stored; these
were also the stored keys of the layout before packing, which `llmtally.migrate` reads):

    pk = "R#{user_id}#{granularity}#{dimension}"      e.g. R#acme#1d#model
    sk = "{bucket start, UTC, YYYY-MM-DDTHH:MM}#{value}" e.g. 2026-11-28T00:00#anthropic#claude-sonnet-4-5

The bucket start is fixed-width, so within one (tenant, granularity, dimension) partition the sort
key orders by time first: a run of consecutive buckets, with every value of the dimension, is one
contiguous sort-key range and is read by ONE Query (`sk BETWEEN first AND end`, where `end` is the
bare bucket string of the exclusive end: every item of that bucket sorts after it, `…#value`).
The total dimension has the single value `*`. A model's value is `{provider}#{model}` (a model name
can never contain `#`), so the same model name under two providers is never merged.

Granularities are UTC-aligned 15 minutes and day (`GRANULARITIES`; hours and months are composed
when read). Any 15-minute-aligned range [start, end) is the disjoint union of at most 95 leading
and 95 trailing quarters around a run of whole days (`decompose`), so
a summary reads a number of items bounded by the days and dimension values in range, never by
events; and any IANA local day (offsets of 30 and 45 minutes included: their midnights are
15-minute aligned in UTC) is such a range.

Dimensions (docs/pipeline.md, "Dimensions"): total, provider, model, operation, cell (model ×
operation), and per tag key `tag:{key}` and `tagcell:{key}` (tag value × model × operation).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol, cast

from llmtally.errors import LLMTallyError

#: The total dimension's only value.
TOTAL_VALUE: Final = "*"
#: Bucket strings are fixed width (16 characters), which is what makes sort-key ranges contiguous.
BUCKET_FORMAT: Final = "%Y-%m-%dT%H:%M"
ROLLUP_PK_PREFIX: Final = "R#"
QUARTER: Final = timedelta(minutes=15)


class InvalidRangeError(LLMTallyError, ValueError):
    """A time range, timezone or day count a rollup query cannot answer exactly; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Granularity(StrEnum):
    """UTC bucket sizes, finest first."""

    QUARTER = "15m"
    HOUR = "1h"
    DAY = "1d"
    MONTH = "1mo"

    def floor(self, at: datetime) -> datetime:
        """The start of the bucket holding `at` (UTC)."""
        at = _utc(at).replace(second=0, microsecond=0)
        if self is Granularity.QUARTER:
            return at.replace(minute=at.minute - at.minute % 15)
        if self is Granularity.HOUR:
            return at.replace(minute=0)
        if self is Granularity.DAY:
            return at.replace(hour=0, minute=0)
        return at.replace(day=1, hour=0, minute=0)

    def next(self, start: datetime) -> datetime:
        """The start of the bucket after the one starting at `start`."""
        if self is Granularity.QUARTER:
            return start + QUARTER
        if self is Granularity.HOUR:
            return start + timedelta(hours=1)
        if self is Granularity.DAY:
            return start + timedelta(days=1)
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)

    def aligned(self, at: datetime) -> bool:
        return self.floor(at) == at


#: What the aggregator writes and queries read: quarter and day. An hour is composed from its four
#: quarters and a month from its days at read time; a day's edges in a local timezone from ≤ 95
#: quarters each. Writing two granularities instead of three is a third fewer writes on the hot
#: path (docs/pipeline.md, "Write cost").
GRANULARITIES: Final = (Granularity.QUARTER, Granularity.DAY)


class Dimension(StrEnum):
    TOTAL = "total"
    PROVIDER = "provider"
    MODEL = "model"
    OPERATION = "operation"
    #: (model, operation) pairs, value `{provider}#{model}#{operation}`: what a `where` on one of
    #: provider/model/operation broken down by another reads.
    CELL = "cell"


#: The dimensions every event counts in, whatever its tags.
DIMENSIONS: Final = tuple(Dimension)
#: A tag key's dimension (`tag:{key}`, value = the tag's value, folded) and its cells
#: (`tagcell:{key}`, value `{provider}#{model}#{operation}#{tag value}`: a tag value's spend by
#: provider/model/operation, and a provider/model/operation's spend by the tag's values).
TAG_PREFIX: Final = "tag:"
TAG_CELL_PREFIX: Final = "tagcell:"
#: A breakdown row for the requests that carry no value for the tag key broken down by.
NO_TAG_VALUE: Final = "(none)"


def tag_dimension(key: str) -> str:
    return f"{TAG_PREFIX}{key}"


def tag_cell_dimension(key: str) -> str:
    return f"{TAG_CELL_PREFIX}{key}"


def tag_key_of(dimension: str) -> str | None:
    """The tag key of a `tag:{key}` dimension (None for any other)."""
    return dimension.removeprefix(TAG_PREFIX) if dimension.startswith(TAG_PREFIX) else None


def cell_value(provider: str, model: str, operation: str) -> str:
    return f"{provider}#{model}#{operation}"


def split_cell_value(value: str) -> tuple[str, str, str]:
    """`(provider, model, operation)` of a cell (none of them can contain `#`)."""
    provider, model, operation = value.split("#", 2)
    return provider, model, operation


def tag_cell_value(provider: str, model: str, operation: str, tag_value: str) -> str:
    return f"{provider}#{model}#{operation}#{tag_value}"


def split_tag_cell_value(value: str) -> tuple[str, str, str, str]:
    """`(provider, model, operation, tag value)`; the tag value is last (it may contain `#`)."""
    provider, model, operation, tag_value = value.split("#", 3)
    return provider, model, operation, tag_value


def entry_tags(entry: object) -> Mapping[str, str]:
    """The tags an entry is rolled up under: the folded ones the ingest decided (`rollup_tags` on a
    raw entry), else the tags as sent; `{}` for a source without tags."""
    folded = getattr(entry, "rollup_tags", None)
    if folded is not None:
        return cast("Mapping[str, str]", folded)
    return cast("Mapping[str, str]", getattr(entry, "tags", None) or {})


class RollupSource(Protocol):
    """What a rollup needs from a raw entry (`llmtally.entries.RawEntry` has it)."""

    @property
    def user_id(self) -> str: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def operation_type(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def latency_ms(self) -> int: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def cache_write_5m_tokens(self) -> int | None: ...
    @property
    def cache_write_1h_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...
    @property
    def total_tokens(self) -> int: ...
    @property
    def cost_nanos(self) -> int: ...
    @property
    def cost_source(self) -> str: ...
    @property
    def cache_hit(self) -> bool: ...
    @property
    def saved_nanos(self) -> int: ...
    @property
    def usage_missing(self) -> bool: ...


@dataclass(slots=True)
class Counters:
    """The additive figures of one rollup item. All integers: DynamoDB ADD of integers is exact.

    `cost_nanos` is the current rating; `billed_cost_nanos` is what the raw entries were billed at
    ingest. They are equal until a rebuild re-rates with new prices (see `llmtally.rebuild`).
    `cache_hits` counts requests answered from the response cache (also counted in `requests`, at
    zero cost) and `saved_nanos` what those answers cost when first produced (never re-rated).
    `usage_missing` counts requests whose provider never reported usage (a stream closed early or
    ended without it, an error after partial output): their tokens and cost are lower bounds.
    """

    requests: int = 0
    errors: int = 0
    unpriced_requests: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost_nanos: int = 0
    billed_cost_nanos: int = 0
    latency_ms_sum: int = 0
    cache_hits: int = 0
    saved_nanos: int = 0
    usage_missing: int = 0

    @classmethod
    def of(cls, entry: RollupSource, *, cost_nanos: int | None = None, cost_source: str | None = None) -> Counters:
        """One raw entry's contribution; `cost_nanos`/`cost_source` replace the billed ones (a re-rate)."""
        source = str(entry.cost_source if cost_source is None else cost_source)
        return cls(
            requests=1,
            errors=1 if str(entry.status) == "error" else 0,
            unpriced_requests=1 if source == "unpriced" else 0,
            input_tokens=entry.input_tokens,
            cache_read_tokens=entry.cache_read_tokens,
            cache_write_tokens=entry.cache_write_tokens,
            cache_write_5m_tokens=entry.cache_write_5m_tokens or 0,
            cache_write_1h_tokens=entry.cache_write_1h_tokens or 0,
            output_tokens=entry.output_tokens,
            reasoning_tokens=entry.reasoning_tokens,
            total_tokens=entry.total_tokens,
            cost_nanos=entry.cost_nanos if cost_nanos is None else cost_nanos,
            billed_cost_nanos=entry.cost_nanos,
            latency_ms_sum=entry.latency_ms,
            cache_hits=1 if entry.cache_hit else 0,
            saved_nanos=entry.saved_nanos if entry.cache_hit else 0,
            usage_missing=1 if entry.usage_missing else 0,
        )

    def add(self, other: Counters) -> None:
        for name in COUNTER_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def minus(self, other: Counters) -> Counters:
        return Counters(**{name: getattr(self, name) - getattr(other, name) for name in COUNTER_FIELDS})

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTER_FIELDS}

    def is_zero(self) -> bool:
        return not any(getattr(self, name) for name in COUNTER_FIELDS)


COUNTER_FIELDS: Final = tuple(f.name for f in fields(Counters))


def sum_counters(items: Iterable[Counters]) -> Counters:
    total = Counters()
    for item in items:
        total.add(item)
    return total


@dataclass(frozen=True, slots=True, order=True)
class RollupKey:
    """One rollup item: a tenant's figures for one bucket of one granularity and one dimension value."""

    user_id: str
    granularity: Granularity
    #: A `Dimension` or a tag's (`tag:{key}`, `tagcell:{key}`); always held as a plain str, so a
    #: key built from the enum and one parsed from the table are equal and hash alike.
    dimension: str
    bucket: datetime
    value: str

    def __post_init__(self) -> None:
        if type(self.dimension) is not str:
            object.__setattr__(self, "dimension", str(self.dimension))

    @property
    def pk(self) -> str:
        return partition_key(self.user_id, self.granularity, self.dimension)

    @property
    def sk(self) -> str:
        return f"{format_bucket(self.bucket)}#{self.value}"

    @property
    def bucket_end(self) -> datetime:
        return self.granularity.next(self.bucket)

    def expires_at(self, ttl_days: int) -> int:
        return bucket_expiry(self.granularity, self.bucket, ttl_days)

    @classmethod
    def parse(cls, pk: str, sk: str) -> RollupKey:
        _, user_id, granularity, dimension = pk.split("#", 3)
        bucket, value = sk.split("#", 1)
        return cls(user_id, Granularity(granularity), dimension, parse_bucket(bucket), value)


def bucket_expiry(granularity: Granularity, bucket: datetime, ttl_days: int) -> int:
    """Epoch seconds: the bucket's end plus the rollup retention (deterministic, so SET is idempotent)."""
    return int((granularity.next(bucket) + timedelta(days=ttl_days)).timestamp())


def partition_key(user_id: str, granularity: Granularity, dimension: str) -> str:
    return f"{ROLLUP_PK_PREFIX}{user_id}#{granularity.value}#{dimension}"


def format_bucket(start: datetime) -> str:
    return _utc(start).strftime(BUCKET_FORMAT)


def parse_bucket(text: str) -> datetime:
    return datetime.strptime(text, BUCKET_FORMAT).replace(tzinfo=UTC)


def model_value(provider: str, model: str) -> str:
    return f"{provider}#{model}"


def split_model_value(value: str) -> tuple[str, str]:
    provider, model = value.split("#", 1)
    return provider, model


def dimension_values(entry: RollupSource) -> tuple[tuple[str, str], ...]:
    """Every (dimension, value) an entry counts in: the five base ones, and two per tag key."""
    provider = str(entry.provider)
    operation = entry.operation_type
    values: list[tuple[str, str]] = [
        (Dimension.TOTAL.value, TOTAL_VALUE),
        (Dimension.PROVIDER.value, provider),
        (Dimension.MODEL.value, model_value(provider, entry.model)),
        (Dimension.OPERATION.value, operation),
        (Dimension.CELL.value, cell_value(provider, entry.model, operation)),
    ]
    for key, value in sorted(entry_tags(entry).items()):
        values.append((tag_dimension(key), value))
        values.append((tag_cell_dimension(key), tag_cell_value(provider, entry.model, operation, value)))
    return tuple(values)


def rollup_keys(entry: RollupSource, granularities: Iterable[Granularity] = GRANULARITIES) -> Iterator[RollupKey]:
    """Every rollup item one raw entry counts in: granularities × its dimension values."""
    at = _utc(entry.timestamp)
    for granularity in granularities:
        bucket = granularity.floor(at)
        for dimension, value in dimension_values(entry):
            yield RollupKey(entry.user_id, granularity, dimension, bucket, value)


def coalesce(
    entries: Iterable[RollupSource], granularities: Iterable[Granularity] = GRANULARITIES
) -> dict[RollupKey, Counters]:
    """One delta per rollup key for a whole batch: the write amplification is per key, not per event."""
    sizes = tuple(granularities)
    deltas: dict[RollupKey, Counters] = {}
    for entry in entries:
        contribution = Counters.of(entry)
        for key in rollup_keys(entry, sizes):
            deltas.setdefault(key, Counters()).add(contribution)
    return deltas


# -- ranges ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketRun:
    """Consecutive buckets [first, end) of one granularity: one contiguous sort-key range."""

    granularity: Granularity
    first: datetime
    end: datetime

    @property
    def sk_low(self) -> str:
        return format_bucket(self.first)

    @property
    def sk_high(self) -> str:
        # The exclusive end's bare bucket string sorts before every "{end}#value" and after every
        # "{earlier}#value" (fixed width), so BETWEEN low AND high is exactly [first, end).
        return format_bucket(self.end)


def check_aligned(at: datetime, what: str = "time") -> datetime:
    """`at` in UTC, or InvalidRangeError unless it falls on a 15-minute boundary."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidRangeError(f"{what} {at.isoformat()} must carry a timezone")
    utc = at.astimezone(UTC)
    if not Granularity.QUARTER.aligned(utc) or utc.second or utc.microsecond:
        raise InvalidRangeError(
            f"{what} {at.isoformat()} is not on a 15-minute boundary; rollups answer ranges aligned to "
            "15 minutes (every IANA zone's local midnight is)"
        )
    return utc


def decompose(start: datetime, end: datetime) -> list[tuple[Granularity, datetime]]:
    """[start, end) as the fewest aligned buckets, coarsest in the middle (segment-tree style).

    Climb with the finest buckets until the next size is aligned, take the coarsest that fit,
    then descend. Returns (granularity, bucket start) pairs in time order.
    """
    start, end = check_aligned(start, "start"), check_aligned(end, "end")
    if end < start:
        raise InvalidRangeError(f"end {end.isoformat()} is before start {start.isoformat()}")
    pieces: list[tuple[Granularity, datetime]] = []
    cursor = start
    # Ascend: at each level, step by this size until aligned to the next one (or out of room).
    for level, granularity in enumerate(GRANULARITIES[:-1]):
        coarser = GRANULARITIES[level + 1]
        while cursor < end and not coarser.aligned(cursor) and granularity.next(cursor) <= end:
            pieces.append((granularity, cursor))
            cursor = granularity.next(cursor)
    # Descend: the coarsest buckets that fit, then finer ones for the tail.
    for granularity in reversed(GRANULARITIES):
        while cursor < end and granularity.aligned(cursor) and granularity.next(cursor) <= end:
            pieces.append((granularity, cursor))
            cursor = granularity.next(cursor)
    if cursor != end:  # pragma: no cover - 15-minute alignment makes this unreachable
        raise AssertionError(f"decomposition stopped at {cursor} before {end}")
    return pieces


#: A signed piece of a range: (granularity, bucket start, +1 or -1).
SignedPiece = tuple[Granularity, datetime, int]
_QUARTERS_PER_DAY: Final = 96


def signed_decompose(start: datetime, end: datetime) -> list[SignedPiece]:
    """[start, end) as signed buckets: `decompose`, except that where it takes more than half of a
    UTC day's quarters, the day item is read instead and the quarters of that day *outside* the
    range are subtracted (exact: the counters are integers). So no UTC day costs more than 48
    quarters: a local day in a 30- or 45-minute zone (never a whole UTC day) reads one day item and
    ≤ 48 quarters instead of 96."""
    pieces = decompose(start, end)
    by_day: dict[datetime, list[datetime]] = {}
    for granularity, bucket in pieces:
        if granularity is Granularity.QUARTER:
            by_day.setdefault(Granularity.DAY.floor(bucket), []).append(bucket)
    out: list[SignedPiece] = []
    replaced: set[datetime] = set()
    for granularity, bucket in pieces:
        if granularity is not Granularity.QUARTER:
            out.append((granularity, bucket, 1))
            continue
        day = Granularity.DAY.floor(bucket)
        covered = by_day[day]
        if len(covered) * 2 <= _QUARTERS_PER_DAY:
            out.append((granularity, bucket, 1))
        elif day not in replaced:
            replaced.add(day)
            out.append((Granularity.DAY, day, 1))
            inside = set(covered)
            quarter = day
            for _ in range(_QUARTERS_PER_DAY):
                if quarter not in inside:
                    out.append((Granularity.QUARTER, quarter, -1))
                quarter = Granularity.QUARTER.next(quarter)
    return out


def plan_runs(buckets: Iterable[tuple[Granularity, datetime]], *, max_gap: int = 0) -> list[BucketRun]:
    """Group buckets into runs of consecutive buckets per granularity.

    `max_gap` lets a run bridge up to that many unneeded buckets (read and ignored) to save a Query.
    """
    by_size: dict[Granularity, list[datetime]] = {}
    for granularity, start in buckets:
        by_size.setdefault(granularity, []).append(start)
    runs: list[BucketRun] = []
    for granularity in GRANULARITIES:
        starts = sorted(set(by_size.get(granularity, ())))
        if not starts:
            continue
        first = previous = starts[0]
        for start in starts[1:]:
            reach = granularity.next(previous)
            for _ in range(max_gap):
                if reach >= start:
                    break
                reach = granularity.next(reach)
            if reach < start:
                runs.append(BucketRun(granularity, first, granularity.next(previous)))
                first = start
            previous = start
        runs.append(BucketRun(granularity, first, granularity.next(previous)))
    return runs


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise InvalidRangeError(f"{at.isoformat()} must carry a timezone")
    return at.astimezone(UTC)

"""The rollup key design and the segment-tree decomposition, checked against brute force."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.rollups import (
    DIMENSIONS,
    GRANULARITIES,
    QUARTER,
    BucketRun,
    Counters,
    Dimension,
    Granularity,
    InvalidRangeError,
    RollupKey,
    coalesce,
    decompose,
    format_bucket,
    plan_runs,
    rollup_keys,
    signed_decompose,
    split_tag_cell_value,
)

BASE = datetime(2025, 1, 1, tzinfo=UTC)
ODD_ZONES = ("Asia/Kolkata", "Asia/Kathmandu", "Australia/Eucla", "America/St_Johns", "Pacific/Chatham")


@dataclass(frozen=True)
class Entry:
    """The attributes a rollup reads from a raw entry."""

    user_id: str = "acme"
    timestamp: datetime = BASE
    provider: str = "anthropic"
    model: str = "claude-sonnet-4-5"
    operation_type: str = "conversation"
    status: str = "ok"
    latency_ms: int = 100
    input_tokens: int = 10
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_5m_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    output_tokens: int = 5
    reasoning_tokens: int = 0
    total_tokens: int = 15
    cost_nanos: int = 1_000
    cost_source: str = "catalog"
    cache_hit: bool = False
    saved_nanos: int = 0
    usage_missing: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    rollup_tags: dict[str, str] | None = None


quarters = st.integers(min_value=0, max_value=4 * 24 * 800).map(lambda n: BASE + n * QUARTER)


def covered(pieces: list[tuple[Granularity, datetime]]) -> list[datetime]:
    out: list[datetime] = []
    for granularity, start in pieces:
        cursor = start
        while cursor < granularity.next(start):
            out.append(cursor)
            cursor += QUARTER
    return out


@given(quarters, quarters)
def test_decompose_covers_the_range_exactly_with_aligned_buckets(a: datetime, b: datetime) -> None:
    start, end = min(a, b), max(a, b)
    pieces = decompose(start, end)
    # Given any aligned range, the pieces are aligned, in order, disjoint, and cover it exactly.
    assert all(g.aligned(s) for g, s in pieces)
    expected = []
    cursor = start
    while cursor < end:
        expected.append(cursor)
        cursor += QUARTER
    assert covered(pieces) == expected
    # And only what is written is read: quarters and days (hours and months are composed from them)
    assert {g for g, _ in pieces} <= set(GRANULARITIES) == {Granularity.QUARTER, Granularity.DAY}
    # And the count is the fewest: every whole UTC day in range is one piece, and the quarters are
    # only the edges around them (≤ 95 each side), or the range itself when no day fits in it.
    first_day = Granularity.DAY.floor(start)
    if first_day < start:
        first_day += timedelta(days=1)
    last_day = Granularity.DAY.floor(end)
    count = {g: sum(1 for p, _ in pieces if p is g) for g in GRANULARITIES}
    if first_day < last_day:
        assert count[Granularity.DAY] == (last_day - first_day).days <= (end - start).days
        leading, trailing = (first_day - start) // QUARTER, (end - last_day) // QUARTER
        assert (leading, trailing) == (
            sum(1 for g, s in pieces if g is Granularity.QUARTER and s < first_day),
            sum(1 for g, s in pieces if g is Granularity.QUARTER and s >= last_day),
        )
        assert leading <= 95
        assert trailing <= 95
    else:
        assert count[Granularity.DAY] == 0
        assert count[Granularity.QUARTER] == (end - start) // QUARTER <= 2 * 95


@given(quarters, quarters)
def test_each_granularity_needs_at_most_two_runs(a: datetime, b: datetime) -> None:
    start, end = min(a, b), max(a, b)
    runs = plan_runs(decompose(start, end))
    for granularity in GRANULARITIES:
        assert sum(1 for r in runs if r.granularity is granularity) <= (1 if granularity is Granularity.DAY else 2)


def test_a_year_is_its_days_and_a_day_one_day() -> None:
    assert decompose(BASE, BASE.replace(year=2026)) == [(Granularity.DAY, BASE + timedelta(days=d)) for d in range(365)]
    assert decompose(BASE, BASE + timedelta(days=1)) == [(Granularity.DAY, BASE)]
    assert decompose(BASE, BASE) == []


@pytest.mark.parametrize("zone_name", ODD_ZONES)
def test_every_local_midnight_of_odd_offset_zones_decomposes(zone_name: str) -> None:
    # 30- and 45-minute offsets (and DST changes) still put local midnights on 15-minute boundaries.
    zone = ZoneInfo(zone_name)
    day = date(2025, 1, 1)
    for _ in range(400):
        low = datetime.combine(day, datetime.min.time(), tzinfo=zone)
        high = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
        pieces = decompose(low, high)
        assert len(covered(pieces)) * QUARTER == high.astimezone(UTC) - low.astimezone(UTC)
        day += timedelta(days=1)


@pytest.mark.parametrize(
    "value",
    [
        datetime(2025, 1, 1, 0, 7, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 15, 1, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 15, 0, 1000, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 15),  # naive
    ],
)
def test_unaligned_or_naive_times_are_refused_with_a_reason(value: datetime) -> None:
    with pytest.raises(InvalidRangeError) as info:
        decompose(value, value + timedelta(hours=1))
    assert "15-minute" in info.value.reason or "timezone" in info.value.reason


def test_end_before_start_is_refused() -> None:
    with pytest.raises(InvalidRangeError, match="before"):
        decompose(BASE + timedelta(hours=1), BASE)


values = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123456789._:/@+-#*", min_size=1, max_size=20)


@given(
    st.lists(st.tuples(quarters, values), min_size=1, max_size=40),
    quarters,
    st.integers(min_value=1, max_value=200),
)
def test_a_bucket_run_is_exactly_a_contiguous_sort_key_range(
    items: list[tuple[datetime, str]], first: datetime, length: int
) -> None:
    run = BucketRun(Granularity.QUARTER, first, first + length * QUARTER)
    keys = [RollupKey("t", Granularity.QUARTER, Dimension.MODEL, bucket, value) for bucket, value in items]
    # sk BETWEEN low AND high (inclusive, as DynamoDB compares strings) selects exactly the run.
    selected = {k for k in keys if run.sk_low <= k.sk <= run.sk_high}
    assert selected == {k for k in keys if run.first <= k.bucket < run.end}


def test_keys_round_trip_and_sort_by_time_within_a_partition() -> None:
    key = RollupKey("acme.co@x", Granularity.HOUR, Dimension.MODEL, BASE, "bedrock#us.anthropic.claude:0")
    assert key.pk == "R#acme.co@x#1h#model"
    assert key.sk == "2025-01-01T00:00#bedrock#us.anthropic.claude:0"
    assert RollupKey.parse(key.pk, key.sk) == key
    assert format_bucket(BASE + timedelta(days=40)) > format_bucket(BASE + timedelta(hours=23))
    assert key.expires_at(396) == int((BASE + timedelta(hours=1, days=396)).timestamp())


def test_one_entry_counts_in_ten_items() -> None:
    entry = Entry(timestamp=datetime(2025, 3, 31, 23, 59, 59, tzinfo=UTC))
    keys = list(rollup_keys(entry))
    # Given an untagged entry: 2 granularities (quarter, day) × 5 dimensions (total, provider, model,
    # operation, cell); its hour is composed from its quarters when read
    assert len(keys) == len(set(keys)) == 10
    assert {k.granularity for k in keys} == {Granularity.QUARTER, Granularity.DAY}
    assert {k.bucket for k in keys if k.granularity is Granularity.QUARTER} == {
        datetime(2025, 3, 31, 23, 45, tzinfo=UTC)
    }
    assert {k.bucket for k in keys if k.granularity is Granularity.DAY} == {datetime(2025, 3, 31, tzinfo=UTC)}
    assert {k.value for k in keys if k.dimension == Dimension.MODEL} == {"anthropic#claude-sonnet-4-5"}
    assert {k.value for k in keys if k.dimension == Dimension.CELL} == {"anthropic#claude-sonnet-4-5#conversation"}
    assert {k.dimension for k in keys} == set(DIMENSIONS)


def test_each_tag_key_adds_its_value_and_its_cell_and_folded_tags_win() -> None:
    # Given an entry with two tags, one of them folded at ingest (`rollup_tags` is what counts)
    entry = Entry(tags={"customer": "acme#1", "team": "x"}, rollup_tags={"customer": "(other)", "team": "x"})
    keys = list(rollup_keys(entry))
    # Then each key adds tag:{key} and tagcell:{key} per granularity, under the folded value
    assert len(keys) == 2 * (5 + 2 * 2)
    day = {k.dimension: k.value for k in keys if k.granularity is Granularity.DAY}
    assert day["tag:customer"] == "(other)"
    assert day["tagcell:team"] == "anthropic#claude-sonnet-4-5#conversation#x"
    # And a tag value holding '#' still splits back (it is last)
    other = Entry(tags={"customer": "a#b#c"})
    cell = next(k.value for k in rollup_keys(other) if k.dimension == "tagcell:customer")
    assert split_tag_cell_value(cell) == ("anthropic", "claude-sonnet-4-5", "conversation", "a#b#c")
    assert RollupKey.parse("R#acme#1d#tagcell:customer", f"2025-01-01T00:00#{cell}").value == cell


def test_coalescing_a_batch_gives_one_delta_per_key_equal_to_the_sum() -> None:
    entries = [
        Entry(timestamp=BASE + timedelta(minutes=m), status="error" if m % 3 == 0 else "ok", cost_nanos=7 * m)
        for m in range(0, 30)
    ] + [Entry(model="gpt-4o", provider="openai", cost_source="unpriced", cost_nanos=0, cache_write_1h_tokens=4)]
    deltas = coalesce(entries)
    # (the hour is composed from its four quarters: no hour item is written)
    assert not any(k.granularity is Granularity.HOUR for k in deltas)
    total_hour = Counters()
    for quarter in range(4):
        total_hour.add(
            deltas.get(
                RollupKey("acme", Granularity.QUARTER, Dimension.TOTAL, BASE + quarter * QUARTER, "*"), Counters()
            )
        )
    assert total_hour == deltas[RollupKey("acme", Granularity.DAY, Dimension.TOTAL, BASE, "*")]
    assert total_hour.requests == 31
    assert total_hour.errors == 10
    assert total_hour.unpriced_requests == 1
    assert total_hour.cost_nanos == total_hour.billed_cost_nanos == sum(7 * m for m in range(30))
    assert total_hour.cache_write_1h_tokens == 4
    assert total_hour.latency_ms_sum == 3100
    first_quarter = deltas[RollupKey("acme", Granularity.QUARTER, Dimension.TOTAL, BASE, "*")]
    assert first_quarter.requests == 16  # minutes 0-14 and the openai entry at BASE
    # day: total + 2 providers + 2 models + 1 operation + 2 cells; quarters: the anthropic values
    # span two quarters, the openai ones one.
    assert len(deltas) == (1 + 2 + 2 + 1 + 2) + (2 + 3 + 3 + 2 + 3)


def test_counters_of_a_re_rated_entry_keep_the_billed_figure() -> None:
    counters = Counters.of(Entry(cost_nanos=100, cost_source="unpriced"), cost_nanos=250, cost_source="catalog")
    assert (counters.cost_nanos, counters.billed_cost_nanos, counters.unpriced_requests) == (250, 100, 0)
    assert counters.minus(counters).is_zero()


def test_runs_bridge_small_gaps_only_when_asked() -> None:
    quarters = [(Granularity.QUARTER, BASE + q * QUARTER) for q in (0, 1, 3, 4, 20)]
    days = [(Granularity.DAY, BASE + timedelta(days=d)) for d in (0, 2)]
    assert [(r.granularity, r.first, r.end) for r in plan_runs(quarters + days)] == [
        (Granularity.QUARTER, BASE, BASE + 2 * QUARTER),
        (Granularity.QUARTER, BASE + 3 * QUARTER, BASE + 5 * QUARTER),
        (Granularity.QUARTER, BASE + 20 * QUARTER, BASE + 21 * QUARTER),
        (Granularity.DAY, BASE, BASE + timedelta(days=1)),
        (Granularity.DAY, BASE + timedelta(days=2), BASE + timedelta(days=3)),
    ]
    assert len(plan_runs(quarters, max_gap=1)) == 2
    assert len(plan_runs(quarters + days, max_gap=1)) == 3


@given(quarters, quarters)
def test_signed_pieces_cover_the_range_exactly_and_read_at_most_half_a_day_of_quarters(
    a: datetime, b: datetime
) -> None:
    start, end = min(a, b), max(a, b)
    pieces = signed_decompose(start, end)
    # Every quarter inside the range counts once, every quarter outside it nets to zero
    coverage: dict[datetime, int] = {}
    for granularity, bucket, sign in pieces:
        quarter = bucket
        while quarter < granularity.next(bucket):
            coverage[quarter] = coverage.get(quarter, 0) + sign
            quarter += QUARTER
    assert {q for q, n in coverage.items() if n} == set(_quarters_between(start, end))
    assert set(coverage.values()) <= {0, 1}
    # And no UTC day costs more than half its quarters; a day item replaces the rest
    per_day: dict[datetime, int] = {}
    for granularity, bucket, _ in pieces:
        if granularity is Granularity.QUARTER:
            day = Granularity.DAY.floor(bucket)
            per_day[day] = per_day.get(day, 0) + 1
    assert all(count <= 48 for count in per_day.values())


def test_a_kolkata_local_day_is_one_day_item_and_22_subtracted_quarters() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    low = datetime(2026, 12, 1, tzinfo=kolkata).astimezone(UTC)
    high = datetime(2026, 12, 2, tzinfo=kolkata).astimezone(UTC)
    pieces = signed_decompose(low, high)
    assert [p for p in pieces if p[0] is Granularity.DAY] == [(Granularity.DAY, datetime(2026, 12, 1, tzinfo=UTC), 1)]
    assert sorted(sign for g, _, sign in pieces if g is Granularity.QUARTER) == [-1] * 22 + [1] * 22


def _quarters_between(start: datetime, end: datetime) -> list[datetime]:
    out, quarter = [], start
    while quarter < end:
        out.append(quarter)
        quarter += QUARTER
    return out

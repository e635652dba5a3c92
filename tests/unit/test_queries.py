"""Summaries and daily series from rollups equal brute force over the entries, in odd timezones too.

The rollups live in memory here (the same keys and sort-key ranges DynamoDB would apply);
tests/integration/test_aggregate.py and the invariant test run the same code on moto.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.money import nanos_to_usd
from llmtally.queries import (
    Filter,
    InvalidQueryError,
    breakdown,
    daily_usage,
    get_usage_summary,
    local_midnight,
    resolve_range,
    summarize,
    usage_summary,
)
from llmtally.rollups import (
    Counters,
    Granularity,
    InvalidRangeError,
    decompose,
    sum_counters,
)
from tests.unit.test_packing import PackedTable
from tests.unit.test_rollups import Entry

ZONES = ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Eucla", "America/St_Johns", "America/New_York")
TODAY = date(2025, 3, 12)  # the US changed to DST on 2025-03-09: one 23-hour day in range


class MemoryRollups(PackedTable):
    """The packed rollups the aggregator writes for `entries`, in memory, read by the repository's
    own `read_runs` (DynamoDB's key-condition semantics: `tests.unit.test_packing.PackedTable`)."""

    def __init__(self, entries: Sequence[Entry] = ()) -> None:
        table = PackedTable.of(entries)
        super().__init__()
        self.items, self.codes = table.items, table.codes


def brute(entries: Sequence[Entry], low: datetime, high: datetime) -> Counters:
    total = Counters()
    for entry in entries:
        if low <= entry.timestamp < high:
            total.add(Counters.of(entry))
    return total


START = datetime(2025, 2, 20, tzinfo=UTC)
entries_strategy = st.lists(
    st.builds(
        Entry,
        user_id=st.just("acme"),
        timestamp=st.integers(0, 22 * 24 * 3600 - 1).map(lambda s: START + timedelta(seconds=s)),
        provider=st.sampled_from(["anthropic", "openai", "google"]),
        model=st.sampled_from(["m1", "m2", "gpt-4o"]),
        operation_type=st.sampled_from(["conversation", "detection_rule"]),
        status=st.sampled_from(["ok", "error"]),
        latency_ms=st.integers(0, 5000),
        input_tokens=st.integers(0, 10_000),
        output_tokens=st.integers(0, 10_000),
        cost_nanos=st.integers(0, 10**9),
        cost_source=st.sampled_from(["catalog", "unpriced"]),
        cache_hit=st.booleans(),
        saved_nanos=st.integers(0, 10**9),
        usage_missing=st.booleans(),
    ),
    max_size=40,
)


@given(
    entries_strategy,
    st.sampled_from(ZONES),
    st.integers(0, 21 * 96),
    st.integers(0, 21 * 96),
)
def test_a_summary_equals_brute_force_for_any_aligned_range(entries: list[Entry], tz: str, a: int, b: int) -> None:
    low = START + min(a, b) * timedelta(minutes=15)
    high = START + max(a, b) * timedelta(minutes=15)
    repo = MemoryRollups(entries)
    summary = summarize("acme", low.astimezone(ZoneInfo(tz)), high, tz, repository=repo)
    expected = brute(entries, low, high)
    assert summary.total_requests == expected.requests
    assert summary.total_tokens == expected.total_tokens
    assert summary.total_cost_usd == nanos_to_usd(expected.cost_nanos)
    assert summary.errors == expected.errors
    assert summary.unpriced_requests == expected.unpriced_requests
    assert summary.usage_missing == expected.usage_missing
    assert (summary.cache_hits, summary.saved_cost_usd) == (expected.cache_hits, nanos_to_usd(expected.saved_nanos))
    by_provider = {p: brute([e for e in entries if e.provider == p], low, high) for p in {e.provider for e in entries}}
    assert {p: (b.requests, b.tokens, b.cost_usd, b.usage_missing) for p, b in summary.by_provider.items()} == {
        p: (c.requests, c.total_tokens, nanos_to_usd(c.cost_nanos), c.usage_missing)
        for p, c in by_provider.items()
        if c.requests
    }
    # The base dimensions share their stored items: at most 3 Queries (2 runs of quarters, 1 of
    # days), whatever the events, each reading one stored item per bucket at most.
    assert summary.queries <= 3
    assert summary.items_read <= len(decompose(low, high))


@given(entries_strategy, st.sampled_from(ZONES), st.integers(1, 21))
def test_a_daily_series_equals_brute_force_per_local_day(entries: list[Entry], tz: str, days: int) -> None:
    zone = ZoneInfo(tz)
    series = daily_usage("acme", days, tz, today=TODAY, repository=MemoryRollups(entries))
    assert [row.date for row in series.days] == [TODAY - timedelta(days=days - 1 - i) for i in range(days)]
    for row in series.days:
        low = datetime.combine(row.date, datetime.min.time(), tzinfo=zone).astimezone(UTC)
        high = datetime.combine(row.date + timedelta(days=1), datetime.min.time(), tzinfo=zone).astimezone(UTC)
        expected = brute(entries, low, high)
        assert (row.requests, row.tokens, row.cost_usd, row.errors, row.usage_missing) == (
            expected.requests,
            expected.total_tokens,
            nanos_to_usd(expected.cost_nanos),
            expected.errors,
            expected.usage_missing,
        )


def test_reads_are_bounded_by_days_not_events() -> None:
    # Given 1 and 3 events per quarter-hour for a month, a 30-day Kolkata series reads the same.
    def entries(per_quarter: int) -> list[Entry]:
        return [
            Entry(timestamp=START + q * timedelta(minutes=15) + timedelta(seconds=i))
            for q in range(30 * 96)
            for i in range(per_quarter)
        ]

    sparse = daily_usage("acme", 30, "Asia/Kolkata", today=TODAY, repository=MemoryRollups(entries(1)))
    dense = daily_usage("acme", 30, "Asia/Kolkata", today=TODAY, repository=MemoryRollups(entries(3)))
    assert sparse.items_read == dense.items_read
    assert sparse.queries == dense.queries
    # At most one stored item per bucket of the days' decomposition that holds calls (a Kolkata day
    # is 96 quarters: no UTC day fits in it), every cell in it.
    zone = ZoneInfo("Asia/Kolkata")
    pieces = {
        piece
        for row in dense.days
        for piece in decompose(local_midnight(row.date, zone), local_midnight(row.date + timedelta(days=1), zone))
    }
    assert all(granularity is Granularity.QUARTER for granularity, _ in pieces)
    assert dense.items_read <= sum(1 for _, bucket in pieces if bucket >= START) <= 30 * 96
    assert sum(r.requests for r in dense.days) == 3 * sum(r.requests for r in sparse.days)
    # And in UTC the same series is one day item a day
    utc = daily_usage("acme", 30, "UTC", today=TODAY, repository=MemoryRollups(entries(3)))
    assert utc.items_read == (TODAY - START.date()).days + 1
    assert [r.requests for r in utc.days if r.date >= START.date()] == [3 * 96] * utc.items_read


def test_calls_on_either_side_of_every_edge_are_counted_once() -> None:
    # Given calls in the first and last second of the quarters and days around a range's edges
    # (the range's buckets, and the ones just outside it, all hold calls)
    days = [datetime(2025, 3, 1, tzinfo=UTC) + timedelta(days=d) for d in range(-2, 5)]
    seconds = [
        timedelta(0),
        timedelta(minutes=14, seconds=59),
        timedelta(minutes=15),
        timedelta(hours=23, minutes=59, seconds=59),
    ]
    offsets = [timedelta(minutes=m) for m in (-30, -15, 0, 15, 30, 330, 345)]
    entries = [
        Entry(timestamp=day + offset + second, cost_nanos=1 + i)
        for i, (day, offset, second) in enumerate(
            (day, offset, second) for day in days for offset in offsets for second in seconds
        )
    ]
    repo = MemoryRollups(entries)
    # When any range of whole quarters among them is summed, in UTC and odd zones
    edges = sorted({day + offset for day in days[1:-1] for offset in offsets})
    for tz in ("UTC", "Asia/Kolkata", "Australia/Eucla"):
        for low in edges[::3]:
            for high in edges:
                if high < low:
                    continue
                summary = summarize("acme", low.astimezone(ZoneInfo(tz)), high, tz, repository=repo)
                expected = brute(entries, low, high)
                # Then exactly the calls in [low, high) count: none from a bucket at or after the end
                assert (summary.total_requests, summary.total_cost_usd) == (
                    expected.requests,
                    nanos_to_usd(expected.cost_nanos),
                ), (tz, low, high)
    # And a daily series and a one-day summary count a local day's calls only
    series = daily_usage("acme", 3, "Asia/Kolkata", today=date(2025, 3, 3), repository=repo)
    for row in series.days:
        low = local_midnight(row.date, ZoneInfo("Asia/Kolkata"))
        assert (
            row.requests
            == brute(entries, low, local_midnight(row.date + timedelta(days=1), ZoneInfo("Asia/Kolkata"))).requests
        )
    one_day = usage_summary("acme", date(2025, 3, 2), date(2025, 3, 2), repository=repo)
    assert one_day["total_requests"] == brute(entries, days[3], days[4]).requests


def test_the_seed_shape_and_the_extras() -> None:
    entries = [
        Entry(timestamp=datetime(2025, 3, 1, 10, tzinfo=UTC), cost_nanos=12_000_000, latency_ms=100),
        Entry(timestamp=datetime(2025, 3, 1, 11, tzinfo=UTC), cost_nanos=1, latency_ms=201, status="error"),
        Entry(
            timestamp=datetime(2025, 3, 2, 11, tzinfo=UTC),
            provider="openai",
            model="gpt-4o",
            operation_type="query_generation",
            cost_nanos=0,
            cost_source="unpriced",
            usage_missing=True,
        ),
        Entry(timestamp=datetime(2025, 3, 2, 12, tzinfo=UTC), provider="bedrock", model="claude-sonnet-4-5"),
    ]
    repo = MemoryRollups(entries)
    summary = usage_summary("acme", date(2025, 3, 1), date(2025, 3, 2), repository=repo)
    assert summary["total_requests"] == 4
    assert summary["total_cost_usd"] == Decimal("0.012001001")
    assert summary["avg_cost_per_request_usd"] == Decimal("0.003000250")
    assert summary["avg_latency_ms"] == Decimal("125.2")  # 125.25, half to even
    assert summary["errors"] == 1
    assert summary["unpriced_requests"] == 1
    assert summary["usage_missing"] == 1
    assert set(summary["by_provider"]) == {"anthropic", "openai", "bedrock"}
    assert summary["by_operation"]["query_generation"]["requests"] == 1
    # The same model name under two providers is never merged.
    assert set(summary["by_model"]) == {"anthropic/claude-sonnet-4-5", "bedrock/claude-sonnet-4-5", "gpt-4o"}
    assert summary["by_model"]["gpt-4o"] == {
        "requests": 1,
        "tokens": 15,
        "cost_usd": Decimal("0E-9"),
        "billed_cost_usd": Decimal("0E-9"),
        "errors": 0,
        "unpriced_requests": 1,
        "usage_missing": 1,
        "provider": "openai",
    }
    # end date inclusive: 1 March only
    one_day = usage_summary("acme", date(2025, 3, 1), date(2025, 3, 1), repository=repo)
    assert one_day["total_requests"] == 2
    last_two = usage_summary("acme", days=2, today=date(2025, 3, 2), repository=repo)
    assert last_two["total_requests"] == 4


def test_get_usage_summary_reads_the_configured_table(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_summarize(user_id: str, start: object, end: object, tz: str, **_: object) -> object:
        calls.append(f"{user_id} {start} {end} {tz}")
        return summarize(user_id, start, end, tz, repository=MemoryRollups())  # type: ignore[arg-type]

    monkeypatch.setattr("llmtally.queries.summarize", fake_summarize)
    result = get_usage_summary("acme", date(2025, 3, 1), date(2025, 3, 31), tz="Asia/Kathmandu")
    assert result["total_requests"] == 0
    assert result["start"] == datetime(2025, 3, 1, tzinfo=ZoneInfo("Asia/Kathmandu"))
    assert calls == ["acme 2025-03-01 2025-03-31 Asia/Kathmandu"]


@pytest.mark.parametrize(
    ("start", "end", "tz", "message"),
    [
        (datetime(2025, 3, 1, 0, 5, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC), "UTC", "15-minute"),
        (date(2025, 3, 2), date(2025, 2, 28), "UTC", "before"),
        (date(2025, 3, 1), date(2025, 3, 2), "Mars/Olympus_Mons", "unknown timezone"),
        (date(2025, 3, 1), date(2025, 3, 2), "../../etc/passwd", "unknown timezone"),
    ],
)
def test_bad_ranges_are_refused_with_a_clear_reason(start: date, end: date, tz: str, message: str) -> None:
    with pytest.raises(InvalidRangeError, match=message):
        resolve_range(start, end, tz)


@pytest.mark.parametrize("days", [0, 367, -1, True])
def test_series_length_is_bounded(days: int) -> None:
    with pytest.raises(InvalidRangeError, match="days"):
        daily_usage("acme", days, repository=MemoryRollups())


def test_naive_datetimes_are_local_time_in_the_zone() -> None:
    low, high = resolve_range(datetime(2025, 3, 1, 0, 0), datetime(2025, 3, 1, 5, 45), "Asia/Kathmandu")
    assert (low, high) == (datetime(2025, 2, 28, 18, 15, tzinfo=UTC), datetime(2025, 3, 1, 0, 0, tzinfo=UTC))


tagged_entries = st.lists(
    st.builds(
        Entry,
        user_id=st.just("acme"),
        timestamp=st.integers(0, 22 * 24 * 3600 - 1).map(lambda s: START + timedelta(seconds=s)),
        provider=st.sampled_from(["anthropic", "openai"]),
        model=st.sampled_from(["m1", "gpt-4o"]),
        operation_type=st.sampled_from(["conversation", "detection_rule"]),
        status=st.sampled_from(["ok", "error"]),
        cost_nanos=st.integers(0, 10**9),
        usage_missing=st.booleans(),
        tags=st.fixed_dictionaries(
            {}, optional={"customer": st.sampled_from(["a", "b#1", "(other)"]), "team": st.just("x")}
        ),
    ),
    max_size=30,
)
WHERES = [
    None,
    Filter("provider", "openai"),
    Filter("model", "gpt-4o"),
    Filter("operation", "conversation"),
    Filter("tag:customer", "b#1"),
    Filter("tag:customer", "(other)"),
    Filter("tag:team", "x"),
]


def _attrs(entry: Entry) -> dict[str, str]:
    return {
        "provider": entry.provider,
        "model": entry.model,
        "operation": entry.operation_type,
        **{f"tag:{k}": v for k, v in entry.tags.items()},
    }


@given(
    tagged_entries,
    st.sampled_from(WHERES),
    st.sampled_from(["provider", "model", "operation", "tag:customer"]),
    st.sampled_from(ZONES),
    st.integers(1, 3),
)
def test_a_breakdown_and_a_filtered_summary_equal_brute_force(
    entries: list[Entry], where: Filter | None, by: str, tz: str, limit: int
) -> None:
    # Given tagged calls over three weeks, and any filter, dimension, zone and limit
    repo = MemoryRollups(entries)
    first, last = date(2025, 2, 22), date(2025, 3, 10)
    low, high = resolve_range(first, last, tz)
    inside = [
        e
        for e in entries
        if low <= e.timestamp < high and (where is None or _attrs(e).get(where.dimension) == where.value)
    ]
    if where is not None and where.dimension != by and where.dimension.startswith("tag:") and by.startswith("tag:"):
        with pytest.raises(InvalidQueryError, match="one key at a time"):
            breakdown("acme", by, first, last, tz, where=where, limit=limit, repository=repo)
        return
    # When the breakdown and the filtered summary are read
    result = breakdown("acme", by, first, last, tz, where=where, limit=limit, repository=repo)
    summary = summarize("acme", first, last, tz, repository=repo, where=where)
    # Then each row, the rest and the total are exact, costliest first
    expected: dict[tuple[str, str | None], Counters] = {}
    for e in inside:
        key = (_attrs(e).get(by, "(none)"), e.provider if by == "model" else None)
        expected.setdefault(key, Counters()).add(Counters.of(e))
    assert result.total.counters == brute(inside, low, high)
    assert all(expected[(row.value, row.provider)] == row.counters for row in result.rows)
    rest = [c for k, c in expected.items() if k not in {(r.value, r.provider) for r in result.rows}]
    if rest:
        assert result.other is not None
        assert result.other.counters == sum_counters(rest)
    else:
        assert result.other is None
    assert [r.counters.cost_nanos for r in result.rows] == sorted(
        (r.counters.cost_nanos for r in result.rows), reverse=True
    )
    assert summary.total_requests == len(inside)
    assert summary.total_cost_usd == nanos_to_usd(sum(e.cost_nanos for e in inside))
    assert sum(b.requests for b in summary.by_operation.values()) == len(inside)
    # And a share is the row's cost over the total's, two places
    shares = [row["share_percent"] for row in result.as_dict()["rows"]]
    assert all(Decimal(0) <= share <= Decimal(100) for share in shares)

"""Pipeline benchmark: rollup write units per 1,000 events, and items read by a 30-day summary.

    .venv/bin/python -m bench pipeline        (or: .venv/bin/python bench/bench_pipeline.py)

A realistic mix: 50 tenants with Zipf-distributed traffic (s = 1.1), 3 providers, 8 models,
4 operations, a steady 5 events/s, delivered in stream batches of 10, 100 and 1,000 records.

1. Write units. Each batch goes through the real aggregator (`llmtally.aggregate.aggregate_batch`:
   coalescing, range splitting, checkpoints) against a recording repository that keeps every item's
   state, so each written item is priced by DynamoDB's rules: ceil(item size / 1 KB) write units,
   doubled inside TransactWriteItems. Compared with
   - the naive design: every event updates each of its 16 rollup items with its own UpdateItem
     (16 WCU per event, and not even exactly-once);
   - the compaction alternative: only the 15-minute items on the hot path (same transactions), and
     a scheduled job that folds each closed hour's 15-minute items into the hour, day and month
     items (one transactional update per coarse item per hour, plus its checkpoint).
2. Items read. A 30-day summary (UTC and Asia/Kolkata) and a 30-day daily series of one tenant with
   1k, 10k and 100k events in those 30 days, by the real query code (`llmtally.queries`) over an
   in-memory table with DynamoDB's key-condition semantics (the same code runs on moto in
   tests/integration/test_aggregate.py), against the seed's design that reads every raw entry.
   Read units are for eventually consistent Queries: 0.5 per 4 KB of items read, per Query.
Nothing is asserted; figures print (docs/BENCHMARKS.md, docs/pipeline.md record them).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from llmtally.aggregate import StreamRecord, aggregate_batch
from llmtally.repositories.rollups import (
    CHECKPOINT_PK_PREFIX,
    CheckpointAdvance,
    RollupItem,
    RollupRepository,
)
from llmtally.rollups import (
    COUNTER_FIELDS,
    GRANULARITIES,
    BucketRun,
    Counters,
    Dimension,
    Granularity,
    RollupKey,
    coalesce,
    partition_key,
)

TENANTS = 50
ZIPF_S = 1.1
EVENTS_PER_SECOND = 5
STREAM_EVENTS = 20_000
BATCH_SIZES = (10, 100, 1_000)
SUMMARY_EVENTS = (1_000, 10_000, 100_000)
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/mantissa-log-llm-usage/stream/2026-11-28T00:00:00.000"
MODELS = {
    "anthropic": ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-6"),
    "openai": ("gpt-5", "gpt-5-mini", "gpt-5-nano"),
    "google": ("gemini-2.5-pro", "gemini-2.5-flash"),
}
OPERATIONS = ("query_generation", "detection_rule", "conversation", "rule_enrichment")
#: A raw entry as the ingest stores it, measured on a typical item (attribute names + values).
RAW_ENTRY_BYTES = 620


@dataclass(frozen=True)
class Entry:
    """What the aggregator reads from a raw entry."""

    user_id: str
    timestamp: datetime
    provider: str
    model: str
    operation_type: str
    status: str
    latency_ms: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_5m_tokens: int | None
    cache_write_1h_tokens: int | None
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_nanos: int
    cost_source: str
    cache_hit: bool = False
    saved_nanos: int = 0
    usage_missing: bool = False


def events(count: int, start: datetime, seconds: float, rng: random.Random, tenants: int = TENANTS) -> list[Entry]:
    weights = [1 / (rank**ZIPF_S) for rank in range(1, tenants + 1)]
    users = rng.choices([f"tenant-{i:02d}" for i in range(tenants)], weights, k=count)
    out = []
    for index, user in enumerate(users):
        provider = rng.choice(list(MODELS))
        tokens = (rng.randrange(100, 20_000), rng.randrange(0, 5_000), rng.randrange(10, 4_000))
        out.append(
            Entry(
                user_id=user,
                timestamp=start + timedelta(seconds=seconds * index / count),
                provider=provider,
                model=rng.choice(MODELS[provider]),
                operation_type=rng.choice(OPERATIONS),
                status="error" if rng.random() < 0.02 else "ok",
                latency_ms=rng.randrange(200, 20_000),
                input_tokens=tokens[0],
                cache_read_tokens=tokens[1],
                cache_write_tokens=0,
                cache_write_5m_tokens=None,
                cache_write_1h_tokens=None,
                output_tokens=tokens[2],
                reasoning_tokens=0,
                total_tokens=sum(tokens),
                cost_nanos=rng.randrange(10_000, 50_000_000),
                cost_source="catalog",
            )
        )
    return out


def number_bytes(value: int) -> int:
    """DynamoDB's size of a number: about 1 byte per 2 significant digits, plus 1."""
    digits = len(str(abs(value)).rstrip("0")) or 1
    return math.ceil(digits / 2) + 1


def rollup_item_bytes(key: RollupKey, counters: Counters) -> int:
    size = len("pk") + len(key.pk) + len("sk") + len(key.sk) + len("expires_at") + number_bytes(2_000_000_000)
    for name in COUNTER_FIELDS:
        value = getattr(counters, name)
        if value:
            size += len(name) + number_bytes(value)
    return size


def write_units(size: int, *, transactional: bool) -> int:
    return math.ceil(size / 1024) * (2 if transactional else 1)


class RecordingRollups(RollupRepository):
    """The rollups table as state in memory: prices every write, answers checkpoint reads."""

    def __init__(self) -> None:
        self.ttl_days = 396
        self.table = "bench"
        self.state: dict[RollupKey, Counters] = {}
        self.marks: dict[tuple[str, str], str] = {}
        self.units = 0
        self.items = 0
        self.transactions = 0

    def checkpoints(self, stream_arn: str, user_ids: Any) -> dict[str, str]:
        return {u: self.marks[(stream_arn, u)] for u in user_ids if (stream_arn, u) in self.marks}

    def commit(
        self,
        deltas: Mapping[RollupKey, Counters],
        advances: Sequence[CheckpointAdvance],
        extra_items: Sequence[dict[str, Any]] = (),
    ) -> int:
        assert not extra_items  # no budgets in this bench
        for key, delta in deltas.items():
            before = rollup_item_bytes(key, self.state.get(key, Counters()))
            self.state.setdefault(key, Counters()).add(delta)
            after = rollup_item_bytes(key, self.state[key])
            self.units += write_units(max(before, after), transactional=True)
        for advance in advances:
            self.marks[(advance.stream_arn, advance.user_id)] = advance.last
            size = len("pk") + len(CHECKPOINT_PK_PREFIX + advance.user_id) + 2 + len(advance.stream_arn) + 60
            self.units += write_units(size, transactional=True)
        self.items += len(deltas) + len(advances)
        self.transactions += 1
        return len(deltas) + len(advances)

    def read_runs(
        self, user_id: str, requests: Sequence[tuple[Dimension, BucketRun]], *, consistent: bool = False
    ) -> list[RollupItem]:
        self.queries = getattr(self, "queries", 0) + len(requests)
        out = []
        for dimension, run in requests:
            pk = partition_key(user_id, run.granularity, dimension)
            found = [
                RollupItem(key, counters)
                for key, counters in self.state.items()
                if key.pk == pk and run.sk_low <= key.sk <= run.sk_high
            ]
            self.read_units = getattr(self, "read_units", 0.0) + 0.5 * max(
                1, math.ceil(sum(rollup_item_bytes(i.key, i.counters) for i in found) / 4096)
            )
            out.extend(found)
        return out


def aggregate_stream(
    entries: Sequence[Entry], batch_size: int, granularities: Sequence[Granularity]
) -> RecordingRollups:
    """Deliver the stream in batches to the real aggregator (records carry the entries directly)."""
    repo = RecordingRollups()
    by_sequence = {str(10**20 + index): entry for index, entry in enumerate(entries)}
    records = [StreamRecord(sequence, "INSERT", STREAM_ARN, {"seq": sequence}) for sequence in by_sequence]
    for start in range(0, len(records), batch_size):
        aggregate_batch(
            records[start : start + batch_size],
            repository=repo,
            parse=lambda image: by_sequence[str(image["seq"])],
            granularities=granularities,
        )
    return repo


def compaction_units(entries: Sequence[Entry]) -> int:
    """A scheduled job folding each closed hour's quarters into hour, day and month items:
    one transactional update per (tenant, dimension value, coarse bucket) per hour, plus one
    checkpoint (the hour done) per tenant and hour."""
    per_hour = coalesce(entries, (Granularity.HOUR,))
    units = 0
    tenants_hours: set[tuple[str, datetime]] = set()
    for key in per_hour:
        units += 3 * write_units(450, transactional=True)  # hour, day and month items (< 1 KB)
        tenants_hours.add((key.user_id, key.bucket))
    return units + len(tenants_hours) * write_units(120, transactional=True)


def bench_writes() -> None:
    rng = random.Random(42)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    stream = events(STREAM_EVENTS, start, STREAM_EVENTS / EVENTS_PER_SECOND, rng)
    naive = 16 * 1000
    print(
        f"rollup write units per 1,000 events ({STREAM_EVENTS:,} events, {TENANTS} tenants Zipf s={ZIPF_S}, "
        f"{EVENTS_PER_SECOND} events/s; naive = 16 UpdateItems per event = {naive:,} WCU)"
    )
    print(
        f"  {'batch':>6} {'all sizes on the hot path':>27} {'ratio':>7} {'txns/1k':>8} {'items/txn':>9}"
        f" {'15m hot path + hourly compaction':>34} {'ratio':>7}"
    )
    compaction = compaction_units(stream) * 1000 / len(stream)
    for batch_size in BATCH_SIZES:
        full = aggregate_stream(stream, batch_size, GRANULARITIES)
        quarters = aggregate_stream(stream, batch_size, (Granularity.QUARTER,))
        per_k = full.units * 1000 / len(stream)
        alt = quarters.units * 1000 / len(stream) + compaction
        print(
            f"  {batch_size:>6} {per_k:>27,.0f} {naive / per_k:>6.1f}x {full.transactions * 1000 / len(stream):>8.1f}"
            f" {full.items / full.transactions:>9.1f} {alt:>34,.0f} {naive / alt:>6.1f}x"
        )


def bench_reads() -> None:
    rng = random.Random(7)
    today = date(2026, 11, 28)
    print("\nitems read by one tenant's 30-day summary and daily series (rollups) vs every raw entry (seed)")
    print(
        f"  {'events':>8} {'seed items':>10} {'seed RCU':>9}"
        f" {'summary UTC':>12} {'Kolkata':>8} {'queries':>8} {'RCU':>6} {'series Kolkata':>15} {'RCU':>6} {'ratio':>8}"
    )
    for count in SUMMARY_EVENTS:
        start = datetime(2026, 10, 29, tzinfo=UTC)
        entries = events(count, start, 30 * 86400 - 1, rng, tenants=1)
        repo = RecordingRollups()
        repo.state = coalesce(entries)
        from llmtally.queries import daily_usage, summarize

        utc = summarize("tenant-00", today - timedelta(days=29), today, "UTC", repository=repo)
        repo.read_units = 0.0
        kolkata = summarize("tenant-00", today - timedelta(days=29), today, "Asia/Kolkata", repository=repo)
        summary_rcu = repo.read_units
        repo.read_units = 0.0
        series = daily_usage("tenant-00", 30, "Asia/Kolkata", today=today, repository=repo)
        series_rcu = repo.read_units
        seed_rcu = 0.5 * math.ceil(count * RAW_ENTRY_BYTES / 4096)
        print(
            f"  {count:>8,} {count:>10,} {seed_rcu:>9,.0f} {utc.items_read:>12,} {kolkata.items_read:>8,}"
            f" {kolkata.queries:>8} {summary_rcu:>6.1f} {series.items_read:>15,} {series_rcu:>6.1f}"
            f" {count / kolkata.items_read:>7.1f}x"
        )


def main() -> None:
    started = time.perf_counter()
    bench_writes()
    bench_reads()
    print(f"\n(bench_pipeline: {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()

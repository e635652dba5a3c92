"""Pipeline benchmark: rollup write units per 1,000 events, and items read by a 30-day summary.

    .venv/bin/python -m bench pipeline        (or: .venv/bin/python bench/bench_pipeline.py)

A realistic mix: 50 tenants with Zipf-distributed traffic (s = 1.1), 3 providers, 8 models,
4 operations, a steady 5 events/s, delivered in stream batches of 10, 100 and 1,000 records. The
tagged mix adds two tag keys to every event: `customer`, 200 values per tenant (Zipf, s = 1.1),
and `feature`, 10 values (uniform).

1. Write units. Each batch goes through the real aggregator (`llmtally.aggregate.aggregate_batch`:
   coalescing, marked writes or transactions, checkpoints) against a recording repository that
   keeps every item's state, so each written item is priced by DynamoDB's rules: ceil(item size /
   1 KB) write units (its stream high-water mark included), doubled inside TransactWriteItems.
   Compared, in the same run, with
   - the naive design: every event updates each of its 16 rollup items with its own UpdateItem
     (16 WCU per event, and not even exactly-once);
   - the design before issue 17 (modelled on the same stream): 4 granularities (15 minutes, hour,
     day, month) × 4 dimensions (total, provider, model, operation), every batch's distinct keys
     per tenant in transactions (2 units per item under 1 KB) with each tenant's checkpoint;
   and, for the tagged mix, where the units go (per dimension family).
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
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from llmtally.aggregate import StreamRecord, aggregate_batch
from llmtally.repositories.rollups import (
    CHECKPOINT_PK_PREFIX,
    SEQUENCE_WIDTH,
    CheckpointAdvance,
    MarkedDelta,
    Resolve,
    RollupItem,
    RollupRepository,
)
from llmtally.rollups import (
    COUNTER_FIELDS,
    GRANULARITIES,
    BucketRun,
    Counters,
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
CUSTOMERS = 200
FEATURES = 10
#: The stream high-water mark every rollup item carries: `hw_` + 8 hex digits, a 40-digit number.
MARK_BYTES = len("hw_12345678") + SEQUENCE_WIDTH


@dataclass(frozen=True)
class Entry:
    """What the aggregator reads from a raw entry (`tags`: as the ingest rolls them up)."""

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
    tags: Mapping[str, str] = field(default_factory=dict)


def events(
    count: int, start: datetime, seconds: float, rng: random.Random, tenants: int = TENANTS, *, tagged: bool = False
) -> list[Entry]:
    weights = [1 / (rank**ZIPF_S) for rank in range(1, tenants + 1)]
    users = rng.choices([f"tenant-{i:02d}" for i in range(tenants)], weights, k=count)
    customer_weights = [1 / (rank**ZIPF_S) for rank in range(1, CUSTOMERS + 1)]
    out = []
    for index, user in enumerate(users):
        tags: dict[str, str] = {}
        if tagged:
            tags = {
                "customer": f"cust-{rng.choices(range(CUSTOMERS), customer_weights)[0]:03d}",
                "feature": f"feature-{rng.randrange(FEATURES)}",
            }
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
                tags=tags,
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
        self.calls = 0
        self.by_dimension: dict[str, int] = {}

    def checkpoints(self, stream_arn: str, user_ids: Any) -> dict[str, str]:
        return {u: self.marks[(stream_arn, u)] for u in user_ids if (stream_arn, u) in self.marks}

    def _write(self, key: RollupKey, delta: Counters, *, transactional: bool, marked: bool) -> None:
        extra = MARK_BYTES if marked else 0
        before = rollup_item_bytes(key, self.state.get(key, Counters())) + extra
        self.state.setdefault(key, Counters()).add(delta)
        after = rollup_item_bytes(key, self.state[key]) + extra
        units = write_units(max(before, after), transactional=transactional)
        self.units += units
        family = key.dimension.split(":", 1)[0]
        self.by_dimension[family] = self.by_dimension.get(family, 0) + units

    def _checkpoint(self, advance: CheckpointAdvance, *, transactional: bool) -> None:
        self.marks[(advance.stream_arn, advance.user_id)] = advance.last
        size = len("pk") + len(CHECKPOINT_PK_PREFIX + advance.user_id) + 2 + len(advance.stream_arn) + 60
        units = write_units(size, transactional=transactional)
        self.units += units
        self.by_dimension["checkpoint"] = self.by_dimension.get("checkpoint", 0) + units

    def commit(
        self,
        deltas: Mapping[RollupKey, Counters],
        advances: Sequence[CheckpointAdvance],
        extra_items: Sequence[dict[str, Any]] = (),
        marks: Mapping[RollupKey, tuple[str, str]] | None = None,
        stream_arn: str = "",
    ) -> int:
        assert not extra_items  # no budgets in this bench
        for key, delta in deltas.items():
            self._write(key, delta, transactional=True, marked=marks is not None)
        for advance in advances:
            self._checkpoint(advance, transactional=True)
        self.items += len(deltas) + len(advances)
        self.transactions += 1
        self.calls += 1
        return len(deltas) + len(advances)

    def apply_marked(self, writes: Sequence[MarkedDelta], stream_arn: str, resolve: Resolve) -> int:
        for write in writes:
            self._write(write.key, write.delta, transactional=False, marked=True)
        self.items += len(writes)
        self.calls += len(writes)
        return len(writes)

    def advance_checkpoint(self, advance: CheckpointAdvance) -> bool:
        self._checkpoint(advance, transactional=False)
        self.items += 1
        self.calls += 1
        return True

    def read_runs(
        self, user_id: str, requests: Sequence[tuple[str, BucketRun]], *, consistent: bool = False
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


#: The layout before issue 17, modelled: 4 granularities × 4 dimensions, all in transactions.
OLD_GRANULARITIES = (Granularity.QUARTER, Granularity.HOUR, Granularity.DAY, Granularity.MONTH)


def previous_design_units(entries: Sequence[Entry], batch_size: int) -> int:
    """Each batch's distinct (tenant, granularity, dimension, bucket, value) keys of the design
    before issue 17, 2 units each (transactional, < 1 KB), plus 2 per tenant checkpoint."""
    units = 0
    for start in range(0, len(entries), batch_size):
        keys: set[tuple[str, Granularity, str, datetime, str]] = set()
        tenants: set[str] = set()
        for entry in entries[start : start + batch_size]:
            tenants.add(entry.user_id)
            values = (
                ("total", "*"),
                ("provider", entry.provider),
                ("model", f"{entry.provider}#{entry.model}"),
                ("operation", entry.operation_type),
            )
            for granularity in OLD_GRANULARITIES:
                bucket = granularity.floor(entry.timestamp)
                keys.update((entry.user_id, granularity, d, bucket, v) for d, v in values)
        units += 2 * len(keys) + 2 * len(tenants)
    return units


def bench_writes() -> dict[str, float]:
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    figures: dict[str, float] = {}
    naive = 16 * 1000
    print(
        f"rollup write units per 1,000 events ({STREAM_EVENTS:,} events, {TENANTS} tenants Zipf s={ZIPF_S}, "
        f"{EVENTS_PER_SECOND} events/s; naive = 16 UpdateItems per event = {naive:,} WCU)"
    )
    print(
        f"  {'mix':>8} {'batch':>6} {'this design':>12} {'calls/1k':>9} {'before issue 17':>16} {'ratio':>7}"
        f" {'vs naive':>9}"
    )
    for tagged in (False, True):
        stream = events(STREAM_EVENTS, start, STREAM_EVENTS / EVENTS_PER_SECOND, random.Random(42), tagged=tagged)
        untagged = [replace(e, tags={}) for e in stream]
        for batch_size in BATCH_SIZES:
            repo = aggregate_stream(stream, batch_size, GRANULARITIES)
            per_k = repo.units * 1000 / len(stream)
            before = previous_design_units(untagged, batch_size) * 1000 / len(stream)
            mix = "tagged" if tagged else "untagged"
            figures[f"{mix}/{batch_size}"] = per_k
            print(
                f"  {mix:>8} {batch_size:>6} {per_k:>12,.0f} {repo.calls * 1000 / len(stream):>9,.0f}"
                f" {before:>16,.0f} {before / per_k:>6.2f}x {naive / per_k:>8.1f}x"
            )
            if tagged and batch_size == BATCH_SIZES[-1]:
                shares = ", ".join(
                    f"{family} {units * 1000 / len(stream):,.0f}"
                    for family, units in sorted(repo.by_dimension.items(), key=lambda kv: -kv[1])
                )
                print(f"           where the tagged units go (per 1,000 events): {shares}")
    print("  (the tagged mix's 'before issue 17' column is its untagged figure: that design had no tag dimensions)")
    return figures


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

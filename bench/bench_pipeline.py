"""Pipeline benchmark: rollup write units per 1,000 events, and items read by a 30-day summary.

    .venv/bin/python -m bench pipeline        (or: .venv/bin/python bench/bench_pipeline.py)

A realistic mix: 50 tenants with Zipf-distributed traffic (s = 1.1), 3 providers, 8 models,
4 operations, a steady 5 events/s, delivered in stream batches of 10, 100 and 1,000 records. The
tagged mix adds two tag keys to every event: `customer`, 200 values per tenant (Zipf, s = 1.1),
and `feature`, 10 values (uniform).

1. Write units. Each batch goes through the real aggregator (`llmtally.aggregate.aggregate_batch`:
   packed items — `llmtally.packing`, quarter and day — coalesced per tenant, marked writes or
   transactions, checkpoints, the cell dictionary) against a recording repository that keeps every
   stored item's state, so each write is priced by DynamoDB's rule: ceil(the larger of the item's
   size before and after / 1 KB) write units, the size being the key (`pk`, `sk`: names and
   values), every attribute's name and number (`number_bytes`), `n`, `expires_at` and the stream
   high-water mark (`MARK_BYTES`), doubled inside TransactWriteItems. The cell dictionary's writes
   (a new cell: the counter's ADD and the cell's claim, 1 unit each) count in the figure.
   Compared, in the same run, with
   - the naive design: every event updates each of its 16 rollup items with its own UpdateItem
     (16 WCU per event, and not even exactly-once);
   - the design before issue 17 (modelled on the same stream): 4 granularities (15 minutes, hour,
     day, month) × 4 dimensions (total, provider, model, operation), every batch's distinct keys
     per tenant in transactions (2 units per item under 1 KB) with each tenant's checkpoint;
   and where the units go, per item kind (base items, each tag key's items, checkpoints, the
   dictionary) and per granularity.
2. Items read. A 30-day summary (UTC and Asia/Kolkata) and a 30-day daily series of one tenant with
   1k, 10k and 100k events in those 30 days, by the real query code (`llmtally.queries`) over the
   same in-memory table read like the repository reads it (one Query per partition and bucket run,
   stored items exploded into the logical ones; `items_read` counts stored items), against the
   seed's design that reads every raw entry. Read units are for eventually consistent Queries: 0.5
   per 4 KB of items read, per Query.
Nothing is asserted; figures print (docs/BENCHMARKS.md, docs/pipeline.md record them).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from llmtally.aggregate import StreamRecord, aggregate_batch
from llmtally.packing import (
    REQUESTS_ATTRIBUTE,
    PackedKey,
    decode,
    encode,
    explode,
    packed_partition,
    partition_of,
    touches,
)
from llmtally.repositories.cell_codes import CELL_SK_PREFIX, DICTIONARY_PK_PREFIX, NEXT_SK
from llmtally.repositories.rollups import (
    CHECKPOINT_PK_PREFIX,
    SEQUENCE_WIDTH,
    CheckpointAdvance,
    MarkedDelta,
    Resolve,
    RollupItem,
    RollupRepository,
    RunItems,
)
from llmtally.rollups import (
    GRANULARITIES,
    BucketRun,
    Counters,
    Granularity,
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


def item_bytes(pk: str, sk: str, attributes: Mapping[str, int], requests: int, expires_at: int) -> int:
    """A stored rollup item's size: its key, every non-zero counter attribute (name + number),
    `n`, `expires_at` and the stream mark."""
    size = len("pk") + len(pk) + len("sk") + len(sk) + len("expires_at") + number_bytes(expires_at) + MARK_BYTES
    size += len(REQUESTS_ATTRIBUTE) + number_bytes(requests)
    return size + sum(len(name) + number_bytes(value) for name, value in attributes.items() if value)


def write_units(size: int, *, transactional: bool) -> int:
    return math.ceil(size / 1024) * (2 if transactional else 1)


def kind_of(key: PackedKey) -> str:
    """The item kind a write is counted under: base items, or one tag key's items."""
    return f"tag {key.tag_key}" if key.tag_key else "base"


@dataclass
class StoredItem:
    attributes: dict[str, int] = field(default_factory=dict)
    requests: int = 0


class RecordingRollups(RollupRepository):
    """The rollups table as state in memory (packed items, cell dictionaries, checkpoints): prices
    every write by DynamoDB's rule and answers checkpoint, dictionary and range reads."""

    def __init__(self) -> None:
        self.ttl_days = 396
        self.table = "bench"
        self.state: dict[PackedKey, StoredItem] = {}
        self.codes: dict[str, dict[str, int]] = {}
        self.marks: dict[tuple[str, str], str] = {}
        self.units = 0
        self.items = 0
        self.transactions = 0
        self.calls = 0
        #: Units per item kind (`kind_of`, "checkpoint", "dictionary"), and per granularity.
        self.by_kind: dict[str, int] = {}
        self.by_granularity: dict[str, int] = {}
        self.queries = 0
        self.read_units = 0.0

    def _count(self, kind: str, units: int) -> None:
        self.units += units
        self.by_kind[kind] = self.by_kind.get(kind, 0) + units

    def checkpoints(self, stream_arn: str, user_ids: Iterable[str]) -> dict[str, str]:
        return {u: self.marks[(stream_arn, u)] for u in user_ids if (stream_arn, u) in self.marks}

    def cell_codes(self, user_id: str, cells: Iterable[str]) -> dict[str, int]:
        """Codes as `llmtally.repositories.cell_codes` assigns them: a new cell costs two writes, the
        counter's ADD (`#next`) and the cell's claim (`c#{cell}`), each a small item (1 unit)."""
        known = self.codes.setdefault(user_id, {})
        for cell in sorted(set(cells) - known.keys()):
            known[cell] = len(known)
            key = len("pk") + len(DICTIONARY_PK_PREFIX + user_id) + len("sk")
            counter = key + len(NEXT_SK) + len("n") + number_bytes(len(known))
            claim = key + len(CELL_SK_PREFIX + cell) + len("code") + number_bytes(len(known) - 1)
            units = write_units(counter, transactional=False) + write_units(claim, transactional=False)
            self._count("dictionary", units)
            self.calls += 2
        return {cell: known[cell] for cell in cells}

    def _write(self, delta: MarkedDelta, *, transactional: bool) -> None:
        key = delta.key
        expires = key.expires_at(self.ttl_days)
        item = self.state.get(key)
        before = item_bytes(key.pk, key.sk, item.attributes, item.requests, expires) if item else 0
        item = self.state.setdefault(key, StoredItem())
        for name, amount in delta.attributes.items():
            item.attributes[name] = item.attributes.get(name, 0) + amount
        item.requests += delta.requests
        after = item_bytes(key.pk, key.sk, item.attributes, item.requests, expires)
        units = write_units(max(before, after), transactional=transactional)
        self._count(kind_of(key), units)
        self.by_granularity[key.granularity.value] = self.by_granularity.get(key.granularity.value, 0) + units

    def _checkpoint(self, advance: CheckpointAdvance, *, transactional: bool) -> None:
        self.marks[(advance.stream_arn, advance.user_id)] = advance.last
        size = len("pk") + len(CHECKPOINT_PK_PREFIX + advance.user_id) + 2 + len(advance.stream_arn) + 60
        self._count("checkpoint", write_units(size, transactional=transactional))

    def commit(
        self,
        deltas: Sequence[MarkedDelta],
        advances: Sequence[CheckpointAdvance],
        extra_items: Sequence[dict[str, Any]] = (),
        stream_arn: str = "",
    ) -> int:
        assert not extra_items  # no budgets in this bench
        for delta in deltas:
            self._write(delta, transactional=True)
        for advance in advances:
            self._checkpoint(advance, transactional=True)
        self.items += len(deltas) + len(advances)
        self.transactions += 1
        self.calls += 1
        return len(deltas) + len(advances)

    def apply_marked(self, writes: Sequence[Sequence[MarkedDelta]], stream_arn: str, resolve: Resolve) -> int:
        calls = 0
        for item_writes in writes:
            for write in item_writes:
                self._write(write, transactional=False)
                calls += 1
        self.items += len(writes)
        self.calls += calls
        return calls

    def advance_checkpoint(self, advance: CheckpointAdvance) -> bool:
        self._checkpoint(advance, transactional=False)
        self.items += 1
        self.calls += 1
        return True

    def load(self, entries: Iterable[Entry]) -> None:
        """Put entries in the table without pricing anything (the reads bench's starting state)."""
        for entry in entries:
            counters = Counters.of(entry)
            touched = list(touches(entry))
            codes = self.cell_codes(entry.user_id, {cell for _, cell in touched})
            for key, cell in touched:
                item = self.state.setdefault(key, StoredItem())
                for name, amount in encode(codes[cell], counters).items():
                    item.attributes[name] = item.attributes.get(name, 0) + amount
                item.requests += counters.requests

    def read_runs(
        self, user_id: str, requests: Sequence[tuple[str, BucketRun]], *, consistent: bool = False
    ) -> RunItems:
        """As the repository reads: one Query per (partition, run), its stored items exploded into
        the logical items of the dimensions asked; `items_read` counts stored items. Read units:
        0.5 per 4 KB of each Query's items (eventually consistent)."""
        wanted: dict[tuple[str, BucketRun], list[str]] = {}
        for dimension, run in requests:
            dimensions = wanted.setdefault((partition_of(dimension), run), [])
            if dimension not in dimensions:
                dimensions.append(dimension)
        cells = {code: cell for cell, code in self.codes.get(user_id, {}).items()}
        out = RunItems()
        for (tag_key, run), dimensions in wanted.items():
            pk = packed_partition(user_id, run.granularity, tag_key)
            found = [(k, i) for k, i in self.state.items() if k.pk == pk and run.sk_low <= k.sk <= run.sk_high]
            self.queries += 1
            size = sum(item_bytes(k.pk, k.sk, i.attributes, i.requests, k.expires_at(self.ttl_days)) for k, i in found)
            self.read_units += 0.5 * max(1, math.ceil(size / 4096))
            out.items_read += len(found)
            for key, item in found:
                counters = decode(item.attributes, cells)
                out.extend(RollupItem(k, c) for k, c in explode(key, counters, dimensions).items())
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
        f"{EVENTS_PER_SECOND} events/s; packed items, {' + '.join(g.value for g in GRANULARITIES)} written; "
        f"naive = 16 UpdateItems per event = {naive:,} WCU)"
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
            kinds = ", ".join(
                f"{kind} {units * 1000 / len(stream):,.0f}"
                for kind, units in sorted(repo.by_kind.items(), key=lambda kv: -kv[1])
            )
            granularities = ", ".join(
                f"{g} {units * 1000 / len(stream):,.0f}" for g, units in sorted(repo.by_granularity.items())
            )
            print(f"{'':>18} by item kind: {kinds}; rollup items by granularity: {granularities}")
    print(
        "  (the tagged mix's 'before issue 17' column is its untagged figure: that design had no tag dimensions;"
        " 'dictionary' is each tenant's first use of a cell, 2 writes, once)"
    )
    return figures


def bench_reads() -> None:
    rng = random.Random(7)
    today = date(2026, 11, 28)
    print("\nitems read by one tenant's 30-day summary and daily series (packed rollups) vs every raw entry (seed)")
    print(
        f"  {'events':>8} {'seed items':>10} {'seed RCU':>9}"
        f" {'summary UTC':>12} {'Kolkata':>8} {'queries':>8} {'RCU':>6} {'series Kolkata':>15} {'RCU':>6} {'ratio':>8}"
    )
    from llmtally.queries import daily_usage, summarize

    for count in SUMMARY_EVENTS:
        start = datetime(2026, 10, 29, tzinfo=UTC)
        entries = events(count, start, 30 * 86400 - 1, rng, tenants=1)
        repo = RecordingRollups()
        repo.load(entries)
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

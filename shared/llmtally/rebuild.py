"""Rebuild (and optionally re-rate) a tenant's rollups for a time range from its raw entries.

The 15-minute items are the ones recomputed: for each UTC day of the range, read the tenant's
quarter items (consistent), then its raw entries, and compute each quarter's figures anew (at the
billed cost, or re-priced with a PriceBook while `billed_cost_nanos` keeps the billed figure).
Each quarter's *difference* (new − old) is ADDed to the quarter and to the hour and day holding
it, in one transaction per group of whole quarters: a quarter's write is conditional on
it still holding what was read, so an aggregation that lands meanwhile cancels the group and the
day is redone. Because every aggregation writes a quarter and its coarser buckets in one
transaction, coarse = Σ quarters holds before, and moving both by the same difference keeps it.

Idempotent: a second run finds old == new and writes nothing. Interrupted runs are safe to repeat.
A partially covered hour or day is corrected by exactly the part inside the range.

Limits (docs/pipeline.md, "Rebuilding"): the range must be 15-minute aligned and lie inside the raw
retention (entries past their TTL are gone and would be subtracted); an event of the range that is
ingested but not yet aggregated while the rebuild runs can be counted twice — run the rebuild again
once the stream has drained and it converges (it always moves the rollups to the raw truth).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict

from llmtally.entries import RawEntry
from llmtally.money import nanos_to_usd
from llmtally.pricing import PriceBook
from llmtally.repositories.rollups import (
    MAX_TRANSACTION_ITEMS,
    CheckpointConflictError,
    ExpectedState,
    RollupItem,
    RollupRepository,
)
from llmtally.rollups import (
    DIMENSIONS,
    GRANULARITIES,
    BucketRun,
    Counters,
    Dimension,
    Granularity,
    InvalidRangeError,
    RollupKey,
    check_aligned,
    dimension_values,
    entry_tags,
    tag_cell_dimension,
    tag_dimension,
)
from llmtally.settings import get_settings

#: Times one day is redone when concurrent aggregation keeps moving its quarters.
MAX_DAY_ATTEMPTS: Final = 5

Progress = Callable[[int, int], None]


class RebuildReport(TypedDict):
    user_id: str
    start: str
    end: str
    repriced: bool
    days: int
    entries: int
    quarters_changed: int
    transactions: int
    cost_usd_before: str
    cost_usd_after: str
    billed_cost_usd: str


@dataclass(slots=True)
class _Totals:
    entries: int = 0
    quarters_changed: int = 0
    transactions: int = 0
    cost_before: int = 0
    cost_after: int = 0
    billed: int = 0


def rebuild_rollups(
    user_id: str,
    start: datetime,
    end: datetime,
    *,
    reprice: bool | PriceBook = False,
    progress: Progress | None = None,
    rollups: RollupRepository | None = None,
    entries: Any | None = None,
    now: datetime | None = None,
    tag_keys: Iterable[str] | None = None,
) -> RebuildReport:
    """Recompute `user_id`'s rollups for [start, end) from raw entries; see the module doc.

    `reprice=True` re-prices every entry with the process's PriceBook (or pass one); the billed
    figure stays in `billed_cost_nanos`. `progress(done_days, total_days)` is called after each
    UTC day. `entries` is a `UsageRepository` (default: from settings). `tag_keys`: the tenant's
    tag keys whose rollups are recomputed too (default: the tag registry's, plus any key an entry
    of the range carries).
    """
    low, high = check_aligned(start, "start"), check_aligned(end, "end")
    if high <= low:
        raise InvalidRangeError("end must be after start")
    settings = get_settings()
    now = now or datetime.now(UTC)
    retained_from = now - timedelta(days=settings.raw_ttl_days)
    if low < retained_from:
        raise InvalidRangeError(
            f"start {low.isoformat()} is outside the raw retention ({settings.raw_ttl_days} days, from "
            f"{retained_from.isoformat()}): expired entries would be subtracted from the rollups"
        )
    book: PriceBook | None
    if isinstance(reprice, PriceBook):
        book = reprice
    elif reprice:
        from llmtally.pricing import default_price_book

        book = default_price_book()
    else:
        book = None
    repo = rollups or RollupRepository()
    if entries is None:
        from llmtally.repositories.usage import UsageRepository

        entries = UsageRepository()

    if tag_keys is None:
        from llmtally.repositories.cardinality import TagRegistry

        tag_keys = TagRegistry().tag_keys(user_id)
    keys = frozenset(tag_keys)
    days = _day_chunks(low, high)
    totals = _Totals()
    for done, (day_low, day_high) in enumerate(days, start=1):
        for attempt in range(MAX_DAY_ATTEMPTS):
            try:
                _rebuild_day(user_id, day_low, day_high, repo, entries, book, totals, keys)
                break
            except CheckpointConflictError:
                if attempt == MAX_DAY_ATTEMPTS - 1:
                    raise
        if progress is not None:
            progress(done, len(days))
    return RebuildReport(
        user_id=user_id,
        start=low.isoformat(),
        end=high.isoformat(),
        repriced=book is not None,
        days=len(days),
        entries=totals.entries,
        quarters_changed=totals.quarters_changed,
        transactions=totals.transactions,
        cost_usd_before=str(nanos_to_usd(totals.cost_before)),
        cost_usd_after=str(nanos_to_usd(totals.cost_after)),
        billed_cost_usd=str(nanos_to_usd(totals.billed)),
    )


def _day_chunks(low: datetime, high: datetime) -> list[tuple[datetime, datetime]]:
    chunks = []
    cursor = low
    while cursor < high:
        next_day = Granularity.DAY.next(Granularity.DAY.floor(cursor))
        chunks.append((cursor, min(next_day, high)))
        cursor = next_day
    return chunks


def quarter_contributions(
    entries: Iterable[RawEntry], user_id: str, book: PriceBook | None = None
) -> dict[RollupKey, Counters]:
    """Each (dimension value, quarter)'s figures from raw entries, re-priced if a book is given."""
    out: dict[RollupKey, Counters] = {}
    for entry in entries:
        if book is None:
            contribution = Counters.of(entry)
        else:
            priced = book.price(
                entry.provider,
                entry.original_model or entry.model,  # a model folded into `(other)` is priced as sent
                entry.tokens(),
                at=entry.timestamp,
                reported_cost_usd=entry.reported_cost_usd,
            )
            contribution = Counters.of(entry, cost_nanos=priced.cost_nanos, cost_source=priced.source.value)
        bucket = Granularity.QUARTER.floor(entry.timestamp)
        for dimension, value in dimension_values(entry):
            out.setdefault(RollupKey(user_id, Granularity.QUARTER, dimension, bucket, value), Counters()).add(
                contribution
            )
    return out


def _rebuild_day(
    user_id: str,
    low: datetime,
    high: datetime,
    repo: RollupRepository,
    entries: Any,
    book: PriceBook | None,
    totals: _Totals,
    tag_keys: frozenset[str] = frozenset(),
) -> None:
    # Quarters first, raw entries second: an entry aggregated in between makes the quarter's
    # conditional write fail (redo); the other order could subtract it for good.
    run = BucketRun(Granularity.QUARTER, low, high)
    dimensions = [str(d) for d in DIMENSIONS]
    for tag_key in sorted(tag_keys):
        dimensions += [tag_dimension(tag_key), tag_cell_dimension(tag_key)]
    old_items: list[RollupItem] = repo.read_runs(user_id, [(d, run) for d in dimensions], consistent=True)
    old = {item.key: item.counters for item in old_items}
    day_entries = list(entries.iter_entries(user_id, low, high))
    unknown = {tag_key for entry in day_entries for tag_key in entry_tags(entry)} - set(tag_keys)
    if unknown:  # a key the registry does not list yet (a test's, or a registry reset): read it too
        extra = [d for tag_key in sorted(unknown) for d in (tag_dimension(tag_key), tag_cell_dimension(tag_key))]
        for item in repo.read_runs(user_id, [(d, run) for d in extra], consistent=True):
            old[item.key] = item.counters
    new = quarter_contributions(day_entries, user_id, book)

    groups: dict[tuple[str, str, datetime], list[tuple[RollupKey, Counters, ExpectedState]]] = {}
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key, Counters())
        delta = after.minus(before or Counters())
        if delta.is_zero():
            continue
        expected = ExpectedState(
            requests=before.requests if before else 0,
            cost_nanos=before.cost_nanos if before else 0,
            exists=before is not None,
        )
        hour = Granularity.HOUR.floor(key.bucket)
        groups.setdefault((key.dimension, key.value, hour), []).append((key, delta, expected))

    committed = _Totals()
    pending: dict[RollupKey, dict[str, Any]] = {}
    coarse: dict[RollupKey, Counters] = {}

    def flush() -> None:
        if not pending and not coarse:
            return
        items = list(pending.values()) + [repo.delta(key, delta) for key, delta in coarse.items()]
        repo.transact(items)
        committed.transactions += 1
        committed.quarters_changed += len(pending)
        pending.clear()
        coarse.clear()

    for (dimension, value, hour), quarters in groups.items():
        group_delta = Counters()
        for _, delta, _ in quarters:
            group_delta.add(delta)
        coarse_keys = [RollupKey(user_id, size, dimension, size.floor(hour), value) for size in GRANULARITIES[1:]]
        new_items = len(quarters) + sum(1 for key in coarse_keys if key not in coarse)
        if len(pending) + len(coarse) + new_items > MAX_TRANSACTION_ITEMS:
            flush()
        for key, delta, expected in quarters:
            pending[key] = repo.conditional_delta(key, delta, expected)
        for key in coarse_keys:
            coarse.setdefault(key, Counters()).add(group_delta)
    flush()

    totals.entries += len(day_entries)
    totals.transactions += committed.transactions
    totals.quarters_changed += committed.quarters_changed
    for key, counters in old.items():
        if key.dimension == Dimension.TOTAL:
            totals.cost_before += counters.cost_nanos
    for key, counters in new.items():
        if key.dimension == Dimension.TOTAL:
            totals.cost_after += counters.cost_nanos
            totals.billed += counters.billed_cost_nanos


__all__ = ["RebuildReport", "quarter_contributions", "rebuild_rollups"]

"""Rebuild (and optionally re-rate) a tenant's rollups for a time range from its raw entries.

The 15-minute stored items are the ones recomputed (`llmtally.packing`: a base item per quarter
holding every cell, a tag item per (tag key, value, quarter)). For each UTC day of the range: read
the tenant's quarter items of the base partition and of every tag key (consistent), then its raw
entries, and compute each quarter item's cells anew (at the billed cost, or re-priced with a
PriceBook while `billed_cost_nanos` keeps the billed figure). Each quarter item's *difference*
(new − old, per cell, and its request count `n`) is ADDed to the quarter item and to the day item
holding it, in one transaction per group of quarter items and their day items (≤ 100 items): a
quarter item's write is conditional on its `n` still being what was read (every aggregation that
touches an item moves its `n`), so an aggregation that lands meanwhile cancels the group and the
day is redone. The aggregator adds the same records to a quarter and its day, so day = Σ quarters
once a batch is done, and moving both by the same difference keeps it; hours are composed from
quarters when read.

Idempotent: a second run finds old == new and writes nothing. Interrupted runs are safe to repeat.
A partially covered day is corrected by exactly the part inside the range.

Limits (docs/pipeline.md, "Rebuilding"): the range must be 15-minute aligned and lie inside the raw
retention (entries past their TTL are gone and would be subtracted); an event of the range that is
ingested but not yet aggregated while the rebuild runs can be counted twice — run the rebuild again
once the stream has drained and it converges (it always moves the rollups to the raw truth). On a
deployment that still holds the layout before the packed one, run `llmtally migrate-rollups` first
(docs/pipeline.md, "Migration"): a rebuild of a period not yet migrated would be undone by it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict

from llmtally.entries import RawEntry
from llmtally.money import nanos_to_usd
from llmtally.packing import Attributes, PackedKey, encode, touches
from llmtally.pricing import PriceBook
from llmtally.repositories.rollups import (
    MAX_ATTRIBUTES_PER_WRITE,
    MAX_TRANSACTION_ITEMS,
    CheckpointConflictError,
    ExpectedState,
    PackedItem,
    RollupRepository,
)
from llmtally.rollups import (
    BucketRun,
    Counters,
    Granularity,
    InvalidRangeError,
    RollupKey,
    check_aligned,
    dimension_values,
    entry_tags,
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


def _contribution(entry: RawEntry, book: PriceBook | None) -> Counters:
    """One entry's counters, re-priced if a book is given (the billed figure kept)."""
    if book is None:
        return Counters.of(entry)
    priced = book.price(
        entry.provider,
        entry.original_model or entry.model,  # a model folded into `(other)` is priced as sent
        entry.tokens(),
        at=entry.timestamp,
        reported_cost_usd=entry.reported_cost_usd,
    )
    return Counters.of(entry, cost_nanos=priced.cost_nanos, cost_source=priced.source.value)


def quarter_contributions(
    entries: Iterable[RawEntry], user_id: str, book: PriceBook | None = None
) -> dict[RollupKey, Counters]:
    """Each logical (dimension value, quarter)'s figures from raw entries, re-priced if a book is
    given (what a rebuild's quarters hold afterwards, as `llmtally.rollups.coalesce` keys)."""
    out: dict[RollupKey, Counters] = {}
    for entry in entries:
        contribution = _contribution(entry, book)
        bucket = Granularity.QUARTER.floor(entry.timestamp)
        for dimension, value in dimension_values(entry):
            out.setdefault(RollupKey(user_id, Granularity.QUARTER, dimension, bucket, value), Counters()).add(
                contribution
            )
    return out


def packed_quarters(entries: Iterable[RawEntry], book: PriceBook | None = None) -> dict[PackedKey, dict[str, Counters]]:
    """Each stored quarter item's cells from raw entries, re-priced if a book is given."""
    out: dict[PackedKey, dict[str, Counters]] = {}
    for entry in entries:
        contribution = _contribution(entry, book)
        for key, cell in touches(entry, (Granularity.QUARTER,)):
            out.setdefault(key, {}).setdefault(cell, Counters()).add(contribution)
    return out


@dataclass(slots=True)
class _Piece:
    """One conditional write of a quarter item's difference (a difference with more attributes
    than one UpdateItem carries is cut into pieces, written in consecutive transactions)."""

    key: PackedKey
    attributes: Attributes
    requests: int
    expected: ExpectedState


def _read_day(
    user_id: str, run: BucketRun, repo: RollupRepository, entries: Any, tag_keys: frozenset[str]
) -> tuple[dict[PackedKey, PackedItem], list[RawEntry]]:
    """The day's quarter items (consistent), then its raw entries. Quarter items first: an entry
    aggregated in between makes its quarter's conditional write fail (redo); the other order could
    subtract it for good. An entry with a tag key not read yet (one the registry does not list: a
    test's, or a registry reset) makes the reads start over with that key."""
    keys = set(tag_keys)
    while True:
        old: dict[PackedKey, PackedItem] = {}
        for tag_key in ["", *sorted(keys)]:
            for item in repo.query_packed(user_id, tag_key, run, consistent=True):
                old[item.key] = item
        day_entries = list(entries.iter_entries(user_id, run.first, run.end))
        unknown = {tag_key for entry in day_entries for tag_key in entry_tags(entry)} - keys
        if not unknown:
            return old, day_entries
        keys |= unknown


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
    old, day_entries = _read_day(user_id, BucketRun(Granularity.QUARTER, low, high), repo, entries, tag_keys)
    new = packed_quarters(day_entries, book)

    differences: dict[PackedKey, tuple[dict[str, Counters], int]] = {}
    for key in sorted(set(old) | set(new)):
        before = old[key].cells if key in old else {}
        after = new.get(key, {})
        cells = {}
        for cell in sorted(before.keys() | after.keys()):
            delta = after.get(cell, Counters()).minus(before.get(cell, Counters()))
            if not delta.is_zero():
                cells[cell] = delta
        requests = sum(c.requests for c in after.values()) - (old[key].requests if key in old else 0)
        if cells or requests:
            differences[key] = (cells, requests)
    codes = repo.cell_codes(user_id, {cell for cells, _ in differences.values() for cell in cells})

    pieces: list[_Piece] = []
    for key, (cells, requests) in differences.items():
        attributes: Attributes = {}
        for cell, delta in cells.items():
            attributes.update(encode(codes[cell], delta))
        n = old[key].requests if key in old else 0
        expected = ExpectedState(requests=n, exists=key in old)
        names = sorted(attributes)
        for index in range(0, max(len(names), 1), MAX_ATTRIBUTES_PER_WRITE):
            part = {name: attributes[name] for name in names[index : index + MAX_ATTRIBUTES_PER_WRITE]}
            pieces.append(_Piece(key, part, requests, expected))
            # the next piece follows this one: the item exists and holds the whole request difference
            n, requests, expected = n + requests, 0, ExpectedState(requests=n + requests, exists=True)

    committed = _Totals()
    pending: dict[PackedKey, _Piece] = {}
    days: dict[PackedKey, tuple[Attributes, int]] = {}

    def flush() -> None:
        if not pending:
            return
        items = [repo.conditional_delta(p.key, p.attributes, p.requests, p.expected) for p in pending.values()]
        items += [repo.delta(key, attributes, requests) for key, (attributes, requests) in days.items()]
        repo.transact(items)
        committed.transactions += 1
        pending.clear()
        days.clear()

    for piece in pieces:
        day = PackedKey(
            user_id, Granularity.DAY, piece.key.tag_key, Granularity.DAY.floor(piece.key.bucket), piece.key.tag_value
        )
        merged = dict(days[day][0]) if day in days else {}
        for name, amount in piece.attributes.items():
            merged[name] = merged.get(name, 0) + amount
        grows = 1 + (day not in days)
        if (
            piece.key in pending
            or len(pending) + len(days) + grows > MAX_TRANSACTION_ITEMS
            or (len(merged) > MAX_ATTRIBUTES_PER_WRITE)
        ):
            flush()
            merged = dict(piece.attributes)
        pending[piece.key] = piece
        days[day] = (merged, (days[day][1] if day in days else 0) + piece.requests)
    flush()

    totals.entries += len(day_entries)
    totals.transactions += committed.transactions
    totals.quarters_changed += len(differences)
    for key, item in old.items():
        if not key.tag_key:
            totals.cost_before += sum(c.cost_nanos for c in item.cells.values())
    for key, cells in new.items():
        if not key.tag_key:
            totals.cost_after += sum(c.cost_nanos for c in cells.values())
            totals.billed += sum(c.billed_cost_nanos for c in cells.values())


__all__ = ["RebuildReport", "packed_quarters", "quarter_contributions", "rebuild_rollups"]

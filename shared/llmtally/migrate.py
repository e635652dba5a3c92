"""Move a deployment's rollups from the layout before the packed one to the packed layout, exactly once.

The old layout (`llmtally.repositories.legacy_rollups`) stored one item per logical rollup key. Its
leaves are what the packed layout stores (`llmtally.packing`): the `cell` items at 15m and 1d become
the cells of the base items, the `tagcell:{key}` items at 15m and 1d the cells of the tag items.
Every other old item (total, provider, model, operation, `tag:{key}`, and any hour or month item)
is a sum of those and is not moved; they can all be deleted once the migration is done (or left to
their TTL: nothing reads `R#…` any more).

Exactly once, safe to interrupt and repeat: old items are moved in transactions of at most
`GROUP_ITEMS`, each holding, per old item, `SET migrated = true` conditional on it not being
migrated yet (and still holding the requests it was read with), and per packed item one ADD of the
sum of the group's old items that land in it. An old item's counters are added exactly when its mark
is set. A run skips the items already marked; a transaction cancelled by a condition (another run
moved an item meanwhile) or a conflicting write is retried after re-reading its items, without
those already marked. A transaction whose answer was lost either landed (its items are marked: the
rerun skips them) or did not (the rerun moves them). Packed items keep receiving the aggregator's
writes meanwhile: ADDs commute. Stream marks (`hw_…`) and the packed items' `n` keep their meaning:
`n` moves by the requests moved, so a rebuild reading a packed item meanwhile is redone.

The report checks every moved bucket: the old cells of a bucket must add up to its old `total` item
(the tag's cells to its `tag:{key}` items). A bucket that does not (an old deployment whose cells
were never rebuilt after the tag layout) is listed; `llmtally rebuild` over those days restores it
from the raw entries while they are retained. Docs: docs/pipeline.md, "Migration".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypedDict

from llmtally.money import nanos_to_usd
from llmtally.packing import Attributes, PackedKey, encode
from llmtally.repositories.legacy_rollups import LegacyItem, LegacyRollupRepository, TransactionCancelledError
from llmtally.repositories.rollups import MAX_ATTRIBUTES_PER_WRITE, RollupRepository
from llmtally.rollups import (
    ROLLUP_PK_PREFIX,
    TAG_CELL_PREFIX,
    Counters,
    Dimension,
    Granularity,
    cell_value,
    format_bucket,
    partition_key,
    split_tag_cell_value,
    tag_cell_dimension,
    tag_dimension,
)

#: Old items per transaction: each is one transaction item, and the packed items they land in at
#: most as many more (DynamoDB's limit is 100).
GROUP_ITEMS: Final = 50
#: The granularities whose old leaves are moved (hours and months are composed when read).
MIGRATED_GRANULARITIES: Final = (Granularity.QUARTER, Granularity.DAY)
#: Times a cancelled transaction is re-read and tried again before the run stops (rerun it).
MAX_GROUP_ATTEMPTS: Final = 8


class MigrationReport(TypedDict):
    user_id: str
    tag_keys: list[str]
    partitions: int
    items_read: int
    items_migrated: int
    items_already_migrated: int
    transactions: int
    retries: int
    #: Σ cost of the old base quarter items (moved now or before): what the packed quarters gained.
    cost_usd_quarters: str
    #: "{granularity} {bucket} {dimension}[ {value}]" whose old cells do not add up to their total.
    unmatched: list[str]


@dataclass(slots=True)
class _Move:
    """One old item and where it goes."""

    old: LegacyItem
    target: PackedKey
    cell: str


def _target(item: LegacyItem) -> tuple[PackedKey, str]:
    key = item.key
    if key.dimension == Dimension.CELL:
        return PackedKey(key.user_id, key.granularity, "", key.bucket), key.value
    provider, model, operation, tag_value = split_tag_cell_value(key.value)
    tag_key = key.dimension.removeprefix(TAG_CELL_PREFIX)
    return PackedKey(key.user_id, key.granularity, tag_key, key.bucket, tag_value), cell_value(
        provider, model, operation
    )


def migrate_tenant(
    user_id: str,
    tag_keys: Iterable[str] = (),
    repository: LegacyRollupRepository | None = None,
    *,
    rollups: RollupRepository | None = None,
    registry_keys: bool = True,
) -> MigrationReport:
    """Move one tenant's old `cell` and `tagcell:{key}` items (15m and 1d) into packed items; see the
    module doc. The tag keys are the tag registry's (unless `registry_keys=False`) plus `tag_keys`."""
    legacy = repository or LegacyRollupRepository()
    packed = rollups or RollupRepository()
    keys = set(tag_keys)
    if registry_keys:
        from llmtally.repositories.cardinality import TagRegistry

        keys |= TagRegistry().tag_keys(user_id)
    report = MigrationReport(
        user_id=user_id,
        tag_keys=sorted(keys),
        partitions=0,
        items_read=0,
        items_migrated=0,
        items_already_migrated=0,
        transactions=0,
        retries=0,
        cost_usd_quarters="0",
        unmatched=[],
    )
    cost_quarters = 0
    for granularity in MIGRATED_GRANULARITIES:
        for tag_key in ["", *sorted(keys)]:
            dimension = tag_cell_dimension(tag_key) if tag_key else str(Dimension.CELL)
            items = legacy.query(partition_key(user_id, granularity, dimension))
            report["partitions"] += 1
            report["items_read"] += len(items)
            if granularity is Granularity.QUARTER and not tag_key:
                cost_quarters += sum(item.item.counters.cost_nanos for item in items)
            report["unmatched"] += _unmatched(legacy, user_id, granularity, tag_key, items)
            done = [item for item in items if item.migrated]
            report["items_already_migrated"] += len(done)
            todo = [item for item in items if not item.migrated and not item.item.counters.is_zero()]
            if not todo:
                continue
            codes = packed.cell_codes(user_id, {_target(item)[1] for item in todo})
            for group in _groups(todo, codes):
                _move_group(group, legacy, packed, codes, report)
    report["cost_usd_quarters"] = str(nanos_to_usd(cost_quarters))
    return report


def _groups(items: Sequence[LegacyItem], codes: dict[str, int]) -> list[list[LegacyItem]]:
    """Consecutive old items (sort-key order: a bucket's cells together) in groups of at most
    GROUP_ITEMS whose sums per packed item stay within one UpdateItem's attributes."""
    groups: list[list[LegacyItem]] = []
    current: list[LegacyItem] = []
    names: dict[PackedKey, set[str]] = {}
    for item in sorted(items, key=lambda i: i.key.sk):
        target, cell = _target(item)
        own = encode(codes[cell], item.item.counters).keys()
        if current and (len(current) >= GROUP_ITEMS or len(names.get(target, set()) | own) > MAX_ATTRIBUTES_PER_WRITE):
            groups.append(current)
            current, names = [], {}
        current.append(item)
        names.setdefault(target, set()).update(own)
    if current:
        groups.append(current)
    return groups


def _move_group(
    group: list[LegacyItem],
    legacy: LegacyRollupRepository,
    packed: RollupRepository,
    codes: dict[str, int],
    report: MigrationReport,
) -> None:
    for attempt in range(MAX_GROUP_ATTEMPTS):
        if attempt:
            # Re-read: drop what another run moved meanwhile, take what changed as it is now.
            time.sleep(min(0.05 * 2**attempt, 1.0))
            fresh = legacy.get([item.key for item in group])
            report["items_already_migrated"] += sum(1 for i in group if i.key in fresh and fresh[i.key].migrated)
            group = [
                fresh[i.key]
                for i in group
                if i.key in fresh and not fresh[i.key].migrated and not fresh[i.key].item.counters.is_zero()
            ]
            if not group:
                return
        sums: dict[PackedKey, tuple[Attributes, int]] = {}
        for item in group:
            target, cell = _target(item)
            attributes, requests = sums.get(target, ({}, 0))
            for name, amount in encode(codes[cell], item.item.counters).items():
                attributes[name] = attributes.get(name, 0) + amount
            sums[target] = (attributes, requests + item.item.counters.requests)
        transaction = [legacy.mark_update(item) for item in group]
        transaction += [packed.delta(key, attributes, requests) for key, (attributes, requests) in sums.items()]
        try:
            legacy.transact(transaction)
        except TransactionCancelledError:
            report["retries"] += 1
            if attempt == MAX_GROUP_ATTEMPTS - 1:
                raise
            continue
        report["transactions"] += 1
        report["items_migrated"] += len(group)
        return


def _unmatched(
    legacy: LegacyRollupRepository, user_id: str, granularity: Granularity, tag_key: str, cells: Sequence[LegacyItem]
) -> list[str]:
    """The buckets (and tag values) whose old cells do not add up to the old total / `tag:{key}` item."""
    sums: dict[tuple[str, str], Counters] = {}
    for item in cells:
        value = _target(item)[0].tag_value
        sums.setdefault((format_bucket(item.key.bucket), value), Counters()).add(item.item.counters)
    dimension = tag_dimension(tag_key) if tag_key else str(Dimension.TOTAL)
    totals: dict[tuple[str, str], Counters] = {}
    for item in legacy.query(partition_key(user_id, granularity, dimension)):
        value = item.key.value if tag_key else ""
        totals[(format_bucket(item.key.bucket), value)] = item.item.counters
    out = []
    for bucket, value in sorted(sums.keys() | totals.keys()):
        if sums.get((bucket, value), Counters()) != totals.get((bucket, value), Counters()):
            out.append(" ".join(part for part in (granularity.value, bucket, dimension, value) if part))
    return out


def tenants(repository: LegacyRollupRepository | None = None) -> dict[str, set[str]]:
    """Every tenant of the table (old rollups or a checkpoint), with the tag keys its old items name."""
    legacy = repository or LegacyRollupRepository()
    out: dict[str, set[str]] = {}
    for pk in legacy.partitions():
        if pk.startswith(ROLLUP_PK_PREFIX):
            _, user_id, _, dimension = pk.split("#", 3)
            keys = out.setdefault(user_id, set())
            if dimension.startswith(TAG_CELL_PREFIX):
                keys.add(dimension.removeprefix(TAG_CELL_PREFIX))
        else:
            out.setdefault(pk.split("#", 1)[1], set())
    return out


def migrate_all(
    repository: LegacyRollupRepository | None = None,
    *,
    rollups: RollupRepository | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[MigrationReport]:
    """`migrate_tenant` for every tenant of `tenants`, with the tag keys found on its old items too."""
    legacy = repository or LegacyRollupRepository()
    found = tenants(legacy)
    reports = []
    for done, (user_id, keys) in enumerate(sorted(found.items()), start=1):
        reports.append(migrate_tenant(user_id, keys, legacy, rollups=rollups))
        if progress is not None:
            progress(done, len(found))
    return reports


__all__ = ["MigrationReport", "migrate_all", "migrate_tenant", "tenants"]

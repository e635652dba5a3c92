"""The packed rollup layout: how the logical rollups of `llmtally.rollups` are stored (pure, no I/O).

Logically a tenant's rollups are items per (granularity, dimension, bucket, value) — total,
provider, model, operation, cell, `tag:{key}` and `tagcell:{key}` — and that is what queries read
and what the invariant compares (`llmtally.rollups.coalesce`). Physically only the *leaves* are
stored, packed (docs/pipeline.md, "Write cost"):

- one **base item** per (tenant, granularity, bucket) holding the counters of every cell
  (provider × model × operation) that had calls in the bucket: the total, provider, model,
  operation and cell rollups are sums of its cells at read time;
- one **tag item** per (tenant, granularity, tag key, bucket, tag value) holding that value's
  cells: `tag:{key}` and `tagcell:{key}` are sums of them.

An attribute of a packed item is named `{cell code}{counter letter}`: the cell code is the tenant's
ordinal for the cell (`llmtally.repositories.cell_codes`, assigned once, never reused), the counter
letter is fixed per counter (`COUNTER_LETTERS`). So a batch touches one item per bucket for the base
rollups and one per tag value, whatever the number of cells, and an item's size grows with its
cells, not with the length of their names. `billed_cost_nanos` is stored as its difference from
`cost_nanos` (zero, hence absent, until a rebuild re-rates). `n` is the item's request count, which
every write that adds a call moves (a rebuild's writes are conditional on it).

Keys:

    base: pk = P#{user}#{granularity}            sk = {bucket}#
    tag:  pk = P#{user}#{granularity}#{tag key}  sk = {bucket}#{tag value}

The bucket is fixed width, so a run of consecutive buckets is one sort-key range, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from llmtally.rollups import (
    COUNTER_FIELDS,
    GRANULARITIES,
    TAG_CELL_PREFIX,
    TAG_PREFIX,
    TOTAL_VALUE,
    Counters,
    Dimension,
    Granularity,
    RollupKey,
    RollupSource,
    bucket_expiry,
    cell_value,
    entry_tags,
    format_bucket,
    model_value,
    parse_bucket,
    split_cell_value,
    tag_cell_dimension,
    tag_cell_value,
    tag_dimension,
)

PACKED_PK_PREFIX: Final = "P#"
#: The item-level request count (`n`): moved by every write that adds calls.
REQUESTS_ATTRIBUTE: Final = "n"
#: Fixed per counter; never reuse a letter (stored items are named with them).
COUNTER_LETTERS: Final[Mapping[str, str]] = {
    "requests": "a",
    "errors": "b",
    "unpriced_requests": "c",
    "input_tokens": "d",
    "cache_read_tokens": "e",
    "cache_write_tokens": "f",
    "cache_write_5m_tokens": "g",
    "cache_write_1h_tokens": "h",
    "output_tokens": "i",
    "reasoning_tokens": "j",
    "total_tokens": "k",
    "cost_nanos": "l",
    "billed_cost_nanos": "m",  # stored as billed − cost
    "latency_ms_sum": "n",
    "cache_hits": "o",
    "saved_nanos": "p",
    "usage_missing": "q",
}
_FIELD_OF_LETTER: Final = {letter: name for name, letter in COUNTER_LETTERS.items()}
_LETTERS: Final = tuple(_FIELD_OF_LETTER)
assert set(COUNTER_LETTERS) == set(COUNTER_FIELDS), "every counter needs a letter"

#: A packed item's attributes: `{code}{letter}` → integer.
Attributes = dict[str, int]


@dataclass(frozen=True, slots=True, order=True)
class PackedKey:
    """One stored item: a tenant's base cells (`tag_key == ""`) or one tag value's cells, for a bucket."""

    user_id: str
    granularity: Granularity
    tag_key: str
    bucket: datetime
    tag_value: str = ""

    @property
    def pk(self) -> str:
        return packed_partition(self.user_id, self.granularity, self.tag_key)

    @property
    def sk(self) -> str:
        # Always `{bucket}#…` (a base item's value is empty): it sorts after the bare bucket string,
        # which is what makes `BETWEEN first AND end` exclude the end bucket (`BucketRun.sk_high`).
        return f"{format_bucket(self.bucket)}#{self.tag_value}"

    def expires_at(self, ttl_days: int) -> int:
        return bucket_expiry(self.granularity, self.bucket, ttl_days)

    @classmethod
    def parse(cls, pk: str, sk: str) -> PackedKey:
        parts = pk.split("#", 3)
        user_id, granularity = parts[1], Granularity(parts[2])
        tag_key = parts[3] if len(parts) > 3 else ""
        bucket, value = sk.split("#", 1)
        return cls(user_id, granularity, tag_key, parse_bucket(bucket), value)


def packed_partition(user_id: str, granularity: Granularity, tag_key: str = "") -> str:
    base = f"{PACKED_PK_PREFIX}{user_id}#{granularity.value}"
    return f"{base}#{tag_key}" if tag_key else base


def partition_of(dimension: str) -> str:
    """The tag key whose items hold a logical dimension ("" for the base dimensions)."""
    if dimension.startswith(TAG_PREFIX):
        return dimension.removeprefix(TAG_PREFIX)
    if dimension.startswith(TAG_CELL_PREFIX):
        return dimension.removeprefix(TAG_CELL_PREFIX)
    Dimension(dimension)  # a ValueError for anything else
    return ""


# -- writes -----------------------------------------------------------------------------------


def touches(
    entry: RollupSource, granularities: Iterable[Granularity] = GRANULARITIES
) -> Iterator[tuple[PackedKey, str]]:
    """Every stored item one raw entry counts in, with the cell it counts under there."""
    cell = cell_value(str(entry.provider), entry.model, entry.operation_type)
    tags = sorted(entry_tags(entry).items())
    for granularity in granularities:
        bucket = granularity.floor(entry.timestamp)
        yield PackedKey(entry.user_id, granularity, "", bucket), cell
        for key, value in tags:
            yield PackedKey(entry.user_id, granularity, key, bucket, value), cell


def encode(code: int, counters: Counters) -> Attributes:
    """One cell's counters as packed attributes (non-zero ones only; billed as its difference)."""
    out: Attributes = {}
    for name, amount in counters.as_dict().items():
        if name == "billed_cost_nanos":
            amount -= counters.cost_nanos
        if amount:
            out[f"{code}{COUNTER_LETTERS[name]}"] = amount
    return out


def decode(attributes: Mapping[str, str | int], cells: Mapping[int, str]) -> dict[str, Counters]:
    """A packed item's attributes → each cell's counters. `cells` maps codes to cells; a code it
    lacks raises KeyError (the caller re-reads the dictionary: codes are written before use)."""
    raw: dict[int, dict[str, int]] = {}
    for name, value in attributes.items():
        if not name or not name[0].isdigit():
            continue
        code, letter = int(name[:-1]), name[-1]
        field = _FIELD_OF_LETTER.get(letter)
        if field is None:
            continue
        raw.setdefault(code, {})[field] = int(value)
    out: dict[str, Counters] = {}
    for code, values in raw.items():
        counters = Counters(**values)
        counters.billed_cost_nanos += counters.cost_nanos
        out[cells[code]] = counters
    return out


def sum_cells(attributes: Mapping[str, Any]) -> Counters:
    """The sum of every cell of a packed item, without the dictionary: what the total dimension (a
    base item) and the `tag:{key}` dimension (a tag item) read — the daily series, the summary's
    total, a breakdown by tag. One pass over the attributes, numbers as stored (`"12"`) or in
    DynamoDB's JSON (`{"N": "12"}`)."""
    sums = dict.fromkeys(_LETTERS, 0)
    for name, value in attributes.items():
        letter = name[-1]
        if letter in sums and name[0].isdigit():
            sums[letter] += int(value["N"] if isinstance(value, dict) else value)
    counters = Counters(**{_FIELD_OF_LETTER[letter]: amount for letter, amount in sums.items()})
    counters.billed_cost_nanos += counters.cost_nanos
    return counters


def whole_item_dimension(tag_key: str) -> str:
    """The dimension whose only value in an item is the item itself (the sum of its cells)."""
    return tag_dimension(tag_key) if tag_key else Dimension.TOTAL.value


def codes_in(attributes: Iterable[str]) -> set[int]:
    return {int(name[:-1]) for name in attributes if name and name[0].isdigit() and name[-1] in _FIELD_OF_LETTER}


# -- reads: the logical items a stored item stands for ------------------------------------------


def explode(key: PackedKey, cells: Mapping[str, Counters], dimensions: Iterable[str]) -> dict[RollupKey, Counters]:
    """The logical rollup items of `dimensions` that a stored item holds (sums of its cells)."""
    out: dict[RollupKey, Counters] = {}
    parts = {cell: split_cell_value(cell) for cell in cells}
    for dimension in dimensions:
        value_of = _value_of(dimension, key)
        for cell, counters in cells.items():
            logical = RollupKey(key.user_id, key.granularity, dimension, key.bucket, value_of(cell, parts[cell]))
            found = out.get(logical)
            if found is None:
                out[logical] = Counters(**counters.as_dict())
            else:
                found.add(counters)
    return out


def _value_of(dimension: str, key: PackedKey) -> Callable[[str, tuple[str, str, str]], str]:
    """How a dimension's value is made of a cell (and the item's tag value)."""
    if key.tag_key:
        if dimension == tag_dimension(key.tag_key):
            return lambda cell, parts: key.tag_value
        return lambda cell, parts: tag_cell_value(*parts, key.tag_value)
    if dimension == Dimension.TOTAL:
        return lambda cell, parts: TOTAL_VALUE
    if dimension == Dimension.PROVIDER:
        return lambda cell, parts: parts[0]
    if dimension == Dimension.MODEL:
        return lambda cell, parts: model_value(parts[0], parts[1])
    if dimension == Dimension.OPERATION:
        return lambda cell, parts: parts[2]
    return lambda cell, parts: cell


def dimensions_of(tag_key: str) -> tuple[str, ...]:
    """Every logical dimension a partition's items hold."""
    if tag_key:
        return (tag_dimension(tag_key), tag_cell_dimension(tag_key))
    return tuple(str(d) for d in Dimension)

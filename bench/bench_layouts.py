"""Rollup layouts compared: write units per 1,000 events of the layout in use and of its alternatives.

    .venv/bin/python -m bench layouts        (or: .venv/bin/python bench/bench_layouts.py)

Issue 17 asks for the tagged mix at ≤ 2,500 rollup write units per 1,000 events (batch 1,000) and for
docs/pipeline.md to record the measured alternatives. `bench pipeline` measures the layout in use
through the real aggregator; this module models the alternatives on the same stream
(`bench.bench_pipeline.events`: 50 tenants Zipf s=1.1, 3 providers, 8 models, 4 operations,
5 events/s; tagged: `customer` 200 values Zipf, `feature` 10 values) over four hours, so that an
hourly compaction reaches its steady state, and prices every write by DynamoDB's rule: ceil(the
larger of the item's size before and after / 1 KB), the size being the key, every attribute's name
and number (`number_bytes`), `expires_at` and, for a marked write, the stream high-water mark.

The layouts (each a function of the event to the items it touches and the attribute names its
counters take there):

- `in use`: one item per (granularity, dimension, value) — total, provider, model, operation,
  cell, and per tag key `tag:` and `tagcell:` — with the counters' own names; quarter, hour and day.
  Its row calibrates the model against `bench pipeline`'s figure from the real aggregator.
- `packed`: one item per (tenant, granularity, bucket) holding every cell's counters (total,
  provider, model and operation are sums of cells at read time), and per tag key one item per
  (bucket, tag value) holding that value's cells. Attribute names are a per-tenant cell code
  (an ordinal: `c0`, `c1`, … — a dictionary item per tenant would hold it) and a one-letter counter
  code; `packed, full names` spells both out, to show why the dictionary matters.
- `+ compaction`: only quarters are written on the hot path for the layers named; a scheduled job
  folds each hour whose quarters changed since its last run into the hour's and the day's items
  (each written only if it changed, whole, priced by size, no mark). Its units are counted here
  with the hot path's.

Nothing is asserted; the figures print (docs/pipeline.md records them).
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bench.bench_pipeline import MARK_BYTES, Entry, events, number_bytes
from llmtally.rollups import COUNTER_FIELDS, Counters, Granularity

QUARTER, HOUR, DAY = Granularity.QUARTER, Granularity.HOUR, Granularity.DAY
EVENTS_PER_SECOND = 5
HOURS = 4
BATCH = 1_000
#: `pk` + `sk` names and typical values (`R#tenant-07#15m#tag:customer`, `2026-11-02T09:15#cust-012`),
#: and `expires_at` with its number.
KEY_BYTES = 2 + 32 + 2 + 26 + len("expires_at") + number_bytes(2_000_000_000)
#: A compacted item's version (the quarters' state it was folded from), instead of a stream mark.
VERSION_BYTES = len("v") + number_bytes(10**12)
COUNTER_CODES = {name: chr(ord("a") + index) for index, name in enumerate(COUNTER_FIELDS)}

#: (layer, item identity within the tenant and bucket, attribute prefix) for one event.
Touch = tuple[str, str, str]
Attributes = dict[str, int]
#: (tenant, item identity, UTC hour) whose quarters changed since the last compaction.
Dirty = set[tuple[str, str, datetime]]


@dataclass(frozen=True)
class Layout:
    name: str
    touches: Callable[[Entry, dict[str, str]], Iterable[Touch]]
    #: Granularities written on the hot path, per layer ("base" or "tag").
    hot: dict[str, tuple[Granularity, ...]]
    #: Granularities a compaction folds from quarters, per layer.
    compacted: dict[str, tuple[Granularity, ...]]
    full_names: bool = False


def _cell(entry: Entry) -> str:
    return f"{entry.provider}#{entry.model}#{entry.operation_type}"


def in_use(entry: Entry, codes: dict[str, str]) -> Iterable[Touch]:
    cell = _cell(entry)
    yield ("base", "total", "")
    yield ("base", f"provider={entry.provider}", "")
    yield ("base", f"model={entry.provider}#{entry.model}", "")
    yield ("base", f"operation={entry.operation_type}", "")
    yield ("base", f"cell={cell}", "")
    for key, value in entry.tags.items():
        yield ("tag", f"tag:{key}={value}", "")
        yield ("tag", f"tagcell:{key}={cell}#{value}", "")


def packed(entry: Entry, codes: dict[str, str]) -> Iterable[Touch]:
    cell = _cell(entry)
    code = codes.setdefault(cell, f"c{len(codes)}")
    yield ("base", "cells", code)
    for key, value in entry.tags.items():
        yield ("tag", f"tag:{key}={value}", code)


def packed_full(entry: Entry, codes: dict[str, str]) -> Iterable[Touch]:
    cell = _cell(entry)
    yield ("base", "cells", f"{cell}.")
    for key, value in entry.tags.items():
        yield ("tag", f"tag:{key}={value}", f"{cell}.")


ALL = (QUARTER, HOUR, DAY)
LAYOUTS = (
    Layout("in use (issue 17 as landed), modelled", in_use, {"base": ALL, "tag": ALL}, {}, full_names=True),
    Layout("packed, full names", packed_full, {"base": ALL, "tag": ALL}, {}, full_names=True),
    Layout("packed", packed, {"base": ALL, "tag": ALL}, {}),
    Layout("packed, tags 15m + 1h", packed, {"base": ALL, "tag": (QUARTER, HOUR)}, {}),
    Layout("packed, tags 15m + hourly compaction", packed, {"base": ALL, "tag": (QUARTER,)}, {"tag": (HOUR, DAY)}),
    Layout(
        "packed, all 15m + hourly compaction",
        packed,
        {"base": (QUARTER,), "tag": (QUARTER,)},
        {"base": (HOUR, DAY), "tag": (HOUR, DAY)},
    ),
)

ItemKey = tuple[str, Granularity, datetime, str]  # (tenant, granularity, bucket, identity)


class PricedTable:
    """Items as attribute maps; every write priced by DynamoDB's rule."""

    def __init__(self) -> None:
        self.items: dict[ItemKey, Attributes] = defaultdict(dict)
        self.units = 0

    @staticmethod
    def size(attributes: Attributes, extra: int) -> int:
        return KEY_BYTES + extra + sum(len(name) + number_bytes(value) for name, value in attributes.items() if value)

    def add(self, key: ItemKey, delta: Attributes) -> None:
        """A marked UpdateItem: ADD the delta, SET the mark."""
        item = self.items[key]
        before = self.size(item, MARK_BYTES)
        for name, value in delta.items():
            item[name] = item.get(name, 0) + value
        self.units += math.ceil(max(before, self.size(item, MARK_BYTES)) / 1024)

    def put(self, key: ItemKey, attributes: Attributes) -> None:
        """A compaction's PutItem of the whole item (skipped by the caller when nothing changed)."""
        before = self.size(self.items[key], VERSION_BYTES) if key in self.items else 0
        self.items[key] = attributes
        self.units += math.ceil(max(before, self.size(attributes, VERSION_BYTES)) / 1024)


def _attributes(counters: Counters, prefix: str, full_names: bool) -> Attributes:
    return {
        f"{prefix}{name if full_names else COUNTER_CODES[name]}": value
        for name, value in counters.as_dict().items()
        if value
    }


def _sum_into(target: Attributes, source: Attributes) -> None:
    for name, value in source.items():
        target[name] = target.get(name, 0) + value


def run(layout: Layout, stream: Sequence[Entry]) -> tuple[float, float]:
    """(hot-path units, compaction units) per 1,000 events."""
    table = PricedTable()
    codes: dict[str, dict[str, str]] = defaultdict(dict)
    layer_of: dict[str, str] = {}
    dirty: Dirty = set()
    compaction_units = 0
    last_compaction = stream[0].timestamp
    for start in range(0, len(stream), BATCH):
        batch = stream[start : start + BATCH]
        deltas: dict[ItemKey, Attributes] = defaultdict(dict)
        for entry in batch:
            counters = Counters.of(entry)
            for layer, identity, prefix in layout.touches(entry, codes[entry.user_id]):
                layer_of[identity] = layer
                attributes = _attributes(counters, prefix, layout.full_names)
                for granularity in layout.hot[layer]:
                    bucket = granularity.floor(entry.timestamp)
                    _sum_into(deltas[(entry.user_id, granularity, bucket, identity)], attributes)
                if layout.compacted.get(layer):
                    dirty.add((entry.user_id, identity, HOUR.floor(entry.timestamp)))
        for key, delta in deltas.items():
            table.add(key, delta)
        table.units += len({entry.user_id for entry in batch})  # one checkpoint per tenant per batch
        now = batch[-1].timestamp
        if layout.compacted and now - last_compaction >= timedelta(hours=1):
            compaction_units += _compact(table, layout, layer_of, dirty)
            dirty, last_compaction = set(), now
    per_k = 1000 / len(stream)
    return (table.units - compaction_units) * per_k, compaction_units * per_k


def _compact(table: PricedTable, layout: Layout, layer_of: dict[str, str], dirty: Dirty) -> int:
    """Fold the changed hours' quarters into their hour and day items; returns the units spent."""
    before = table.units
    days: set[tuple[str, str, datetime]] = set()
    for tenant, identity, hour in dirty:
        hour_item: Attributes = {}
        for quarter in range(4):
            start = hour + timedelta(minutes=15 * quarter)
            _sum_into(hour_item, table.items.get((tenant, QUARTER, start, identity), {}))
        targets = layout.compacted[layer_of[identity]]
        if HOUR in targets and table.items.get((tenant, HOUR, hour, identity)) != hour_item:
            table.put((tenant, HOUR, hour, identity), hour_item)
        if DAY in targets:
            days.add((tenant, identity, DAY.floor(hour)))
    for tenant, identity, day in days:
        day_item: Attributes = {}
        for offset in range(24):
            _sum_into(day_item, table.items.get((tenant, HOUR, day + timedelta(hours=offset), identity), {}))
        if table.items.get((tenant, DAY, day, identity)) != day_item:
            table.put((tenant, DAY, day, identity), day_item)
    return table.units - before


def main() -> None:
    started = time.perf_counter()
    count = HOURS * 3600 * EVENTS_PER_SECOND
    start = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
    stream = events(count, start, count / EVENTS_PER_SECOND, random.Random(42), tagged=True)
    untagged = [replace(entry, tags={}) for entry in stream]
    print(
        f"rollup write units per 1,000 events by layout ({count:,} events over {HOURS} h, batch {BATCH:,};"
        " compaction hourly, counted with the hot path)"
    )
    print(f"  {'layout':<42} {'untagged':>9} {'tagged':>9} {'of which compaction':>20}")
    for layout in LAYOUTS:
        plain_hot, plain_compaction = run(layout, untagged)
        tagged_hot, tagged_compaction = run(layout, stream)
        print(
            f"  {layout.name:<42} {plain_hot + plain_compaction:>9,.0f} {tagged_hot + tagged_compaction:>9,.0f}"
            f" {tagged_compaction:>20,.0f}"
        )
    print(f"\n(bench_layouts: {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()

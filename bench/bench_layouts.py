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

- `before`: the layout issue 17 landed (replaced by the packed one): one item per (granularity,
  dimension, value) — total, provider, model, operation, cell, and per tag key `tag:` and
  `tagcell:` — with the counters' own names; quarter, hour and day. It reproduced `bench
  pipeline`'s figures from the real aggregator then (3,406 / 11,328 against 3,402 / 11,327).
- `packed`: one item per (tenant, granularity, bucket) holding every cell's counters (total,
  provider, model and operation are sums of cells at read time), and per tag key one item per
  (bucket, tag value) holding that value's cells. Attribute names are a per-tenant cell code
  (an ordinal: `c0`, `c1`, …) and a one-letter counter code; `packed, full names` spells both out,
  to show why the dictionary matters.
- `in use` (marked `<- in use`): packed as `llmtally.packing` stores it — quarter and day written
  (hours and months composed at read time), attributes `{code}{letter}`, `billed_cost_nanos` as
  its difference from `cost_nanos`, `n`, the exact packed keys, and the cell dictionary's writes
  (2 per new cell). `bench pipeline` measures the same layout through the real aggregator on a
  shorter stream (20,000 events: the dictionary's one-off writes weigh more there).
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
from llmtally.packing import COUNTER_LETTERS, PackedKey
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
    #: As stored since the packed layout landed: `billed_cost_nanos` as its difference from
    #: `cost_nanos` (absent until a re-rating), `n` (the item's requests), the exact packed keys,
    #: and the cell dictionary's writes (2 per new cell).
    as_stored: bool = False


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


def packed_stored(entry: Entry, codes: dict[str, str]) -> Iterable[Touch]:
    """The packed layout as `llmtally.packing` stores it: attribute `{code}{letter}`, code an ordinal."""
    cell = _cell(entry)
    code = codes.setdefault(cell, str(len(codes)))
    yield ("base", "cells", code)
    for key, value in entry.tags.items():
        yield ("tag", f"{key}={value}", code)


def packed_full(entry: Entry, codes: dict[str, str]) -> Iterable[Touch]:
    cell = _cell(entry)
    yield ("base", "cells", f"{cell}.")
    for key, value in entry.tags.items():
        yield ("tag", f"tag:{key}={value}", f"{cell}.")


ALL = (QUARTER, HOUR, DAY)
QUARTER_DAY = (QUARTER, DAY)
#: The layout in use: `bench pipeline` measures it through the real aggregator.
IN_USE = "in use: packed, 15m + 1d, billed as difference"
LAYOUTS = (
    Layout("before: issue 17 as landed, modelled", in_use, {"base": ALL, "tag": ALL}, {}, full_names=True),
    Layout("packed, full names", packed_full, {"base": ALL, "tag": ALL}, {}, full_names=True),
    Layout("packed", packed, {"base": ALL, "tag": ALL}, {}),
    Layout("packed, tags 15m + 1h", packed, {"base": ALL, "tag": (QUARTER, HOUR)}, {}),
    Layout(IN_USE, packed_stored, {"base": QUARTER_DAY, "tag": QUARTER_DAY}, {}, as_stored=True),
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

    def __init__(self, key_bytes: Callable[[ItemKey], int] = lambda key: KEY_BYTES) -> None:
        self.items: dict[ItemKey, Attributes] = defaultdict(dict)
        self.units = 0
        self.key_bytes = key_bytes

    def size(self, key: ItemKey, attributes: Attributes, extra: int) -> int:
        named = sum(len(name) + number_bytes(value) for name, value in attributes.items() if value)
        return self.key_bytes(key) + extra + named

    def add(self, key: ItemKey, delta: Attributes) -> None:
        """A marked UpdateItem: ADD the delta, SET the mark (an absent item is 0 bytes before)."""
        item = self.items.get(key)
        before = self.size(key, item, MARK_BYTES) if item is not None else 0
        item = self.items[key]
        for name, value in delta.items():
            item[name] = item.get(name, 0) + value
        self.units += math.ceil(max(before, self.size(key, item, MARK_BYTES)) / 1024)

    def put(self, key: ItemKey, attributes: Attributes) -> None:
        """A compaction's PutItem of the whole item (skipped by the caller when nothing changed)."""
        before = self.size(key, self.items[key], VERSION_BYTES) if key in self.items else 0
        self.items[key] = attributes
        self.units += math.ceil(max(before, self.size(key, attributes, VERSION_BYTES)) / 1024)


def _attributes(counters: Counters, prefix: str, layout: Layout) -> Attributes:
    values = counters.as_dict()
    letters = COUNTER_LETTERS if layout.as_stored else COUNTER_CODES
    if layout.as_stored:
        values["billed_cost_nanos"] -= counters.cost_nanos
    out = {f"{prefix}{name if layout.full_names else letters[name]}": value for name, value in values.items() if value}
    if layout.as_stored:
        out["n"] = counters.requests
    return out


def packed_key_bytes(key: ItemKey) -> int:
    """The exact key and `expires_at` of a packed item (`llmtally.packing.PackedKey`)."""
    tenant, granularity, bucket, identity = key
    tag = identity.split("=", 1) if "=" in identity else None
    stored = PackedKey(tenant, granularity, tag[0] if tag else "", bucket, tag[1] if tag else "")
    return 2 + len(stored.pk) + 2 + len(stored.sk) + len("expires_at") + number_bytes(2_000_000_000)


def _sum_into(target: Attributes, source: Attributes) -> None:
    for name, value in source.items():
        target[name] = target.get(name, 0) + value


def run(layout: Layout, stream: Sequence[Entry]) -> tuple[float, float]:
    """(hot-path units, compaction units) per 1,000 events."""
    table = PricedTable(packed_key_bytes) if layout.as_stored else PricedTable()
    codes: dict[str, dict[str, str]] = defaultdict(dict)
    layer_of: dict[str, str] = {}
    dirty: Dirty = set()
    compaction_units = 0
    last_compaction = stream[0].timestamp
    for start in range(0, len(stream), BATCH):
        batch = stream[start : start + BATCH]
        deltas: dict[ItemKey, Attributes] = defaultdict(dict)
        cells_before = sum(len(c) for c in codes.values())
        for entry in batch:
            counters = Counters.of(entry)
            for layer, identity, prefix in layout.touches(entry, codes[entry.user_id]):
                layer_of[identity] = layer
                attributes = _attributes(counters, prefix, layout)
                for granularity in layout.hot[layer]:
                    bucket = granularity.floor(entry.timestamp)
                    _sum_into(deltas[(entry.user_id, granularity, bucket, identity)], attributes)
                if layout.compacted.get(layer):
                    dirty.add((entry.user_id, identity, HOUR.floor(entry.timestamp)))
        for key, delta in deltas.items():
            table.add(key, delta)
        if layout.as_stored:  # each new cell: the dictionary counter's ADD and the cell's claim
            table.units += 2 * (sum(len(c) for c in codes.values()) - cells_before)
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
    print(f"  {'layout':<48} {'untagged':>9} {'tagged':>9} {'of which compaction':>20}")
    for layout in LAYOUTS:
        plain_hot, plain_compaction = run(layout, untagged)
        tagged_hot, tagged_compaction = run(layout, stream)
        marker = "  <- in use" if layout.name == IN_USE else ""
        print(
            f"  {layout.name:<48} {plain_hot + plain_compaction:>9,.0f} {tagged_hot + tagged_compaction:>9,.0f}"
            f" {tagged_compaction:>20,.0f}{marker}"
        )
    calibrate()
    print(f"\n(bench_layouts: {time.perf_counter() - started:.1f} s)")


def calibrate() -> None:
    """The in-use row's model against the real aggregator (`bench pipeline`'s recording repository)
    on `bench pipeline`'s own stream, batch 1,000."""
    from bench.bench_pipeline import EVENTS_PER_SECOND as PIPELINE_RATE
    from bench.bench_pipeline import STREAM_EVENTS, aggregate_stream
    from llmtally.rollups import GRANULARITIES

    layout = next(layout for layout in LAYOUTS if layout.name == IN_USE)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    figures = []
    for tagged in (False, True):
        stream = events(STREAM_EVENTS, start, STREAM_EVENTS / PIPELINE_RATE, random.Random(42), tagged=tagged)
        modelled = sum(run(layout, stream))
        measured = aggregate_stream(stream, BATCH, GRANULARITIES).units * 1000 / len(stream)
        figures.append(f"{'tagged' if tagged else 'untagged'} modelled {modelled:,.0f}, measured {measured:,.0f}")
    print(f"  calibration on bench pipeline's stream ({STREAM_EVENTS:,} events, batch {BATCH:,}): {'; '.join(figures)}")


if __name__ == "__main__":
    main()

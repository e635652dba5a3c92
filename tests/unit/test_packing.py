"""The packed rollup layout (`llmtally.packing`): what is stored stands for exactly the logical rollups.

Stored items are built here the way the aggregator builds them (every touch of every entry encoded
with the tenant's cell codes and ADDed, `n` moved by its requests), then read back the way the
repository reads them (decoded with the codes, exploded into the logical dimensions); the result
must be `llmtally.rollups.coalesce` of the entries, key for key and counter for counter.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from llmtally.aggregate import _chunked
from llmtally.events import TAG_KEY_PATTERN, TAG_VALUE_PATTERN, USER_ID_PATTERN
from llmtally.packing import (
    COUNTER_LETTERS,
    REQUESTS_ATTRIBUTE,
    Attributes,
    PackedKey,
    codes_in,
    decode,
    dimensions_of,
    encode,
    explode,
    partition_of,
    sum_cells,
    touches,
)
from llmtally.repositories.rollups import (
    MAX_ATTRIBUTES_PER_WRITE,
    PackedItem,
    RollupRepository,
    mark_attribute,
    pad_sequence,
)
from llmtally.rollups import (
    COUNTER_FIELDS,
    GRANULARITIES,
    QUARTER,
    BucketRun,
    Counters,
    Dimension,
    Granularity,
    RollupKey,
    RollupSource,
    cell_value,
    coalesce,
    entry_tags,
    rollup_keys,
    split_cell_value,
    sum_counters,
)
from tests.unit.test_rollups import Entry

BASE = datetime(2026, 3, 1, tzinfo=UTC)
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-03-01T00:00:00.000"
#: DynamoDB's limits: an expression string, and one expression attribute name or value.
MAX_EXPRESSION_BYTES = 4096
MAX_PLACEHOLDER_BYTES = 255


# -- the layout's two halves, as the aggregator writes and the repository reads ----------------------


def pack(
    contributions: Iterable[tuple[RollupSource, Counters]], codes: Mapping[str, Mapping[str, int]]
) -> dict[PackedKey, Attributes]:
    """Stored items (attributes and `n`) from each entry's counters, every touch ADDed."""
    stored: dict[PackedKey, Attributes] = {}
    for entry, counters in contributions:
        for key, cell in touches(entry):
            item = stored.setdefault(key, {})
            for name, amount in encode(codes[entry.user_id][cell], counters).items():
                item[name] = item.get(name, 0) + amount
            item[REQUESTS_ATTRIBUTE] = item.get(REQUESTS_ATTRIBUTE, 0) + counters.requests
    return stored


def unpack(
    stored: Mapping[PackedKey, Mapping[str, Any]], codes: Mapping[str, Mapping[str, int]]
) -> dict[RollupKey, Counters]:
    """The logical rollups the stored items stand for; each logical key comes from one item only."""
    out: dict[RollupKey, Counters] = {}
    for key, attributes in stored.items():
        cells = {code: cell for cell, code in codes[key.user_id].items()}
        decoded = decode(attributes, cells)
        # `n` is the item's requests: what a rebuild's conditions compare
        assert attributes.get(REQUESTS_ATTRIBUTE, 0) == sum(c.requests for c in decoded.values())
        for logical, counters in explode(key, decoded, dimensions_of(key.tag_key)).items():
            assert logical not in out, f"{logical} is held by two stored items"
            assert partition_of(logical.dimension) == key.tag_key
            out[logical] = counters
    return out


def cells_of(entries: Iterable[RollupSource]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for entry in entries:
        out.setdefault(entry.user_id, set()).add(cell_value(entry.provider, entry.model, entry.operation_type))
    return out


def draw_codes(data: st.DataObject, entries: Sequence[RollupSource]) -> dict[str, dict[str, int]]:
    """Per tenant, distinct codes in any order and of any width (tenants' codes overlap, as they do)."""
    out: dict[str, dict[str, int]] = {}
    for user, cells in sorted(cells_of(entries).items()):
        numbers = data.draw(st.lists(st.integers(0, 10**6), min_size=len(cells), max_size=len(cells), unique=True))
        out[user] = dict(zip(sorted(cells), numbers, strict=True))
    return out


# -- strategies ----------------------------------------------------------------------------------

tag_keys = st.one_of(st.sampled_from(["customer", "team", "feature.x"]), st.from_regex(TAG_KEY_PATTERN, fullmatch=True))
tag_values = st.one_of(
    st.sampled_from(["a", "b#1", "#", "a#b#c", "x y", "(other)"]),
    st.from_regex(TAG_VALUE_PATTERN, fullmatch=True),
)
tags = st.dictionaries(tag_keys, tag_values, max_size=3)
optional_tokens = st.one_of(st.none(), st.integers(0, 10**6))
entries = st.lists(
    st.builds(
        Entry,
        user_id=st.sampled_from(["acme", "globex", "initech.co"]),
        timestamp=st.integers(0, 3 * 24 * 3600 - 1).map(lambda s: BASE + timedelta(seconds=s)),
        provider=st.sampled_from(["anthropic", "openai", "bedrock"]),
        model=st.sampled_from(["m1", "gpt-4o", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"]),
        operation_type=st.sampled_from(["conversation", "detection_rule"]),
        status=st.sampled_from(["ok", "error"]),
        latency_ms=st.integers(0, 60_000),
        input_tokens=st.integers(0, 10**6),
        cache_read_tokens=st.integers(0, 10**6),
        cache_write_tokens=st.integers(0, 10**5),
        cache_write_5m_tokens=optional_tokens,
        cache_write_1h_tokens=optional_tokens,
        output_tokens=st.integers(0, 10**5),
        reasoning_tokens=st.integers(0, 10**5),
        total_tokens=st.integers(0, 10**7),
        cost_nanos=st.integers(0, 10**10),
        cost_source=st.sampled_from(["catalog", "unpriced", "override"]),
        cache_hit=st.booleans(),
        saved_nanos=st.integers(0, 10**9),
        usage_missing=st.booleans(),
        tags=tags,
        rollup_tags=st.one_of(st.none(), tags),  # folded at ingest: these win over `tags`
    ),
    min_size=1,
    max_size=40,
)


# -- stored items stand for exactly the logical rollups -------------------------------------------


@given(entries, st.data())
def test_packing_every_touch_and_exploding_every_item_gives_the_logical_rollups(
    batch: list[Entry], data: st.DataObject
) -> None:
    # Given a batch of several tenants' calls (errors, unreported usage, cache hits, tags with '#',
    # folded tags) and each tenant's cell codes
    codes = draw_codes(data, batch)
    # When every touch is encoded and ADDed, and every stored item decoded and exploded
    stored = pack(((entry, Counters.of(entry)) for entry in batch), codes)
    # Then the logical rollups are exactly the coalesced batch, billed cost included
    assert unpack(stored, codes) == coalesce(batch)
    # And the items are one per (tenant, granularity, bucket) and per (…, tag key, tag value)
    expected_keys = {
        PackedKey(
            k.user_id,
            k.granularity,
            partition_of(k.dimension),
            k.bucket,
            k.value if k.dimension.startswith("tag:") else "",
        )
        for k in coalesce(batch)
        if k.dimension == Dimension.TOTAL or k.dimension.startswith("tag:")
    }
    assert set(stored) == expected_keys
    # And the repository reads the same back, a tenant's partitions a Query (and page) at a time
    table = PackedTable(stored, codes)
    read: dict[RollupKey, Counters] = {}
    for user in codes:
        tag_keys = {key for entry in batch if entry.user_id == user for key in entry_tags(entry)}
        for item in table.iter_user_items(user, tag_keys):
            assert item.key not in read
            read[item.key] = item.counters
    assert read == coalesce(batch)


@given(entries, st.data())
def test_a_re_rated_batch_keeps_both_costs(batch: list[Entry], data: st.DataObject) -> None:
    # Given a rebuild's re-rating: each call's cost replaced (up, down, or to zero), billed kept
    codes = draw_codes(data, batch)
    rates = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 10**10)), min_size=len(batch), max_size=len(batch)))
    contributions = [(entry, Counters.of(entry, cost_nanos=rate)) for entry, rate in zip(batch, rates, strict=True)]
    expected: dict[RollupKey, Counters] = {}
    for entry, counters in contributions:
        for key in rollup_keys(entry):
            expected.setdefault(key, Counters()).add(counters)
    # When stored and read back
    logical = unpack(pack(contributions, codes), codes)
    # Then both the current rating and the billed one are exact (billed is stored as billed − cost)
    assert logical == expected
    assert sum(c.billed_cost_nanos for k, c in logical.items() if k.dimension == Dimension.TOTAL) == len(
        GRANULARITIES
    ) * sum(entry.cost_nanos for entry in batch)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.builds(Counters, **{name: st.integers(-(10**12), 10**12) for name in COUNTER_FIELDS}),
        ),
        max_size=12,
        unique_by=lambda t: t[0],
    )
)
def test_encode_then_decode_is_the_identity_for_any_counters(cells: list[tuple[int, Counters]]) -> None:
    # Given any cells' counters (negative ones too: a rebuild's differences) under distinct codes
    attributes: Attributes = {}
    for code, counters in cells:
        own = encode(code, counters)
        # Only non-zero attributes are written, at most one per counter, named {code}{letter}
        assert len(own) <= len(COUNTER_LETTERS)
        assert all(
            amount != 0 and name[:-1] == str(code) and name[-1] in COUNTER_LETTERS.values()
            for name, amount in own.items()
        )
        attributes.update(own)
    names = {code: f"cell{code}" for code, _ in cells}
    decoded = decode(attributes, names)
    # Then each cell comes back whole (a cell whose counters are all zero writes nothing, reads nothing)
    assert decoded == {names[code]: counters for code, counters in cells if not counters.is_zero()}
    assert codes_in(attributes) == {code for code, counters in cells if not counters.is_zero()}
    # And the whole item's sum, read without the dictionary (the total and tag:{key} reads), is the
    # sum of its cells, whatever else the item holds
    noise = {REQUESTS_ATTRIBUTE: 7, "expires_at": 1_900_000_000, "hw_0a1b2c3d": 5}
    assert sum_cells({**attributes, **noise}) == sum_counters(decoded.values())


def test_decode_ignores_the_item_count_the_ttl_the_marks_and_the_keys() -> None:
    key = PackedKey("acme", Granularity.QUARTER, "customer", BASE, "b#1")
    attributes = encode(7, Counters.of(Entry(), cost_nanos=1_500)) | encode(12, Counters.of(Entry(status="error")))
    cells = {7: "anthropic#m1#conversation", 12: "openai#gpt-4o#conversation"}
    stored: dict[str, Any] = {
        **attributes,
        REQUESTS_ATTRIBUTE: 2,
        "expires_at": key.expires_at(396),
        mark_attribute(ARN): pad_sequence("49668000000000000001"),
        mark_attribute(ARN + "x"): pad_sequence("1"),
        "pk": key.pk,
        "sk": key.sk,
    }
    assert decode(stored, cells) == decode(attributes, cells)
    assert decode(stored, cells) == {
        cells[7]: Counters.of(Entry(), cost_nanos=1_500),
        cells[12]: Counters.of(Entry(status="error")),
    }
    assert codes_in(stored) == {7, 12}
    # And so does a stored item read back from DynamoDB JSON (strings, numbers as strings)
    raw = {name: {"S": value} if isinstance(value, str) else {"N": str(value)} for name, value in stored.items()}
    item = PackedItem.from_raw(raw, cells)
    assert (item.key, item.cells, item.requests) == (key, decode(attributes, cells), 2)


# -- keys --------------------------------------------------------------------------------------------


def aligned(granularity: Granularity) -> st.SearchStrategy[datetime]:
    return st.integers(0, 800 * 24 * 4).map(lambda q: granularity.floor(BASE + q * QUARTER))


@st.composite
def packed_keys(draw: st.DrawFn) -> PackedKey:
    size = draw(st.sampled_from(Granularity))
    user = draw(st.one_of(st.sampled_from(["acme", "a.b@c-d_e"]), st.from_regex(USER_ID_PATTERN, fullmatch=True)))
    bucket = draw(aligned(size))
    tag_key = draw(st.one_of(st.just(""), tag_keys))
    value = draw(tag_values) if tag_key else ""
    return PackedKey(user, size, tag_key, bucket, value)


@given(packed_keys())
def test_a_key_parses_back_from_its_pk_and_sk(key: PackedKey) -> None:
    assert PackedKey.parse(key.pk, key.sk) == key
    assert key.pk.startswith(f"P#{key.user_id}#{key.granularity.value}")
    assert key.sk.startswith(key.bucket.strftime("%Y-%m-%dT%H:%M"))


class PackedTable(RollupRepository):
    """A packed rollups table in memory, read by the repository's own code: its Queries answered
    with DynamoDB's key-condition semantics (BETWEEN is inclusive; strings compare by code point;
    items in sort-key order, `PAGE` a page), the cell codes from `codes`."""

    PAGE = 7

    def __init__(
        self, stored: Mapping[PackedKey, Attributes] | None = None, codes: Mapping[str, Mapping[str, int]] | None = None
    ) -> None:
        self.table = "t"
        self.ttl_days = 396
        self.codes = {user: dict(cells) for user, cells in (codes or {}).items()}
        self.queries = 0
        self.items: dict[tuple[str, str], dict[str, Any]] = {
            (key.pk, key.sk): {
                "pk": {"S": key.pk},
                "sk": {"S": key.sk},
                **{name: {"N": str(amount)} for name, amount in attributes.items()},
                "expires_at": {"N": str(key.expires_at(self.ttl_days))},
                mark_attribute(ARN): {"S": pad_sequence("1")},
            }
            for key, attributes in (stored or {}).items()
        }

    @classmethod
    def of(cls, entries: Sequence[RollupSource]) -> PackedTable:
        """The table the aggregator writes for `entries`, each tenant's cells coded in its own order."""
        codes = {
            user: {cell: 3 + 7 * i for i, cell in enumerate(sorted(cells))} for user, cells in cells_of(entries).items()
        }
        return cls(pack(((entry, Counters.of(entry)) for entry in entries), codes), codes)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        assert operation == "query", operation
        self.queries += 1
        values = {name: value["S"] for name, value in kwargs["ExpressionAttributeValues"].items()}
        condition = kwargs["KeyConditionExpression"]
        if condition == "pk = :pk AND sk BETWEEN :low AND :high":
            low, high = values[":low"], values[":high"]
        else:
            assert condition == "pk = :pk", condition
            low, high = "", "\U0010ffff"
        after = kwargs.get("ExclusiveStartKey", {}).get("sk", {}).get("S")
        hits = sorted(
            (sk, item)
            for (pk, sk), item in self.items.items()
            if pk == values[":pk"] and low <= sk <= high and (after is None or sk > after)
        )
        page = [item for _, item in hits[: self.PAGE]]
        answer: dict[str, Any] = {"Items": page}
        if len(hits) > self.PAGE:
            answer["LastEvaluatedKey"] = {"pk": page[-1]["pk"], "sk": page[-1]["sk"]}
        return answer

    def _cells(self, user_id: str, codes: Iterable[int]) -> dict[int, str]:
        by_code = {code: cell for cell, code in self.codes.get(user_id, {}).items()}
        assert set(codes) <= by_code.keys()
        return by_code


@given(
    st.sampled_from(GRANULARITIES),
    st.sampled_from(["", "customer"]),
    st.lists(st.tuples(st.integers(0, 40), tag_values), max_size=30),
    st.integers(1, 40),
    st.integers(1, 20),
)
def test_a_query_of_a_run_reads_exactly_the_run_s_items(
    granularity: Granularity, tag_key: str, items: list[tuple[int, str]], first: int, length: int
) -> None:
    # Given stored items of a partition (and of the partitions beside it) at buckets around a run
    def bucket(n: int) -> datetime:
        start = BASE
        for _ in range(n):
            start = granularity.next(start)
        return start

    # (always one at each edge: just before the run, its first and last buckets, its end's)
    edges = [(n, "e#dge") for n in (first - 1, first, first + length - 1, first + length)]
    keys = {PackedKey("acme", granularity, tag_key, bucket(n), value if tag_key else "") for n, value in items + edges}
    beside = {
        PackedKey("acme", g, t, bucket(n), "v" if t else "")
        for g in GRANULARITIES
        for t in ("", "team")
        for n, _ in items
    }
    run = BucketRun(granularity, bucket(first), bucket(first + length))
    # When the repository Queries the run
    codes = {"acme": {"anthropic#m1#conversation": 0}}
    stored = {key: {"0a": 1, REQUESTS_ATTRIBUTE: 1} for key in keys | beside}
    read = PackedTable(stored, codes).query_packed("acme", tag_key, run)
    # Then it reads the partition's items with a bucket in [first, end): none at the end's bucket
    assert {item.key for item in read} == {k for k in keys if run.first <= k.bucket < run.end}


# -- what one write can carry --------------------------------------------------------------------


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_write_of_the_most_attributes_fits_an_update_expression(low_code: int, spread: int) -> None:
    # Given a delta of MAX_ATTRIBUTES_PER_WRITE attributes over cells of any codes, and its mark
    codes = [
        low_code + i * (spread // 12 + 1) for i in range(math.ceil(MAX_ATTRIBUTES_PER_WRITE / len(COUNTER_LETTERS)))
    ]
    attributes: Attributes = {}
    for code in codes:
        attributes |= {f"{code}{letter}": -(10**15) for letter in COUNTER_LETTERS.values()}
    attributes = dict(sorted(attributes.items())[:MAX_ATTRIBUTES_PER_WRITE])
    assert len(attributes) == MAX_ATTRIBUTES_PER_WRITE
    repo = PackedTable()
    update = repo.delta(PackedKey("acme", Granularity.DAY, "customer", BASE, "b#1"), attributes, 10**9)["Update"]
    repo._mark(update, mark_attribute(ARN), pad_sequence("9" * 40), below=pad_sequence("1"))
    # Then the UpdateExpression stays within DynamoDB's 4 KB whatever the names (they are placeholders)
    assert len(update["UpdateExpression"].encode()) <= MAX_EXPRESSION_BYTES
    assert len(update["ConditionExpression"].encode()) <= MAX_EXPRESSION_BYTES
    # And each placeholder and each attribute name is short
    assert all(
        len(p.encode()) <= MAX_PLACEHOLDER_BYTES
        for p in [*update["ExpressionAttributeNames"], *update["ExpressionAttributeValues"]]
    )
    assert set(update["ExpressionAttributeNames"].values()) == set(attributes) | {mark_attribute(ARN)}
    # And the per-attribute share the bound assumes ("#a123 :a123, ") holds for every index
    clause = len(f"#a{MAX_ATTRIBUTES_PER_WRITE - 1} :a{MAX_ATTRIBUTES_PER_WRITE - 1}, ")
    assert clause * MAX_ATTRIBUTES_PER_WRITE < MAX_EXPRESSION_BYTES


@given(
    st.lists(
        st.dictionaries(
            st.tuples(st.integers(0, 40), st.sampled_from(sorted(COUNTER_LETTERS.values()))).map(
                lambda t: f"{t[0]}{t[1]}"
            ),
            st.integers(-(10**6), 10**6).filter(bool),
            max_size=len(COUNTER_LETTERS),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_an_item_s_records_are_cut_into_writes_each_within_the_bound(records: list[Attributes]) -> None:
    # Given one stored item's records (each within one cell: ≤ one attribute per counter)
    key = PackedKey("acme", Granularity.QUARTER, "", BASE)
    contributions = [(pad_sequence(str(1000 + i)), own, 1) for i, own in enumerate(records)]
    # When cut into marked writes
    writes = _chunked(key, contributions)
    # Then each carries at most MAX_ATTRIBUTES_PER_WRITE attributes, consecutive records, and together all
    assert all(len(w.attributes) <= MAX_ATTRIBUTES_PER_WRITE for w in writes)
    assert [w.first for w in writes] == sorted(w.first for w in writes)
    assert all(a.last < b.first for a, b in itertools.pairwise(writes))
    assert writes[0].first == contributions[0][0]
    assert writes[-1].last == contributions[-1][0]
    total: dict[str, int] = {}
    for own in records:
        for name, amount in own.items():
            total[name] = total.get(name, 0) + amount
    summed: dict[str, int] = {}
    for write in writes:
        for name, amount in write.attributes.items():
            summed[name] = summed.get(name, 0) + amount
    assert {n: a for n, a in summed.items() if a} == {n: a for n, a in total.items() if a}
    assert sum(w.requests for w in writes) == len(records)


# -- examples --------------------------------------------------------------------------------------


def test_a_quarter_base_item_of_one_call() -> None:
    # Given one call (anthropic, claude-sonnet-4-5, conversation) whose cell has code 3
    entry = Entry(timestamp=datetime(2025, 1, 1, 0, 14, 59, tzinfo=UTC))
    cell = "anthropic#claude-sonnet-4-5#conversation"
    # Then it touches the tenant's quarter and day base items, under its cell
    assert list(touches(entry)) == [
        (PackedKey("acme", Granularity.QUARTER, "", datetime(2025, 1, 1, tzinfo=UTC)), cell),
        (PackedKey("acme", Granularity.DAY, "", datetime(2025, 1, 1, tzinfo=UTC)), cell),
    ]
    key = PackedKey("acme", Granularity.QUARTER, "", datetime(2025, 1, 1, tzinfo=UTC))
    assert key.pk == "P#acme#15m"
    assert key.sk.startswith("2025-01-01T00:00")
    # And writes its non-zero counters, one letter each: requests, input, output, total, cost, latency
    assert encode(3, Counters.of(entry)) == {"3a": 1, "3d": 10, "3i": 5, "3k": 15, "3l": 1_000, "3n": 100}
    # And after a re-rate the billed cost is its difference from the cost (and an error is counted)
    assert encode(3, Counters.of(Entry(status="error"), cost_nanos=1_600)) == {
        "3a": 1,
        "3b": 1,
        "3d": 10,
        "3i": 5,
        "3k": 15,
        "3l": 1_600,
        "3m": -600,
        "3n": 100,
    }
    # And a tagged call adds one item per tag value, the value after the bucket (it may hold '#')
    tagged = Entry(tags={"customer": "b#1"})
    ((base, _), (tag, _)) = touches(tagged, (Granularity.QUARTER,))
    assert (base.pk, base.sk) == (key.pk, key.sk)
    assert (tag.pk, tag.sk) == ("P#acme#15m#customer", "2025-01-01T00:00#b#1")


def _number_size(value: int) -> int:
    """DynamoDB's size of a number: 1 byte per two significant digits, plus 1."""
    digits = str(abs(value)).strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def item_size(item: Mapping[str, int | str]) -> int:
    """DynamoDB's item size: each attribute's name plus its value (strings by their UTF-8 bytes)."""
    return sum(
        len(name.encode()) + (len(value.encode()) if isinstance(value, str) else _number_size(value))
        for name, value in item.items()
    )


def test_a_busy_tenant_s_day_item_stays_well_under_4_kb() -> None:
    # Given a tenant's day with 20 cells (5 models × 4 operations), each of ≤ 50,000 calls with every
    # counter non-zero (errors, cache reads and writes, reasoning, cache hits, unreported usage, and
    # a rebuild's re-rate: billed ≠ cost), the figures irregular (no trailing zeros to trim)
    rng = random.Random(17)
    models = [
        ("anthropic", "claude-sonnet-4-5-20250929"),
        ("anthropic", "claude-opus-4-1-20250805"),
        ("openai", "gpt-5-mini"),
        ("openai", "gpt-4o-2024-08-06"),
        ("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ]
    operations = ["conversation", "detection_rule", "query_generation", "summarization"]
    cells = [cell_value(p, m, o) for p, m in models for o in operations]
    codes = {"acme": {cell: code for code, cell in enumerate(cells)}}
    per_call = {
        "requests": 1,
        "errors": 1,
        "unpriced_requests": 1,
        "input_tokens": 3_000,
        "cache_read_tokens": 12_000,
        "cache_write_tokens": 800,
        "cache_write_5m_tokens": 500,
        "cache_write_1h_tokens": 300,
        "output_tokens": 700,
        "reasoning_tokens": 400,
        "total_tokens": 16_500,
        "cost_nanos": 21_000_000,
        "billed_cost_nanos": 19_500_000,
        "latency_ms_sum": 4_200,
        "cache_hits": 1,
        "saved_nanos": 900_000,
        "usage_missing": 1,
    }
    contributions = []
    for cell in cells:
        provider, model, operation = split_cell_value(cell)
        calls = rng.randint(25_000, 50_000)
        counters = Counters(**{name: rng.randint(calls * each // 2, calls * each) for name, each in per_call.items()})
        counters.requests = calls
        entry = Entry(timestamp=BASE + timedelta(hours=13), provider=provider, model=model, operation_type=operation)
        contributions.append((entry, counters))
    stored = {key: item for key, item in pack(contributions, codes).items() if key.granularity is Granularity.DAY}
    ((key, attributes),) = stored.items()
    assert len(attributes) == len(cells) * len(COUNTER_LETTERS) + 1  # every counter of every cell, and `n`
    item: dict[str, int | str] = {
        "pk": key.pk,
        "sk": key.sk,
        **attributes,
        "expires_at": key.expires_at(396),
        mark_attribute(ARN): pad_sequence("49668000000000000000123456789012345678"),
    }
    # Then its size is within the layout's bound: per attribute a name of ≤ 2 digits and a letter and
    # a number of ≤ 13 significant digits (8 bytes); the keys, `n`, the TTL and one stream's mark
    largest = max(abs(value) for value in attributes.values())
    assert largest < 10**13
    fixed = item_size({name: value for name, value in item.items() if name not in attributes or name == "n"})
    bound = len(cells) * len(COUNTER_LETTERS) * (3 + 8) + fixed
    size = item_size(item)
    assert size <= bound < 4 * 1024
    # And well under 4 KB: the busiest such day item is billed 3 write units per write
    assert math.ceil(size / 1024) <= 3

"""The aggregate handler on moto, fed the Lambda events built from what moto's stream API returns.

Raw entries are written the way the ingest writes them (`raw_entry_item` + conditional PutItem),
the usage table's stream is read with `dynamodbstreams.get_records`, and the records are handed
to `aggregate.handler.lambda_handler` in Lambda's shape. Every rollup is then compared with a
brute-force recomputation from the raw entries.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aggregate.handler import lambda_handler
from llmtally import aws
from llmtally.events import Provider, UsageEvent
from llmtally.ingest import RawEntry, raw_entry_item
from llmtally.money import nanos_to_usd
from llmtally.packing import encode, touches
from llmtally.pricing import PriceBook, PriceOverride, PriceOverrideFile
from llmtally.queries import daily_usage, summarize
from llmtally.rebuild import rebuild_rollups
from llmtally.repositories import rollups as rollups_repository
from llmtally.repositories.rollups import MAX_ATTRIBUTES_PER_WRITE, RollupRepository
from llmtally.repositories.usage import UsageRepository
from llmtally.resources import ResourceNames
from llmtally.rollups import GRANULARITIES, Counters, Dimension, Granularity, RollupKey, coalesce
from llmtally.tables import create_tables
from tests.conftest import MotoServer
from tests.support.lambda_events import FakeLambdaContext, stream_event_from_records

pytestmark = pytest.mark.integration

MODELS: dict[Provider, tuple[str, ...]] = {
    Provider.ANTHROPIC: ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-private-ft"),
    Provider.OPENAI: ("gpt-5", "gpt-5-mini"),
    Provider.GOOGLE: ("gemini-2.5-pro", "gemini-2.5-flash"),
}
OPERATIONS = ("query_generation", "detection_rule", "conversation", "rule_enrichment")
BOOK = PriceBook()
_ids = itertools.count(1)


def day_start(days_ago: int = 3) -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days_ago)


def usage_event(
    user_id: str,
    at: datetime,
    *,
    provider: Provider = Provider.ANTHROPIC,
    model: str = "claude-sonnet-4-5-20250929",
    operation: str = "conversation",
    error: bool = False,
    tokens: int = 1000,
) -> UsageEvent:
    return UsageEvent(
        event_id=f"evt-{next(_ids):08d}-{random.randbytes(4).hex()}",
        user_id=user_id,
        timestamp=at,
        provider=provider,
        model=model,
        operation_type=operation,
        status="error" if error else "ok",
        input_tokens=tokens,
        cache_read_tokens=tokens // 3,
        output_tokens=tokens // 2,
        reasoning_tokens=tokens // 7,
        latency_ms=tokens % 997,
    )


def random_events(
    rng: random.Random, count: int, tenants: Sequence[str], start: datetime, hours: int
) -> list[UsageEvent]:
    events = []
    for _ in range(count):
        provider = rng.choice(list(MODELS))
        events.append(
            usage_event(
                rng.choice(tenants),
                start + timedelta(seconds=rng.randrange(hours * 3600), milliseconds=rng.randrange(1000)),
                provider=provider,
                model=rng.choice(MODELS[provider]),
                operation=rng.choice(OPERATIONS),
                error=rng.random() < 0.1,
                tokens=rng.randrange(1, 50_000),
            )
        )
    return events


def store(events: Sequence[UsageEvent]) -> None:
    """Write raw entries as the ingest does (PutItem if absent)."""
    repo = UsageRepository()
    now = datetime.now(UTC)
    for event in events:
        repo.put_if_absent(raw_entry_item(event, BOOK.price_event(event), ttl_days=90, now=now))


def stream_arn() -> str:
    table = aws.client("dynamodb").describe_table(TableName=ResourceNames().usage_table)["Table"]
    return str(table["LatestStreamArn"])


def read_stream(arn: str, after: str | None = None) -> list[dict[str, Any]]:
    """Every record on the (single, in moto) shard, after a sequence number if given."""
    streams = aws.client("dynamodbstreams")
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        kwargs: dict[str, Any] = {"StreamArn": arn, "ShardId": shard["ShardId"]}
        if after is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after)
        iterator = streams.get_shard_iterator(**kwargs)["ShardIterator"]
        while iterator:
            response = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not response["Records"]:
                break
            records.extend(response["Records"])
            iterator = response.get("NextShardIterator")
    return records


def invoke(records: Sequence[dict[str, Any]], arn: str) -> dict[str, Any]:
    response: dict[str, Any] = lambda_handler(stream_event_from_records(records, stream_arn=arn), FakeLambdaContext())
    return response


def deliver(records: Sequence[dict[str, Any]], arn: str, *, max_attempts: int = 10) -> int:
    """Invoke as Lambda does: on a reported failure, retry the batch from the reported record."""
    pending = list(records)
    for attempt in range(1, max_attempts + 1):
        failures = invoke(pending, arn)["batchItemFailures"]
        if not failures:
            return attempt
        failed = failures[0]["itemIdentifier"]
        pending = pending[[r["dynamodb"]["SequenceNumber"] for r in pending].index(failed) :]
    raise AssertionError("the batch kept failing")


def raw_entries(user_ids: Sequence[str]) -> list[RawEntry]:
    repo = UsageRepository()
    return [entry for user in user_ids for entry in repo.iter_entries(user)]


def stored_rollups(user_ids: Sequence[str]) -> dict[RollupKey, Counters]:
    repo = RollupRepository()
    return {
        item.key: item.counters
        for user in user_ids
        for item in repo.iter_user_items(user)
        if not item.counters.is_zero()
    }


def dictionary_cells(user_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(tenant, cell) pairs in the tenants' cell dictionaries, read from the table."""
    client = aws.client("dynamodb")
    found: set[tuple[str, str]] = set()
    for user in user_ids:
        response = client.query(
            TableName=ResourceNames().rollups_table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :c)",
            ExpressionAttributeValues={":pk": {"S": f"D#{user}"}, ":c": {"S": "c#"}},
            ConsistentRead=True,
        )
        found |= {(user, item["sk"]["S"].removeprefix("c#")) for item in response["Items"]}
    return found


def assert_rollups_match_raw(user_ids: Sequence[str]) -> None:
    expected = coalesce(raw_entries(user_ids))
    assert stored_rollups(user_ids) == expected


@contextmanager
def failing_call(operation: str, *, nth: int = 1, after: bool = False) -> Iterator[list[int]]:
    """Make the nth `operation` call of the dynamodb client fail (before it reaches the table, or
    after it succeeded: the response is lost). Yields the call counter."""
    from botocore.exceptions import ClientError

    client = aws.client("dynamodb")
    calls = [0]
    event = f"{'after' if after else 'before'}-call.dynamodb.{operation}"

    def hook(**_: Any) -> None:
        calls[0] += 1
        if calls[0] == nth:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}}, operation
            )

    client.meta.events.register(event, hook, unique_id="llmtally-test-fault")
    try:
        yield calls
    finally:
        client.meta.events.unregister(event, unique_id="llmtally-test-fault")


@pytest.fixture(autouse=True)
def cheap_transaction_backups(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto (5.2.5) takes a TransactWriteItems' rollback backup by deep-copying the whole table once
    per *item* (100 copies of the table per 100-item transaction), which makes a test with a few
    thousand rollups crawl past botocore's read timeout. Take an equivalent backup instead: the
    table's item maps copied shallowly, and deep copies of only the items this transaction touches
    (the only ones it can change). Rollback semantics are unchanged for tables without a stream,
    which is all a transaction here writes (the rollups table)."""
    import copy
    from collections import defaultdict

    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        touched: dict[str, list[dict[str, Any]]] = {}
        for item in transact_items:
            op = next(iter(item.values()))
            touched.setdefault(op["TableName"], []).append(op.get("Key") or op.get("Item") or {})
        backups: dict[int, Any] = {}

        def backup(table: Table) -> Table:
            clone = copy.copy(table)
            clone.items = defaultdict(dict, {h: dict(r) for h, r in table.items.items()})
            for key in touched.get(table.name, []):
                hash_value = DynamoType(key[table.hash_key_attr])
                range_value = DynamoType(key[str(table.range_key_attr)])
                current = table.items.get(hash_value, {}).get(range_value)
                if current is not None:
                    clone.items[hash_value][range_value] = copy.deepcopy(current)
            return clone

        class CheapCopy:
            @staticmethod
            def deepcopy(value: Any, memo: Any = None) -> Any:
                if isinstance(value, Table) and value.range_key_attr and value.stream_shard is None:
                    if id(value) not in backups:
                        backups[id(value)] = backup(value)
                    return backups[id(value)]
                return copy.deepcopy(value, memo)

        # moto's module calls `copy.deepcopy(table)`: swap the module it sees for this one call.
        vars(models)["copy"] = CheapCopy()
        try:
            original(self, transact_items)
        finally:
            vars(models)["copy"] = copy

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", transact_write_items)


@pytest.fixture
def tables(moto: MotoServer) -> str:
    create_tables(aws.client("dynamodb"), ResourceNames())
    return stream_arn()


# -- tests -------------------------------------------------------------------------------------


def test_a_batch_lands_in_every_rollup_exactly(tables: str) -> None:
    # Given 60 events of 3 tenants over 30 hours, written as raw entries
    events = random_events(random.Random(1), 60, ["acme", "globex", "initech"], day_start(), 30)
    store(events)
    records = read_stream(tables)
    # Then one raw entry made one INSERT (PutItem, never UpdateItem)
    assert [r["eventName"] for r in records] == ["INSERT"] * 60
    # When the stream batch is delivered
    response = invoke(records, tables)
    # Then it succeeded and every rollup equals the recomputation
    assert response == {"batchItemFailures": []}
    assert_rollups_match_raw(["acme", "globex", "initech"])


def test_a_redelivered_batch_is_skipped_by_the_checkpoint(tables: str) -> None:
    store(random_events(random.Random(2), 25, ["acme", "globex"], day_start(), 5))
    records = read_stream(tables)
    invoke(records, tables)
    # When Lambda delivers the same records again, whole and in part
    assert invoke(records, tables) == {"batchItemFailures": []}
    assert invoke(records[7:13], tables) == {"batchItemFailures": []}
    # Then nothing is counted twice
    assert_rollups_match_raw(["acme", "globex"])


def test_a_large_batch_is_one_update_per_rollup_key_without_transactions(tables: str) -> None:
    # Given 60 events of two tenants over two days
    store(random_events(random.Random(3), 60, ["acme", "globex"], day_start(), 48))
    records = read_stream(tables)
    known = dictionary_cells(["acme", "globex"])
    # When the batch is aggregated
    with failing_call("UpdateItem", nth=10**6) as updates:
        invoke(records, tables)
    # Then no transaction was needed: one UpdateItem per stored (packed) item, two per cell new to
    # a tenant's dictionary, one per checkpoint
    entries = [RawEntry.from_dynamodb(r["dynamodb"]["NewImage"]) for r in records]
    stored = {key for entry in entries for key, _ in touches(entry)}
    cells = {(entry.user_id, cell) for entry in entries for _, cell in touches(entry)}
    assert dictionary_cells(["acme", "globex"]) == known | cells
    assert updates[0] == len(stored) + 2 * len(cells - known) + 2
    # far fewer than one per logical rollup (what the layout before packing wrote)
    assert len(stored) * 4 < len(coalesce(entries))
    assert_rollups_match_raw(["acme", "globex"])


@pytest.mark.parametrize("after", [False, True], ids=["refused", "response-lost"])
@pytest.mark.parametrize("nth", [1, 3, 40])
def test_a_failed_write_is_retried_from_the_first_uncommitted_record(
    tables: str, nth: int, after: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollups_repository, "WRITE_THREADS", 1)  # the nth call is the same one every run
    store(random_events(random.Random(4), 30, ["acme", "globex", "initech"], day_start(), 24))
    records = read_stream(tables)
    # When the nth rollup write fails (throttled, or applied but its answer lost)
    with failing_call("UpdateItem", nth=nth, after=after):
        response = invoke(records, tables)
    # Then the answer names one record of the batch; every record before it is committed
    [failure] = response["batchItemFailures"]
    sequence = [r["dynamodb"]["SequenceNumber"] for r in records]
    index = sequence.index(failure["itemIdentifier"])
    counted = sum(
        counters.requests
        for key, counters in stored_rollups(["acme", "globex", "initech"]).items()
        if key.granularity is Granularity.DAY and key.dimension == Dimension.TOTAL
    )
    assert index <= counted
    # And the retry Lambda makes (from that record) completes the batch exactly once: each item's
    # high-water mark says which of the records it already holds
    assert invoke(records[index:], tables) == {"batchItemFailures": []}
    assert_rollups_match_raw(["acme", "globex", "initech"])
    # Even a retry of the whole batch changes nothing
    invoke(records, tables)
    assert_rollups_match_raw(["acme", "globex", "initech"])


def test_a_failed_checkpoint_read_fails_the_whole_batch(tables: str) -> None:
    store(random_events(random.Random(5), 10, ["acme"], day_start(), 2))
    records = read_stream(tables)
    with failing_call("BatchGetItem"):
        response = invoke(records, tables)
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
    assert stored_rollups(["acme"]) == {}
    assert deliver(records, tables) == 1
    assert_rollups_match_raw(["acme"])


def test_modify_and_remove_records_are_ignored(tables: str) -> None:
    events = random_events(random.Random(6), 4, ["acme"], day_start(), 2)
    store(events)
    client = aws.client("dynamodb")
    key = {"user_id": {"S": "acme"}, "sk": {"S": events[0].sort_key}}
    table = ResourceNames().usage_table
    client.update_item(
        TableName=table, Key=key, UpdateExpression="SET cost_nanos = :c", ExpressionAttributeValues={":c": {"N": "1"}}
    )
    client.delete_item(TableName=table, Key=key)
    records = read_stream(tables)
    assert [r["eventName"] for r in records] == ["INSERT"] * 4 + ["MODIFY", "REMOVE"]
    assert invoke(records, tables) == {"batchItemFailures": []}
    # The deleted entry was counted by its INSERT; the MODIFY and REMOVE changed nothing.
    expected = coalesce(RawEntry.from_dynamodb(r["dynamodb"]["NewImage"]) for r in records[:4])
    assert stored_rollups(["acme"]) == expected


def test_an_unparseable_record_stops_the_batch_there(tables: str) -> None:
    store(random_events(random.Random(7), 6, ["acme"], day_start(), 2))
    records = read_stream(tables)
    broken = dict(records[3], dynamodb=dict(records[3]["dynamodb"], NewImage={"user_id": {"S": "acme"}}))
    response = invoke([*records[:3], broken, *records[4:]], tables)
    assert response == {"batchItemFailures": [{"itemIdentifier": records[3]["dynamodb"]["SequenceNumber"]}]}
    committed = coalesce(RawEntry.from_dynamodb(r["dynamodb"]["NewImage"]) for r in records[:3])
    assert stored_rollups(["acme"]) == committed


def test_later_batches_add_up_and_summaries_read_only_rollups(tables: str) -> None:
    start = day_start(6)
    events = random_events(random.Random(8), 90, ["acme"], start, 6 * 24)
    for chunk in (events[:70], events[70:150], events[150:]):
        before = read_stream(tables)
        store(chunk)
        after = read_stream(tables, before[-1]["dynamodb"]["SequenceNumber"] if before else None)
        for batch_start in range(0, len(after), 10):
            deliver(after[batch_start : batch_start + 10], tables)
    assert_rollups_match_raw(["acme"])
    entries = raw_entries(["acme"])
    for tz in ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"):
        zone = ZoneInfo(tz)
        first_day = start.astimezone(zone).date()
        summary = summarize("acme", first_day, first_day + timedelta(days=6), tz)
        low = datetime.combine(first_day, datetime.min.time(), tzinfo=zone)
        high = datetime.combine(first_day + timedelta(days=7), datetime.min.time(), tzinfo=zone)
        inside = [e for e in entries if low <= e.timestamp < high]
        assert summary.total_requests == len(inside)
        assert summary.total_cost_usd == nanos_to_usd(sum(e.cost_nanos for e in inside))
        assert summary.by_operation.keys() == {e.operation_type for e in inside}
        series = daily_usage("acme", 8, tz, today=first_day + timedelta(days=7))
        for row in series.days:
            day_low = datetime.combine(row.date, datetime.min.time(), tzinfo=zone)
            in_day = [e for e in entries if day_low <= e.timestamp < day_low + timedelta(days=1)]
            if tz == "UTC" or zone.utcoffset(day_low) == zone.utcoffset(day_low + timedelta(days=1)):
                assert row.requests == len(in_day)
                assert row.tokens == sum(e.total_tokens for e in in_day)


def _priced_book(factor: int) -> PriceBook:
    overrides = tuple(
        PriceOverride(provider=provider, model=model, input_mtok=Decimal(factor), output_mtok=Decimal(2 * factor))
        for provider, models in MODELS.items()
        for model in models
    )
    return PriceBook(PriceOverrideFile(version=f"x{factor}", overrides=overrides))


def _repriced(entries: Sequence[RawEntry], book: PriceBook) -> dict[RollupKey, Counters]:
    from llmtally.rebuild import quarter_contributions

    quarters = quarter_contributions(entries, "acme", book)
    out: dict[RollupKey, Counters] = {}
    for key, counters in quarters.items():
        for size in GRANULARITIES:
            coarse = RollupKey(key.user_id, size, key.dimension, size.floor(key.bucket), key.value)
            out.setdefault(coarse, Counters()).add(counters)
    return out


def test_rebuild_is_idempotent_and_re_rating_keeps_the_billed_figure(tables: str) -> None:
    start = day_start(4)
    rng = random.Random(9)
    events = [
        e.model_copy(update={"tags": {"customer": rng.choice(("c-1", "c-2"))}}) if rng.random() < 0.4 else e
        for e in random_events(rng, 50, ["acme"], start, 72)
    ]
    store(events)
    deliver(read_stream(tables), tables)
    repo = RollupRepository()

    def stored() -> dict[RollupKey, Counters]:  # every dimension, the tag's included
        return {i.key: i.counters for i in repo.iter_user_items("acme", {"customer"}) if not i.counters.is_zero()}

    # A rebuild of an exact table changes nothing
    progress: list[tuple[int, int]] = []
    report = rebuild_rollups("acme", start, start + timedelta(days=3), progress=lambda d, t: progress.append((d, t)))
    assert report["quarters_changed"] == 0
    assert report["transactions"] == 0
    assert report["entries"] == 50
    assert (
        report["cost_usd_before"]
        == report["cost_usd_after"]
        == str(nanos_to_usd(sum(e.cost_nanos for e in raw_entries(["acme"]))))
    )
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert stored() == coalesce(raw_entries(["acme"]))

    # When a partial range (an odd quarter to an odd quarter, splitting hours, days and the month)
    # is re-rated, then the rollups equal a recomputation: re-rated inside, billed outside, in the
    # tag's items too
    book = _priced_book(7)
    low, high = start + timedelta(hours=5, minutes=45), start + timedelta(days=2, hours=3, minutes=15)
    report = rebuild_rollups("acme", low, high, reprice=book)
    assert report["quarters_changed"] > 0
    entries = raw_entries(["acme"])
    inside = [e for e in entries if low <= e.timestamp < high]
    outside = [e for e in entries if not low <= e.timestamp < high]
    expected = coalesce(outside)
    for key, counters in _repriced(inside, book).items():
        expected.setdefault(key, Counters()).add(counters)
    assert stored() == {k: v for k, v in expected.items() if not v.is_zero()}
    summary = summarize("acme", start, start + timedelta(days=3))
    assert summary.billed_cost_usd == nanos_to_usd(sum(e.cost_nanos for e in entries))
    assert summary.total_cost_usd != summary.billed_cost_usd

    # And running it again writes nothing; a plain rebuild restores the billed figures
    assert rebuild_rollups("acme", low, high, reprice=book)["quarters_changed"] == 0
    rebuild_rollups("acme", start, start + timedelta(days=3))
    assert stored() == coalesce(raw_entries(["acme"]))
    # (a day in Asia/Kolkata starts at 18:30 UTC: its edges are read from the rebuilt quarters)
    kolkata = ZoneInfo("Asia/Kolkata")
    for day in daily_usage("acme", 5, "Asia/Kolkata", today=(start + timedelta(days=3)).date()).days:
        midnight = datetime.combine(day.date, datetime.min.time(), kolkata)
        mine = [e for e in entries if midnight <= e.timestamp < midnight + timedelta(days=1)]
        assert (day.requests, day.cost_usd) == (len(mine), nanos_to_usd(sum(e.cost_nanos for e in mine)))

    # And a quarter whose difference is more than one UpdateItem carries (28 cells never
    # aggregated: ~8 counters each) is written in pieces, conditional one after the other
    quarter = start + timedelta(days=3, hours=1)
    crowded = [
        usage_event("acme", quarter + timedelta(seconds=index), provider=provider, model=model, operation=operation)
        for index, (provider, model, operation) in enumerate(
            (p, m, o) for p, models in MODELS.items() for m in models for o in OPERATIONS
        )
    ]
    store(crowded)
    report = rebuild_rollups("acme", quarter, quarter + timedelta(minutes=15))
    assert report["quarters_changed"] == 1
    assert report["transactions"] >= 2
    assert stored() == coalesce(raw_entries(["acme"]))
    assert rebuild_rollups("acme", quarter, quarter + timedelta(minutes=15))["transactions"] == 0


def test_rebuild_refuses_ranges_outside_the_raw_retention(tables: str) -> None:
    from llmtally.rollups import InvalidRangeError

    old = day_start(91)
    with pytest.raises(InvalidRangeError, match="retention"):
        rebuild_rollups("acme", old, old + timedelta(days=1))


def test_rebuild_redoes_a_day_when_aggregation_lands_meanwhile(tables: str) -> None:
    start = day_start(2)
    events = random_events(random.Random(10), 40, ["acme"], start, 10)
    store(events)
    deliver(read_stream(tables), tables)
    # Given a raw entry, in a quarter the rebuild is re-rating, that is aggregated while the
    # rebuild is between its reads and its write
    first = events[0]
    late = [first.model_copy(update={"event_id": "late-0001-abcdef", "timestamp": first.timestamp})]
    arrived: list[bool] = []

    def aggregate_late(*_: Any, **__: Any) -> None:
        if not arrived:
            arrived.append(True)
            before = read_stream(stream_arn())
            store(late)
            deliver(read_stream(stream_arn(), before[-1]["dynamodb"]["SequenceNumber"]), stream_arn())

    client = aws.client("dynamodb")
    client.meta.events.register("before-call.dynamodb.TransactWriteItems", aggregate_late, unique_id="late")
    book = _priced_book(3)
    try:
        # When the day is re-rated (so the rebuild has quarters to write)
        rebuild_rollups("acme", start, start + timedelta(days=1), reprice=book)
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="late")
    # Then the late entry is counted once, re-rated like the rest of the day
    assert arrived
    assert stored_rollups(["acme"]) == _repriced(raw_entries(["acme"]), book)


@pytest.mark.parametrize("after", [False, True], ids=["refused", "response-lost"])
@pytest.mark.parametrize("write", [2, 4], ids=["quarter-second-part", "day-second-part"])
def test_an_item_written_in_parts_is_exact_when_a_part_fails(
    tables: str, write: int, after: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollups_repository, "WRITE_THREADS", 1)  # parts and items in a fixed order
    # Given one call in each of 28 cells, all in one quarter: the quarter's and the day's deltas
    # hold more attributes than one UpdateItem carries, so each is written in two parts
    at = day_start().replace(hour=9, minute=16)
    cells = [
        (provider, model, operation) for provider in MODELS for model in MODELS[provider] for operation in OPERATIONS
    ]
    store(
        [
            usage_event("acme", at + timedelta(seconds=i), provider=p, model=m, operation=o, tokens=1000 + i)
            for i, (p, m, o) in enumerate(cells)
        ]
    )
    records = read_stream(tables)
    entries = [RawEntry.from_dynamodb(r["dynamodb"]["NewImage"]) for r in records]
    attributes = {name for entry in entries for name in encode(0, Counters.of(entry))}
    assert len(cells) * len(attributes) > MAX_ATTRIBUTES_PER_WRITE
    # When the second part of the quarter's (or the day's) write fails — refused, or applied with
    # its answer lost — after the 2 dictionary writes per new cell
    with failing_call("UpdateItem", nth=2 * len(cells) + write, after=after):
        response = invoke(records, tables)
    [failure] = response["batchItemFailures"]
    # Then the retry Lambda makes completes the batch exactly once, and a whole redelivery changes nothing
    sequence = [r["dynamodb"]["SequenceNumber"] for r in records]
    assert invoke(records[sequence.index(failure["itemIdentifier"]) :], tables) == {"batchItemFailures": []}
    assert_rollups_match_raw(["acme"])
    invoke(records, tables)
    assert_rollups_match_raw(["acme"])

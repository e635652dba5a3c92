"""The pipeline's invariant (DESIGN.md), property-based, on moto, through both handlers.

Random events across tenants, providers, models, operations, tags, hours and timezones, each
delivered 1–3 times through the ingest handler (SQS batches), then the usage table's stream
delivered to the aggregate handler (stream batches), with one failure injected at any DynamoDB call
of either handler — before the call reaches the table, or after it succeeded with its answer lost —
followed by the retry AWS makes (SQS redelivers the reported messages; Lambda retries a stream batch
from the reported record). A tenant with a budget commits in transactions, one without in marked
writes: each example draws which tenants have one. Then:

- raw entries equal the distinct events (tags and usage provenance included), and their rolled-up
  tags respect the bounds (2 keys per tenant, 2 values per key and month here), folding into
  `(other)`, never dropping a call;
- every rollup equals a brute-force recomputation from the raw entries;
- summaries and daily series in several timezones (30- and 45-minute offsets included), under any
  `where` (provider, model, operation, tag value, `(other)` included), and breakdowns by any
  dimension under any `where`, equal a brute-force answer from the raw entries.

Each example starts from empty tables (emptied in place) in one in-process moto (`mock_aws`: about
2–3× faster than the server for the calls an example makes); 500 examples run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from aggregate.handler import lambda_handler as aggregate_handler
from ingest.handler import lambda_handler as ingest_handler
from llmtally import aws
from llmtally.entries import RawEntry
from llmtally.events import OTHER_TAG_VALUE, Provider, UsageEvent
from llmtally.ingest import default_ingestor
from llmtally.money import nanos_to_usd
from llmtally.pricing import PriceBook
from llmtally.queries import Filter, InvalidQueryError, breakdown, daily_usage, summarize
from llmtally.repositories import rollups as rollups_repository
from llmtally.repositories.cardinality import (
    ModelRegistry,
    OperationTypeRegistry,
    TagRegistry,
    tag_month,
)
from llmtally.repositories.rollups import RollupRepository, forget_cell_codes
from llmtally.resources import ResourceNames
from llmtally.rollups import Counters, coalesce, entry_tags, sum_counters
from llmtally.tables import create_tables
from tests.integration.test_aggregate import cheap_transaction_backups, read_stream, stream_arn
from tests.support.lambda_events import FakeLambdaContext, sqs_event, stream_event_from_records

pytestmark = pytest.mark.integration

__all__ = ["cheap_transaction_backups"]  # the fixture, used by this module's tests too

MODELS = {
    Provider.ANTHROPIC: ("claude-sonnet-4-5-20250929", "claude-private-ft"),
    Provider.OPENAI: ("gpt-5", "gpt-5-mini"),
    Provider.BEDROCK: ("us.anthropic.claude-haiku-4-5-20251001-v1:0",),
}
OPERATIONS = ("query_generation", "detection_rule", "conversation", "rule_enrichment")
TAGS = {"customer": ("acme-corp", "initech", "hooli#2"), "feature": ("search", "chat"), "env": ("prod",)}
#: Tight tag bounds, so examples fold keys and values often.
MAX_TAG_KEYS = 2
MAX_TAG_VALUES = 2
ZONES = ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Eucla", "America/St_Johns")
BOOK = PriceBook()
#: 500 in CI; a smaller number for a quick local run (LLMTALLY_INVARIANT_EXAMPLES=20).
INVARIANT_EXAMPLES = int(os.environ.get("LLMTALLY_INVARIANT_EXAMPLES", "500"))


class InjectedFault(Exception):
    pass


@st.composite
def usage_events(draw: st.DrawFn, tenants: Sequence[str], today: datetime) -> dict[str, Any]:
    provider = draw(st.sampled_from(sorted(MODELS)))
    # One of three days before today's UTC midnight, at hours around the local midnights of the
    # odd zones (18:15 UTC is Kathmandu's, 18:30 Kolkata's, 15:15 Eucla's, 03:30 St John's), any
    # minute and millisecond: events share buckets often enough for coalescing to matter.
    at = (
        today
        - timedelta(days=draw(st.integers(1, 3)))
        + timedelta(hours=draw(st.sampled_from([0, 3, 15, 18, 23])))
        + timedelta(milliseconds=draw(st.integers(0, 3600 * 1000 - 1)))
    )
    return {
        "user_id": draw(st.sampled_from(tenants)),
        "timestamp": at.isoformat(),
        "provider": provider.value,
        "model": draw(st.sampled_from(MODELS[provider])),
        "operation_type": draw(st.sampled_from(OPERATIONS)),
        "status": draw(st.sampled_from(["ok", "ok", "error"])),
        "input_tokens": draw(st.integers(0, 200_000)),
        "cache_read_tokens": draw(st.integers(0, 1_000)),
        "output_tokens": draw(st.integers(0, 50_000)),
        "reasoning_tokens": draw(st.integers(0, 5_000)),
        "latency_ms": draw(st.integers(0, 60_000)),
        "tags": {key: draw(st.sampled_from(TAGS[key])) for key in sorted(draw(st.sets(st.sampled_from(sorted(TAGS)))))},
        **draw(st.sampled_from([{}, {}, {"usage_source": "missing"}, {"usage_source": "reported"}])),
    }


@contextmanager
def fault_at(call_number: int | None, *, after: bool) -> Iterator[list[int]]:
    """Fail the nth DynamoDB call made by either handler (the client both share)."""
    from botocore.exceptions import ClientError

    client = aws.client("dynamodb")
    calls = [0]
    event = f"{'after' if after else 'before'}-call.dynamodb"

    def hook(**kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == call_number:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "injected")

    client.meta.events.register(event, hook, unique_id="invariant-fault")
    try:
        yield calls
    finally:
        client.meta.events.unregister(event, unique_id="invariant-fault")


def ingest(bodies: Sequence[str]) -> None:
    """SQS → ingest handler, batches of ≤ 10, failed messages redelivered (as SQS does)."""
    for start in range(0, len(bodies), 10):
        event = sqs_event(bodies[start : start + 10])
        for _ in range(5):
            try:
                response = ingest_handler(event, FakeLambdaContext())
            except Exception:  # every record failed: Powertools raises, and SQS redelivers them all
                continue
            failures = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            if not failures:
                break
            event = {"Records": [r for r in event["Records"] if r["messageId"] in failures]}
        else:
            raise AssertionError("ingest kept failing")


def aggregate(records: Sequence[dict[str, Any]], arn: str, batch_size: int) -> None:
    """Stream → aggregate handler; a reported failure is retried from that record (as Lambda does)."""
    for start in range(0, len(records), batch_size):
        pending = list(records[start : start + batch_size])
        for _ in range(5):
            response = aggregate_handler(stream_event_from_records(pending, stream_arn=arn), FakeLambdaContext())
            if not response["batchItemFailures"]:
                break
            failed = response["batchItemFailures"][0]["itemIdentifier"]
            pending = pending[[r["dynamodb"]["SequenceNumber"] for r in pending].index(failed) :]
        else:
            raise AssertionError("aggregation kept failing")


@dataclass
class Stream:
    """The usage table's stream, read on from its last record read (the tables live as long as the test)."""

    arn: str
    after: str | None = None

    def new_records(self) -> list[dict[str, Any]]:
        """The records written since the last call (this example's: the previous ones were read by it)."""
        records = read_stream(self.arn, self.after)
        if records:
            self.after = str(records[-1]["dynamodb"]["SequenceNumber"])
        return records


@pytest.fixture
def fresh_tables(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Stream]]:
    """One in-process moto and one set of tables for the whole test, every item removed before each
    example (`empty_tables`: dropping and creating the six tables was ≈ 10 % of an example's time),
    with fresh registries (their caches must not outlive the items). `reset()` returns the usage
    table's stream."""
    monkeypatch.setattr(rollups_repository, "WRITE_THREADS", 1)  # the nth call is the same one every run
    streams: list[Stream] = []

    def reset() -> Stream:
        if streams:
            empty_tables()
            streams[0].new_records()  # none, unless an example that failed (hypothesis shrinking it) left some unread
        else:
            create_tables(aws.client("dynamodb"), ResourceNames())
            streams.append(Stream(stream_arn()))
        ingestor = default_ingestor()
        ingestor.operation_types = OperationTypeRegistry()
        ingestor.models = ModelRegistry()
        ingestor.tags = TagRegistry(max_keys=MAX_TAG_KEYS, max_values=MAX_TAG_VALUES)
        return streams[0]

    with mock_aws():
        aws.reset_clients()
        yield reset
    aws.reset_clients()


def empty_tables() -> None:
    """Remove every item of every table of this process's moto (`mock_aws`), in place: the tables,
    their specs and the usage table's stream stay; nothing is written to the stream (as for a new
    table). A leftover item could not hide: raw entries must equal this example's distinct events
    and every rollup a recomputation from them."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    for table in dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]].tables.values():
        table.items.clear()
    forget_cell_codes()


def scan(table: str) -> list[dict[str, Any]]:
    from llmtally.repositories._dynamodb import deserialize

    client = aws.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend(deserialize(item) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@settings(
    max_examples=INVARIANT_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_raw_entries_and_rollups_equal_the_distinct_events(
    fresh_tables: Callable[[], Stream], data: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_example(fresh_tables, data, monkeypatch)


def check_example(fresh_tables: Callable[[], Stream], data: st.DataObject, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = fresh_tables()
    tenants = ["acme", "globex.b@x"]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    details = data.draw(st.lists(usage_events(tenants, today), min_size=1, max_size=3), label="events")
    for index, detail in enumerate(details):
        detail["event_id"] = f"ev-{index:04d}-x"
    copies = data.draw(st.lists(st.integers(1, 3), min_size=len(details), max_size=len(details)), label="copies")
    rng = data.draw(st.randoms(use_true_random=False), label="order")
    bodies = [json.dumps(d) for d, k in zip(details, copies, strict=True) for _ in range(k)]
    rng.shuffle(bodies)
    fault = data.draw(st.one_of(st.none(), st.integers(1, 60)), label="fault at call")
    after = data.draw(st.booleans(), label="fault after the call")
    batch_size = data.draw(st.sampled_from([2, 5, 100]), label="stream batch size")
    budgeted = data.draw(st.sets(st.sampled_from(tenants)), label="tenants with a budget")
    monkeypatch.setattr("aggregate.handler.budget_keeper", lambda: BudgetsOf(budgeted))

    with fault_at(fault, after=after):
        ingest(bodies)
        aggregate(stream.new_records(), stream.arn, batch_size)

    names = ResourceNames()
    # raw entries = the distinct events
    events = sorted((UsageEvent.model_validate(d) for d in details), key=lambda e: (e.user_id, e.sort_key))
    entries = sorted((RawEntry.from_item(item) for item in scan(names.usage_table)), key=lambda e: (e.user_id, e.sk))
    assert [(e.user_id, e.sk) for e in entries] == [(e.user_id, e.sort_key) for e in events]
    assert [e.cost_nanos for e in entries] == [BOOK.price_event(e).cost_nanos for e in events]
    assert [(e.tags, e.usage_source) for e in entries] == [(e.tags, e.usage_source) for e in events]
    check_tag_bounds(entries)
    # every rollup = a recomputation from the raw entries (checkpoint items aside)
    repo = RollupRepository()
    tag_keys = {key for entry in entries for key in entry_tags(entry)}
    rollups = {item.key: item.counters for tenant in tenants for item in repo.iter_user_items(tenant, tag_keys)}
    assert {k: v for k, v in rollups.items() if not v.is_zero()} == coalesce(entries)
    # reads in several zones, under any `where` = brute force over the raw entries
    zone = ZoneInfo(data.draw(st.sampled_from(ZONES), label="zone"))
    tenant = data.draw(st.sampled_from(tenants), label="tenant")
    local_today = today.astimezone(zone).date()
    mine = [e for e in entries if e.user_id == tenant]
    where = data.draw(filters(mine), label="where")
    # One read-side check per example (each costs tens of Queries): over 500 examples every zone
    # gets each check about 30 times, under every kind of filter.
    check = data.draw(st.sampled_from(["summary", "series", "breakdown"]), label="check")
    # Windows that start and end inside the data (events are 1-3 days old): a bucket just past
    # either edge must not be counted.
    first = local_today - timedelta(days=data.draw(st.integers(1, 4), label="window starts, days ago"))
    last = min(local_today, first + timedelta(days=data.draw(st.integers(0, 3), label="window days - 1")))
    if check == "summary":
        check_summary(tenant, mine, first, last, zone, where)
    elif check == "series":
        check_series(tenant, mine, local_today, zone, where)
    else:
        by = data.draw(st.sampled_from(["provider", "model", "operation", *(f"tag:{k}" for k in TAGS)]), label="by")
        limit = data.draw(st.integers(1, 4), label="limit")
        check_breakdown(tenant, mine, first, last, zone, by, where, limit)


class BudgetsOf:
    """The aggregator's budget keeper, reduced to who has a budget (no ledger): those tenants' records
    are committed in transactions, the others' in marked writes."""

    def __init__(self, budgeted: set[str]) -> None:
        self.budgeted = budgeted

    def begin(self, user_ids: Any, rollups: Any, *, entries: Any = ()) -> None:
        pass

    def has_budget(self, user_id: str) -> bool:
        return user_id in self.budgeted

    def ledger_items(self, entries: Any) -> list[Any]:
        return []

    def forget_totals(self) -> None:
        pass

    def evaluate(self, user_ids: Any) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(published=[], failed=[])


def check_tag_bounds(entries: Sequence[RawEntry]) -> None:
    """Folded tags: sent keys and values or `(other)`, ≤ 2 keys per tenant, ≤ 2 values per key and month."""
    keys: dict[str, set[str]] = {}
    values: dict[tuple[str, str, str], set[str]] = {}
    for entry in entries:
        rolled = entry_tags(entry)
        assert set(rolled) <= set(entry.tags)
        for key, value in rolled.items():
            assert value in (entry.tags[key], OTHER_TAG_VALUE)
            keys.setdefault(entry.user_id, set()).add(key)
            if value != OTHER_TAG_VALUE:
                values.setdefault((entry.user_id, key, tag_month(entry.timestamp)), set()).add(value)
    assert all(len(k) <= MAX_TAG_KEYS for k in keys.values())
    assert all(len(v) <= MAX_TAG_VALUES for v in values.values())


@st.composite
def filters(draw: st.DrawFn, entries: Sequence[RawEntry]) -> Filter | None:
    """No filter, or one on a dimension value the tenant has (or does not have)."""
    options: list[Filter | None] = [None, Filter("provider", "openai"), Filter("model", "gpt-5")]
    for e in entries:
        options += [
            Filter("provider", e.provider.value),
            Filter("model", e.model),
            Filter("operation", e.operation_type),
        ]
        options += [Filter(f"tag:{k}", v) for k, v in entry_tags(e).items()]
    options.append(Filter("tag:customer", OTHER_TAG_VALUE))
    return draw(st.sampled_from(options))


def _attributes(entry: RawEntry) -> dict[str, str]:
    return {
        "provider": entry.provider.value,
        "model": entry.model,
        "operation": entry.operation_type,
        **{f"tag:{k}": v for k, v in entry_tags(entry).items()},
    }


def _selected(entries: Sequence[RawEntry], where: Filter | None) -> list[RawEntry]:
    return [e for e in entries if where is None or _attributes(e).get(where.dimension) == where.value]


def _local_day(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


def check_summary(
    tenant: str, entries: Sequence[RawEntry], first: date, last: date, zone: ZoneInfo, where: Filter | None
) -> None:
    summary = summarize(tenant, first, last, zone.key, where=where)
    inside = [e for e in _selected(entries, where) if first <= _local_day(e.timestamp, zone) <= last]
    total = sum_counters(Counters.of(e) for e in inside)
    assert summary.total_requests == total.requests
    assert summary.total_tokens == total.total_tokens
    assert summary.total_cost_usd == nanos_to_usd(total.cost_nanos)
    assert summary.errors == total.errors
    assert summary.usage_missing == total.usage_missing
    for name, key in (("by_provider", "provider"), ("by_operation", "operation_type")):
        expected: dict[str, int] = {}
        for e in inside:
            value = str(getattr(e, key))
            expected[value] = expected.get(value, 0) + 1
        assert {k: v.requests for k, v in getattr(summary, name).items()} == expected
    assert sum(v.requests for v in summary.by_model.values()) == len(inside)
    assert summary.where == (where.as_dict() if where else None)


def check_series(tenant: str, entries: Sequence[RawEntry], today: date, zone: ZoneInfo, where: Filter | None) -> None:
    series = daily_usage(tenant, 5, zone.key, today=today, where=where)
    for row in series.days:
        day = sum_counters(
            Counters.of(e) for e in _selected(entries, where) if _local_day(e.timestamp, zone) == row.date
        )
        assert (row.requests, row.tokens, row.cost_usd, row.usage_missing) == (
            day.requests,
            day.total_tokens,
            nanos_to_usd(day.cost_nanos),
            day.usage_missing,
        )


def check_breakdown(
    tenant: str,
    entries: Sequence[RawEntry],
    first: date,
    last: date,
    zone: ZoneInfo,
    by: str,
    where: Filter | None,
    limit: int,
) -> None:
    if where is not None and where.dimension.startswith("tag:") and by.startswith("tag:") and where.dimension != by:
        with pytest.raises(InvalidQueryError):
            breakdown(tenant, by, first, last, zone.key, where=where, limit=limit)
        return
    result = breakdown(tenant, by, first, last, zone.key, where=where, limit=limit)
    inside = [e for e in _selected(entries, where) if first <= _local_day(e.timestamp, zone) <= last]
    expected: dict[tuple[str, str | None], Counters] = {}
    for e in inside:
        value = _attributes(e).get(by, "(none)")
        provider = e.provider.value if by == "model" else None
        expected.setdefault((value, provider), Counters()).add(Counters.of(e))
    rows = [*result.rows, *([result.other] if result.other else [])]
    got = {(row.value, row.provider): row.counters for row in result.rows}
    # every row and the rest are exact; the rows are the costliest, in order
    assert result.total.counters == sum_counters(Counters.of(e) for e in inside)
    assert sum_counters(row.counters for row in rows) == result.total.counters
    assert len(result.rows) == min(limit, len(expected))
    assert all(expected[key] == counters for key, counters in got.items())
    costs = [row.counters.cost_nanos for row in result.rows]
    assert costs == sorted(costs, reverse=True)
    left_out = [c.cost_nanos for key, c in expected.items() if key not in got]
    assert all(cost <= min(costs) for cost in left_out)

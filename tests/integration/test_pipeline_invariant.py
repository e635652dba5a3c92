"""The pipeline's invariant (DESIGN.md), property-based, on the moto server, through both handlers.

Random events across tenants, providers, models, operations, hours and timezones, each delivered
1–3 times through the ingest handler (SQS batches), then the usage table's stream delivered to the
aggregate handler (stream batches), with one failure injected at any DynamoDB call of either
handler — before the call reaches the table, or after it succeeded with its answer lost — followed
by the retry AWS makes (SQS redelivers the reported messages; Lambda retries a stream batch from
the reported record). Then:

- raw entries equal the distinct events (tags and usage provenance included);
- every rollup equals a brute-force recomputation from the raw entries;
- summaries and daily series in several timezones (30- and 45-minute offsets included) equal a
  brute-force answer from the events.

Each example starts from empty tables on the per-worker moto server (a reset per example keeps
moto's per-transaction cost small); 500 examples run in CI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregate.handler import lambda_handler as aggregate_handler
from ingest.handler import lambda_handler as ingest_handler
from llmtally import aws
from llmtally.entries import RawEntry
from llmtally.events import Provider, UsageEvent
from llmtally.money import nanos_to_usd
from llmtally.pricing import PriceBook
from llmtally.queries import daily_usage, summarize
from llmtally.repositories.rollups import RollupItem
from llmtally.resources import ResourceNames
from llmtally.rollups import coalesce
from llmtally.tables import create_tables
from tests.conftest import MotoServer
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
TAGS = {"customer": ("acme-corp", "initech"), "feature": ("search", "chat"), "env": ("prod",)}
ZONES = ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Eucla", "America/St_Johns")
BOOK = PriceBook()


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


@pytest.fixture
def fresh_tables(moto: MotoServer) -> Callable[[], str]:
    """Reset the server and create the tables: each example starts empty (small tables keep moto
    fast). Returns the usage table's stream ARN."""

    def reset() -> str:
        moto.reset()
        create_tables(aws.client("dynamodb"), ResourceNames())
        return stream_arn()

    return reset


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
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_raw_entries_and_rollups_equal_the_distinct_events(
    fresh_tables: Callable[[], str], data: st.DataObject
) -> None:
    arn = fresh_tables()
    tenants = ["acme", "globex.b@x"]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    details = data.draw(st.lists(usage_events(tenants, today), min_size=1, max_size=4), label="events")
    for index, detail in enumerate(details):
        detail["event_id"] = f"ev-{index:04d}-x"
    copies = data.draw(st.lists(st.integers(1, 3), min_size=len(details), max_size=len(details)), label="copies")
    rng = data.draw(st.randoms(use_true_random=False), label="order")
    bodies = [json.dumps(d) for d, k in zip(details, copies, strict=True) for _ in range(k)]
    rng.shuffle(bodies)
    fault = data.draw(st.one_of(st.none(), st.integers(1, 40)), label="fault at call")
    after = data.draw(st.booleans(), label="fault after the call")
    batch_size = data.draw(st.sampled_from([2, 5, 100]), label="stream batch size")

    with fault_at(fault, after=after):
        ingest(bodies)
        aggregate(read_stream(arn), arn, batch_size)

    names = ResourceNames()
    # raw entries = the distinct events
    events = sorted((UsageEvent.model_validate(d) for d in details), key=lambda e: (e.user_id, e.sort_key))
    entries = sorted((RawEntry.from_item(item) for item in scan(names.usage_table)), key=lambda e: (e.user_id, e.sk))
    assert [(e.user_id, e.sk) for e in entries] == [(e.user_id, e.sort_key) for e in events]
    assert [e.cost_nanos for e in entries] == [BOOK.price_event(e).cost_nanos for e in events]
    assert [(e.tags, e.usage_source) for e in entries] == [(e.tags, e.usage_source) for e in events]
    # every rollup = a recomputation from the raw entries (checkpoint items aside)
    rollups = {
        (item := RollupItem.from_attributes(raw)).key: item.counters
        for raw in scan(names.rollups_table)
        if raw["pk"].startswith("R#")
    }
    assert {k: v for k, v in rollups.items() if not v.is_zero()} == coalesce(entries)
    # summaries and daily series in several zones = brute force over the events
    zone = ZoneInfo(data.draw(st.sampled_from(ZONES), label="zone"))
    tenant = data.draw(st.sampled_from(tenants), label="tenant")
    local_today = today.astimezone(zone).date()
    mine = [e for e in events if e.user_id == tenant]
    # One read-side check per example (each costs ~30 Queries on moto): over 500 examples every
    # zone gets both checks about 50 times.
    if data.draw(st.booleans(), label="summary, else daily series"):
        check_summary(tenant, mine, local_today - timedelta(days=3), local_today, zone)
    else:
        check_series(tenant, mine, local_today, zone)


def _local_day(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


def check_summary(tenant: str, events: Sequence[UsageEvent], first: date, last: date, zone: ZoneInfo) -> None:
    summary = summarize(tenant, first, last, zone.key)
    inside = [e for e in events if first <= _local_day(e.timestamp, zone) <= last]
    assert summary.total_requests == len(inside)
    assert summary.total_tokens == sum(e.total_tokens for e in inside)
    assert summary.total_cost_usd == nanos_to_usd(sum(BOOK.price_event(e).cost_nanos for e in inside))
    assert summary.errors == sum(e.status == "error" for e in inside)
    assert summary.usage_missing == sum(e.usage_source == "missing" for e in inside)
    for name, key in (("by_provider", "provider"), ("by_operation", "operation_type")):
        expected: dict[str, int] = {}
        for e in inside:
            value = str(getattr(e, key))
            expected[value] = expected.get(value, 0) + 1
        assert {k: v.requests for k, v in getattr(summary, name).items()} == expected
    assert sum(v.requests for v in summary.by_model.values()) == len(inside)


def check_series(tenant: str, events: Sequence[UsageEvent], today: date, zone: ZoneInfo) -> None:
    series = daily_usage(tenant, 5, zone.key, today=today)
    for row in series.days:
        day = [e for e in events if _local_day(e.timestamp, zone) == row.date]
        assert (row.requests, row.tokens, row.cost_usd, row.usage_missing) == (
            len(day),
            sum(e.total_tokens for e in day),
            nanos_to_usd(sum(BOOK.price_event(e).cost_nanos for e in day)),
            sum(e.usage_source == "missing" for e in day),
        )

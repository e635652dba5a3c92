"""The ingest function on the emulator, fed what moto's SQS really returns: bus → rule → queue →
`receive_message` → the Lambda SQS event → the handler → the tables (and the usage table's stream)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

import llmtally.ingest
from ingest.handler import lambda_handler
from llmtally import aws
from llmtally.ingest import Ingestor, RawEntry, RejectReason
from llmtally.pricing import PriceBook
from llmtally.repositories import OperationTypeRegistry, RejectsRepository, UsageRepository
from llmtally.resources import ResourceNames
from tests.conftest import MotoServer
from tests.support.bad_inputs import bad_inputs, valid_detail
from tests.support.lambda_events import FakeLambdaContext, receive_all, sqs_event_from_messages
from tests.support.pipeline import IngestRoute, create_pipeline, put_usage_events, reset_ingest_state

pytestmark = pytest.mark.integration

NAMES = ResourceNames()
FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"
CONTRACT_ATTRIBUTES = {
    "user_id", "sk", "schema_version", "event_id", "timestamp", "request_id", "provider", "model",
    "operation_type", "status", "latency_ms", "input_tokens", "cache_read_tokens", "cache_write_tokens",
    "output_tokens", "reasoning_tokens", "total_tokens", "cost_nanos", "cost_source", "price_version",
    "catalog_model", "reported_cost_nanos", "metadata", "ingested_at", "expires_at", "user_provider",
    "user_operation",
}  # fmt: skip


@pytest.fixture
def route(moto: MotoServer) -> Iterator[IngestRoute]:
    reset_ingest_state()
    yield create_pipeline(NAMES)
    reset_ingest_state()


def deliver(route: IngestRoute, *, batch_size: int = 10) -> list[dict[str, Any]]:
    """Receive everything on the queue and hand it to the handler in Lambda-sized batches; delete
    what succeeded (as the SQS event source mapping does). Returns each batch's response."""
    sqs = aws.client("sqs")
    messages = receive_all(sqs, route.queue_url)
    responses = []
    for start in range(0, len(messages), batch_size):
        batch = messages[start : start + batch_size]
        try:
            response = lambda_handler(sqs_event_from_messages(batch, queue_arn=route.queue_arn), FakeLambdaContext())
        except BatchProcessingError:
            # Every record failed: the invocation errors and Lambda returns the whole batch.
            response = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in batch], "raised": True}
        responses.append(response)
        failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
        for message in batch:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return responses


def scan(table: str) -> list[dict[str, Any]]:
    return list(aws.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"])


def stream_records() -> list[dict[str, Any]]:
    ddb, streams = aws.client("dynamodb"), aws.client("dynamodbstreams")
    arn = ddb.describe_table(TableName=NAMES.usage_table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        records.extend(streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"])
    return records


def now() -> datetime:
    return datetime.now(UTC)


def details(count: int, **changes: Any) -> list[dict[str, Any]]:
    providers = [("anthropic", "claude-3-5-sonnet-20241022"), ("openai", "gpt-4o"), ("google", "gemini-2.5-pro")]
    out = []
    for i in range(count):
        provider, model = providers[i % 3]
        out.append(
            valid_detail(
                now(),
                event_id=f"evt-{i:06d}-pipeline",
                user_id=f"tenant-{i % 4}",
                provider=provider,
                model=model,
                timestamp=(now() - timedelta(minutes=i)).isoformat(),
                metadata={"team": "search"},
                reported_cost_usd="0.001",
                **changes,
            )
        )
    return out


# -- the happy path ---------------------------------------------------------------------------


def test_events_published_on_the_bus_land_as_complete_raw_entries(route: IngestRoute) -> None:
    # Given 12 events published through EventBridge (moto delivers full envelopes to the queue)
    put_usage_events(route.bus_name, details(12))
    # When the queue's messages reach the handler as Lambda would deliver them
    responses = deliver(route)
    # Then nothing failed, and every event is one raw entry with every contract attribute
    assert all(r == {"batchItemFailures": []} for r in responses)
    items = scan(NAMES.usage_table)
    assert len(items) == 12
    for item in items:
        assert set(item) == CONTRACT_ATTRIBUTES
        numbers = [v["N"] for v in item.values() if "N" in v]
        assert all(n.lstrip("-").isdigit() for n in numbers), numbers  # integers only: no float, no exponent
        entry = RawEntry.from_dynamodb(item)
        assert entry.sk == f"{item['timestamp']['S']}#{entry.event_id}"
        assert entry.cost_source == "catalog"
        assert entry.cost_nanos > 0
    # And the stream holds exactly one INSERT per entry (PutItem, never UpdateItem)
    assert sorted(r["eventName"] for r in stream_records()) == ["INSERT"] * 12


def test_the_canonical_fixture_batches_land_with_a_fixed_clock(
    route: IngestRoute, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    ingestor = Ingestor(
        UsageRepository(), RejectsRepository(), OperationTypeRegistry(), PriceBook(), ttl_days=90, clock=lambda: clock
    )
    monkeypatch.setattr(llmtally.ingest, "default_ingestor", lambda: ingestor)
    for name in ("sqs_eventbridge_batch.json", "sqs_bare_batch.json"):
        event = json.loads((FIXTURES / name).read_text())
        assert lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    # The two fixtures carry the same five events, as envelopes and bare: five entries
    entries = {RawEntry.from_dynamodb(i).event_id: RawEntry.from_dynamodb(i) for i in scan(NAMES.usage_table)}
    assert len(entries) == 5
    assert entries["evt-fixture-0001"].cost_nanos == 12_000_000
    assert entries["evt-fixture-0005"].cost_source == "unpriced"
    assert entries["evt-fixture-0003"].error_type == "rate_limit"
    assert OperationTypeRegistry().registered("tenant-a") == {"query_generation", "conversation"}


# -- bad input --------------------------------------------------------------------------------


def test_the_bad_input_catalog_is_rejected_while_valid_events_of_the_same_batches_land(route: IngestRoute) -> None:
    sqs = aws.client("sqs")
    # Given every bad body of the catalog (SQS refuses an empty body, so that one cannot occur) ...
    cases = [case for case in bad_inputs(now()) if case.body]
    assert len(cases) >= 40
    expected: dict[str, tuple[RejectReason, str]] = {}
    valid = details(8)
    bodies: list[tuple[str, Any]] = [(case.body, case) for case in cases]
    # ... interleaved with valid events, bare and as envelopes
    for i, detail in enumerate(valid):
        bodies.insert(i * 7, (json.dumps(detail), None))
    for body, case in bodies:
        message_id = sqs.send_message(QueueUrl=route.queue_url, MessageBody=body)["MessageId"]
        if case is not None:
            expected[message_id] = (case.reason, case.message)
    # When they are delivered in batches of 10
    responses = deliver(route)
    # Then no batch reports a failure: bad input is consumed, never retried
    assert all(r == {"batchItemFailures": []} for r in responses)
    # And each bad message is one reject with the right reason and a readable message
    rejects = RejectsRepository().list_recent(limit=1000)
    assert len(rejects) == len(cases)
    for reject in rejects:
        reason, fragment = expected[reject.message_id]
        assert reject.reason is reason, (reject.message, reason)
        assert fragment in reject.message
        assert reject.body_bytes > 0
        assert len(reject.body.encode()) <= 16 * 1024
    # (the bodies longer than the 16 KiB a reject keeps: the two oversized ones and the deep nesting)
    assert sum(r.body_truncated for r in rejects) == sum(len(c.body.encode()) > 16 * 1024 for c in cases) == 3
    # And every valid event landed
    assert {RawEntry.from_dynamodb(i).event_id for i in scan(NAMES.usage_table)} == {d["event_id"] for d in valid}


def test_rejects_are_listed_newest_first(route: IngestRoute) -> None:
    repo = RejectsRepository()
    start = datetime(2026, 11, 26, 23, 59, tzinfo=UTC)
    for i in range(5):
        repo.record(
            reason=RejectReason.MALFORMED_JSON,
            message="body is not valid JSON",
            body="nope",
            body_bytes=4,
            message_id=f"m-{i}",
            received_at=start + timedelta(hours=i * 12),
        )
    listed = repo.list_recent(limit=10, days=3, now=start + timedelta(days=2))
    assert [r.message_id for r in listed] == ["m-4", "m-3", "m-2", "m-1", "m-0"]
    assert [r.message_id for r in repo.list_recent(limit=2, now=start + timedelta(days=2))] == ["m-4", "m-3"]
    assert repo.list_recent(limit=10, reason=RejectReason.OVERSIZED, now=start + timedelta(days=2)) == []


# -- exactly once -----------------------------------------------------------------------------


def test_one_event_delivered_three_times_in_one_batch_is_one_entry_and_one_insert(route: IngestRoute) -> None:
    (detail,) = details(1)
    put_usage_events(route.bus_name, [detail, detail, detail])
    assert deliver(route) == [{"batchItemFailures": []}]
    assert len(scan(NAMES.usage_table)) == 1
    assert [r["eventName"] for r in stream_records()] == ["INSERT"]


def test_one_event_delivered_across_batches_is_one_entry_and_one_insert(route: IngestRoute) -> None:
    (detail,) = details(1)
    others = details(3)[1:]
    for batch in ([detail, others[0]], [detail], [others[1], detail]):
        put_usage_events(route.bus_name, batch)
        assert all(r == {"batchItemFailures": []} for r in deliver(route))
    assert len(scan(NAMES.usage_table)) == 3
    inserts = [r["dynamodb"]["Keys"]["sk"]["S"] for r in stream_records() if r["eventName"] == "INSERT"]
    assert len(stream_records()) == len(inserts) == 3
    (entry,) = [e for e in map(RawEntry.from_dynamodb, scan(NAMES.usage_table)) if e.event_id == detail["event_id"]]
    assert inserts.count(entry.sk) == 1
    assert len(set(inserts)) == 3


# -- transient failures -----------------------------------------------------------------------


class FlakyClient:
    """A real client whose chosen calls raise a throttling error a given number of times."""

    def __init__(self, operation: str, *, times: int = 1, when: str | None = None) -> None:
        self._real = aws.client("dynamodb")
        self._operation, self._times, self._when = operation, times, when
        self.raised = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._real, name)
        if name != self._operation:
            return real

        def call(**kwargs: Any) -> Any:
            matches = self._when is None or self._when in json.dumps(kwargs, default=str)
            if matches and self.raised < self._times:
                self.raised += 1
                raise ClientError(
                    {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, name.replace("_", "")
                )
            return real(**kwargs)

        return call


def flaky_ingestor(*, usage_client: Any = None, rejects_client: Any = None) -> Ingestor:
    return Ingestor(
        UsageRepository(client=usage_client),
        RejectsRepository(client=rejects_client),
        OperationTypeRegistry(),
        PriceBook(),
        ttl_days=90,
    )


def test_a_throttled_write_fails_exactly_its_message_and_the_redelivery_lands(
    route: IngestRoute, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of 5 where the write of one event is throttled once
    batch = details(5)
    victim = batch[2]["event_id"]
    flaky = FlakyClient("put_item", when=victim)
    monkeypatch.setattr(llmtally.ingest, "default_ingestor", lambda: flaky_ingestor(usage_client=flaky))
    put_usage_events(route.bus_name, batch)
    messages = receive_all(aws.client("sqs"), route.queue_url)
    victim_message = next(m["MessageId"] for m in messages if victim in m["Body"])
    # When the batch is handled
    response = lambda_handler(sqs_event_from_messages(messages, queue_arn=route.queue_arn), FakeLambdaContext())
    # Then exactly that message is reported, the other four landed
    assert response == {"batchItemFailures": [{"itemIdentifier": victim_message}]}
    assert len(scan(NAMES.usage_table)) == 4
    # And when SQS redelivers it (visibility expired), it lands, once
    sqs = aws.client("sqs")
    for message in messages:
        if message["MessageId"] == victim_message:
            sqs.change_message_visibility(
                QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            sqs.delete_message(QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert deliver(route) == [{"batchItemFailures": []}]
    assert len(scan(NAMES.usage_table)) == 5
    assert len(stream_records()) == 5
    assert scan(NAMES.rejects_table) == []


def test_a_failed_reject_write_fails_the_bad_message_so_it_is_not_lost(
    route: IngestRoute, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = FlakyClient("put_item", times=1)
    monkeypatch.setattr(llmtally.ingest, "default_ingestor", lambda: flaky_ingestor(rejects_client=flaky))
    sqs = aws.client("sqs")
    bad_id = sqs.send_message(QueueUrl=route.queue_url, MessageBody="not json")["MessageId"]
    put_usage_events(route.bus_name, details(2))
    responses = deliver(route)
    assert responses == [{"batchItemFailures": [{"itemIdentifier": bad_id}]}]
    assert deliver(route) == [{"batchItemFailures": []}]
    (reject,) = RejectsRepository().list_recent()
    assert (reject.message_id, reject.reason) == (bad_id, RejectReason.MALFORMED_JSON)
    assert len(scan(NAMES.usage_table)) == 2


def test_a_message_that_keeps_failing_ends_in_the_dlq_after_max_receives(
    route: IngestRoute, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given storage that is throttled for one event, whatever the number of retries
    (detail,) = details(1)
    flaky = FlakyClient("put_item", times=10**6, when=detail["event_id"])
    monkeypatch.setattr(llmtally.ingest, "default_ingestor", lambda: flaky_ingestor(usage_client=flaky))
    put_usage_events(route.bus_name, [detail, *details(2)[1:]])
    # When SQS keeps redelivering (the route's maxReceiveCount is 3)
    for _ in range(4):
        deliver(route)
    # Then the message sits in the DLQ, received 3 times, and the other event landed
    dead = receive_all(aws.client("sqs"), route.dlq_url)
    assert len(dead) == 1
    assert detail["event_id"] in dead[0]["Body"]
    assert flaky.raised == 3
    assert len(scan(NAMES.usage_table)) == 1


# -- the per-tenant bound on operation types ---------------------------------------------------


def test_the_operation_type_registry_admits_up_to_its_limit(moto: MotoServer) -> None:
    create_pipeline(NAMES)
    registry = OperationTypeRegistry(limit=3)
    assert [registry.admit("tenant-1", op) for op in ("a", "b", "c", "d", "a", "other")] == [
        True, True, True, False, True, True,
    ]  # fmt: skip
    # A process without the cache decides the same (the set only grows)
    fresh = OperationTypeRegistry(limit=3)
    assert (fresh.admit("tenant-1", "d"), fresh.admit("tenant-1", "b")) == (False, True)
    assert fresh.registered("tenant-1") == {"a", "b", "c"}
    # Tenants are bounded separately
    assert fresh.admit("tenant-2", "d") is True

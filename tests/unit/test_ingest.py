"""The ingest logic without Lambda or AWS: parse, validate, reject with a reason, price, write once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmtally.errors import InvalidCursorError, StorageError
from llmtally.events import UsageEvent
from llmtally.ingest import (
    MAX_BODY_BYTES,
    Ingestor,
    IngestOutcome,
    RawEntry,
    RejectReason,
    raw_entry_item,
    redact,
)
from llmtally.pricing import CostSource, PriceBook
from llmtally.repositories._dynamodb import deserialize, serialize
from llmtally.repositories.rejects import truncate_utf8
from llmtally.repositories.usage import UsageQuery, UsageRepository
from tests.support.bad_inputs import BadInput, bad_inputs, valid_detail
from tests.support.lambda_events import FakeLambdaContext, eventbridge_envelope

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"

#: Every attribute a raw entry may carry (docs/pipeline.md, /tmp/pipeline_contract.md).
REQUIRED_ATTRIBUTES = {
    "user_id", "sk", "schema_version", "event_id", "timestamp", "provider", "model", "operation_type",
    "status", "latency_ms", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "total_tokens", "cost_nanos", "cost_source", "price_version", "ingested_at",
    "expires_at", "user_provider", "user_operation",
}  # fmt: skip
OPTIONAL_ATTRIBUTES = {
    "request_id", "error_type", "cache_write_5m_tokens", "cache_write_1h_tokens", "catalog_model",
    "reported_cost_nanos", "metadata", "original_operation_type",
}  # fmt: skip


# -- in-memory stand-ins for the repositories ----------------------------------------------------


@dataclass
class MemoryUsage:
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    fail_with: Exception | None = None
    #: Fail only for these event ids (all events when empty).
    fail_for: set[str] = field(default_factory=set)

    def put_if_absent(self, item: Mapping[str, Any]) -> bool:
        if self.fail_with is not None and (not self.fail_for or item["event_id"] in self.fail_for):
            raise self.fail_with
        key = (item["user_id"], item["sk"])
        if key in self.items:
            return False
        self.items[key] = dict(item)
        return True


@dataclass
class MemoryRejects:
    records: list[dict[str, Any]] = field(default_factory=list)
    fail_with: Exception | None = None

    def record(self, **kwargs: Any) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.records.append(kwargs)


@dataclass
class MemoryRegistry:
    limit: int = 64
    types: dict[str, set[str]] = field(default_factory=dict)

    def admit(self, user_id: str, operation_type: str) -> bool:
        if operation_type == "other":
            return True
        known = self.types.setdefault(user_id, set())
        if operation_type in known or len(known) < self.limit:
            known.add(operation_type)
            return True
        return False


@dataclass
class Harness:
    usage: MemoryUsage
    rejects: MemoryRejects
    registry: MemoryRegistry
    ingestor: Ingestor


@pytest.fixture
def harness() -> Harness:
    usage, rejects, registry = MemoryUsage(), MemoryRejects(), MemoryRegistry()
    ingestor = Ingestor(usage, rejects, registry, PriceBook(), ttl_days=90, clock=lambda: NOW)  # type: ignore[arg-type]
    return Harness(usage, rejects, registry, ingestor)


# -- valid events --------------------------------------------------------------------------------


def test_a_bare_event_is_stored_priced_centrally(harness: Harness) -> None:
    # Given the seed's worked example, with the producer's own (wrong) cost
    body = json.dumps(valid_detail(NOW, reported_cost_usd="0.5"))
    # When it is ingested
    outcome = harness.ingestor.ingest(body, message_id="m-1")
    # Then it is stored at the catalog price, the producer's figure kept beside it
    assert outcome == IngestOutcome(
        "stored", "m-1", event_id="evt-0001-abcdef", user_id="user-1", cost_source=CostSource.CATALOG
    )
    (item,) = harness.usage.items.values()
    assert item["cost_nanos"] == 12_000_000  # $0.0120, the seed's example
    assert item["reported_cost_nanos"] == 500_000_000
    assert item["cost_source"] == "catalog"
    assert harness.rejects.records == []


def test_an_eventbridge_envelope_is_unwrapped(harness: Harness) -> None:
    body = json.dumps(eventbridge_envelope(valid_detail(NOW)))
    assert harness.ingestor.ingest(body, message_id="m-1").status == "stored"
    assert list(harness.usage.items) == [("user-1", "2026-11-28T11:59:00.000Z#evt-0001-abcdef")]


def test_an_envelope_without_account_as_moto_delivers_it_is_accepted(harness: Harness) -> None:
    envelope = eventbridge_envelope(valid_detail(NOW))
    del envelope["account"]
    assert harness.ingestor.ingest(json.dumps(envelope), message_id="m-1").status == "stored"


def test_a_redelivered_event_is_a_duplicate_not_a_second_entry(harness: Harness) -> None:
    body = json.dumps(valid_detail(NOW))
    statuses = [harness.ingestor.ingest(body, message_id=f"m-{i}").status for i in range(3)]
    assert statuses == ["stored", "duplicate", "duplicate"]
    assert len(harness.usage.items) == 1


def test_the_same_event_as_envelope_and_bare_is_one_entry(harness: Harness) -> None:
    detail = valid_detail(NOW)
    harness.ingestor.ingest(json.dumps(detail), message_id="m-1")
    assert harness.ingestor.ingest(json.dumps(eventbridge_envelope(detail)), message_id="m-2").status == "duplicate"


def test_an_unknown_model_is_stored_unpriced_never_silently_zero(harness: Harness) -> None:
    outcome = harness.ingestor.ingest(json.dumps(valid_detail(NOW, model="private-model-7")), message_id="m")
    assert outcome.cost_source is CostSource.UNPRICED
    (item,) = harness.usage.items.values()
    assert (item["cost_nanos"], item["cost_source"], item["price_version"]) == (0, "unpriced", "unpriced")


def test_an_unknown_model_with_a_reported_cost_uses_it(harness: Harness) -> None:
    body = json.dumps(valid_detail(NOW, model="private-model-7", reported_cost_usd="0.000000123"))
    harness.ingestor.ingest(body, message_id="m")
    (item,) = harness.usage.items.values()
    assert (item["cost_nanos"], item["cost_source"], item["reported_cost_nanos"]) == (123, "reported", 123)


def test_a_json_number_cost_never_goes_through_binary_float(harness: Harness) -> None:
    body = json.dumps(valid_detail(NOW, model="private-model-7")).replace(
        '"latency_ms": 842', '"latency_ms": 842, "reported_cost_usd": 0.123456789'
    )
    harness.ingestor.ingest(body, message_id="m")
    (item,) = harness.usage.items.values()
    assert item["reported_cost_nanos"] == 123_456_789


def test_operation_types_beyond_the_tenant_bound_are_folded_into_other(harness: Harness) -> None:
    # Given a tenant limited to 2 operation types
    harness.registry.limit = 2
    for i, operation in enumerate(["alpha", "beta", "gamma", "alpha"]):
        harness.ingestor.ingest(
            json.dumps(valid_detail(NOW, operation_type=operation, event_id=f"evt-op-{i:04d}")), message_id=f"m{i}"
        )
    items = sorted(harness.usage.items.values(), key=lambda item: item["event_id"])
    # Then the third type is stored as `other`, its spend counted, the sent name kept
    assert [i["operation_type"] for i in items] == ["alpha", "beta", "other", "alpha"]
    assert items[2]["original_operation_type"] == "gamma"
    assert items[2]["user_operation"] == "user-1#other"
    assert items[2]["cost_nanos"] == items[0]["cost_nanos"]
    assert "original_operation_type" not in items[0]


# -- the catalog of bad inputs -------------------------------------------------------------------

CATALOG = bad_inputs(NOW)


def test_the_catalog_has_at_least_forty_bad_inputs_covering_every_reason() -> None:
    assert len(CATALOG) >= 40
    assert {case.reason for case in CATALOG} == set(RejectReason)
    assert len({case.name for case in CATALOG}) == len(CATALOG)


@pytest.mark.parametrize("case", CATALOG, ids=[case.name for case in CATALOG])
def test_each_bad_input_is_rejected_with_its_reason(harness: Harness, case: BadInput) -> None:
    # When a bad body is ingested
    outcome = harness.ingestor.ingest(case.body, message_id="m-bad")
    # Then it is consumed (no exception), recorded with its reason and a readable message
    assert outcome.status == "rejected"
    assert outcome.reason is case.reason, outcome.reason_message
    assert case.message in (outcome.reason_message or ""), outcome.reason_message
    (record,) = harness.rejects.records
    assert record["reason"] is case.reason
    assert record["message_id"] == "m-bad"
    assert record["received_at"] == NOW
    assert record["body_bytes"] == len(case.body.encode())
    assert harness.usage.items == {}


def test_a_reject_names_the_tenant_and_event_when_they_are_well_formed(harness: Harness) -> None:
    harness.ingestor.ingest(json.dumps(valid_detail(NOW, input_tokens=-1)), message_id="m")
    (record,) = harness.rejects.records
    assert (record["user_id"], record["event_id"]) == ("user-1", "evt-0001-abcdef")


def test_a_reject_never_names_a_malformed_tenant(harness: Harness) -> None:
    harness.ingestor.ingest(json.dumps(valid_detail(NOW, user_id="../other")), message_id="m")
    assert harness.rejects.records[0]["user_id"] is None


def test_reasons_never_quote_the_refused_values(harness: Harness) -> None:
    body = json.dumps(valid_detail(NOW, prompt="Tell me the launch codes", model="secret model name"))
    outcome = harness.ingestor.ingest(body, message_id="m")
    assert "launch codes" not in (outcome.reason_message or "")
    assert "secret model name" not in (outcome.reason_message or "")


def test_a_key_in_a_refused_body_is_redacted_before_it_is_stored(harness: Harness) -> None:
    key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"
    body = json.dumps(valid_detail(NOW, metadata={"note": key}, api_key="plain-secret-value"))
    harness.ingestor.ingest(body, message_id="m")
    stored = harness.rejects.records[0]["body"]
    assert key not in stored
    assert "plain-secret-value" not in stored
    assert stored.count("[REDACTED]") == 2
    assert '"user_id": "user-1"' in stored


def test_redact_leaves_token_counts_alone() -> None:
    body = json.dumps(valid_detail(NOW))
    assert redact(body) == body


def test_oversize_is_measured_in_utf8_bytes(harness: Harness) -> None:
    # 100k three-byte characters: 300 KB on the wire though only 100k characters long
    body = json.dumps(valid_detail(NOW, request_id="€" * 100_000), ensure_ascii=False)
    assert len(body) < MAX_BODY_BYTES < len(body.encode())
    assert harness.ingestor.ingest(body, message_id="m").reason is RejectReason.OVERSIZED


# -- failures that a retry may fix propagate -------------------------------------------------------


def test_a_storage_failure_propagates_so_the_message_is_retried(harness: Harness) -> None:
    harness.usage.fail_with = StorageError("PutItem on the usage table failed: ThrottlingException")
    with pytest.raises(StorageError):
        harness.ingestor.ingest(json.dumps(valid_detail(NOW)), message_id="m")


def test_a_failed_reject_write_propagates_so_the_bad_message_is_not_lost(harness: Harness) -> None:
    harness.rejects.fail_with = StorageError("PutItem on the rejects table failed: InternalServerError")
    with pytest.raises(StorageError):
        harness.ingestor.ingest("not json", message_id="m")


# -- the raw entry item --------------------------------------------------------------------------


def _full_event() -> UsageEvent:
    return UsageEvent.model_validate(
        valid_detail(
            NOW,
            status="error",
            error_type="rate_limit",
            cache_read_tokens=100,
            cache_write_tokens=30,
            cache_write_5m_tokens=10,
            cache_write_1h_tokens=20,
            reasoning_tokens=7,
            reported_cost_usd="0.012000001",
            metadata={"team": "search", "attempt": 2, "cached": False, "none": None},
        ),
        context={"now": NOW},
    )


def _walk(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [leaf for v in value.values() for leaf in _walk(v)]
    return [value]


def test_the_raw_item_has_every_attribute_and_no_float() -> None:
    event = _full_event()
    item = raw_entry_item(event, PriceBook().price_event(event), ttl_days=90, now=NOW)
    assert set(item) == REQUIRED_ATTRIBUTES | (OPTIONAL_ATTRIBUTES - {"original_operation_type"})
    assert not any(isinstance(leaf, float) for leaf in _walk(item))
    assert item["sk"] == event.sort_key
    assert item["total_tokens"] == 1500 + 100 + 30 + 500 + 7
    assert item["reported_cost_nanos"] == 12_000_001
    assert item["expires_at"] == int((event.timestamp + timedelta(days=90)).timestamp())
    assert item["ingested_at"] == "2026-11-28T12:00:00.000Z"
    serialize(item)  # boto3 refuses floats: this would raise


def test_optional_attributes_are_omitted_not_null() -> None:
    event = UsageEvent.model_validate(valid_detail(NOW, request_id=None), context={"now": NOW})
    item = raw_entry_item(event, PriceBook().price_event(event), ttl_days=30, now=NOW)
    assert set(item) == REQUIRED_ATTRIBUTES | {"catalog_model"}


def test_raw_entry_reads_back_what_raw_entry_item_wrote() -> None:
    event = _full_event()
    priced = PriceBook().price_event(event)
    item = raw_entry_item(event, priced, ttl_days=90, now=NOW)
    # Given the item as DynamoDB returns it (numbers as Decimal) and as a stream NEW_IMAGE
    from_table = RawEntry.from_item(deserialize(serialize(item)))
    from_stream = RawEntry.from_dynamodb(serialize(item))
    assert from_table == from_stream
    assert from_table.cost_nanos == priced.cost_nanos
    assert isinstance(from_table.cost_nanos, int)
    assert from_table.timestamp == event.timestamp
    assert from_table.tokens() == event.ledger()
    assert from_table.reported_cost_usd == Decimal("0.012000001")
    assert from_table.metadata == {"team": "search", "attempt": 2, "cached": False, "none": None}
    assert isinstance(from_table.metadata["attempt"], int)


def test_raw_entry_refuses_a_fractional_number() -> None:
    event = _full_event()
    item = deserialize(serialize(raw_entry_item(event, PriceBook().price_event(event), ttl_days=90, now=NOW)))
    item["cost_nanos"] = Decimal("1.5")
    with pytest.raises(ValueError, match="expected an integer"):
        RawEntry.from_item(item)


def test_truncate_utf8_cuts_on_a_character_boundary() -> None:
    assert truncate_utf8("abc", 10) == ("abc", False)
    assert truncate_utf8("€€€", 7) == ("€€", True)


# -- cursors (pure: no table needed) -------------------------------------------------------------

REPO = UsageRepository(table_name="t", cursor_key=b"k" * 32)
QUERY = UsageQuery(user_id="user-1", provider=None, start=NOW - timedelta(days=1), end=NOW)
SK = "2026-11-28T11:00:00.000Z#evt-0001-abcdef"


def test_a_cursor_round_trips_for_its_own_tenant_and_query() -> None:
    assert REPO.decode_cursor(REPO.encode_cursor(QUERY, SK), QUERY) == SK


def test_a_cursor_is_opaque() -> None:
    cursor = REPO.encode_cursor(QUERY, SK)
    assert "user-1" not in cursor
    assert "evt-0001" not in cursor


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (UsageQuery(user_id="user-2", start=QUERY.start, end=QUERY.end), "another user"),
        (UsageQuery(user_id="user-1", start=QUERY.start, end=QUERY.end, order="oldest"), "different query"),
        (UsageQuery(user_id="user-1", model="gpt-4o", start=QUERY.start, end=QUERY.end), "different query"),
    ],
)
def test_a_cursor_for_another_tenant_or_query_is_refused(query: UsageQuery, message: str) -> None:
    with pytest.raises(InvalidCursorError, match=message):
        REPO.decode_cursor(REPO.encode_cursor(QUERY, SK), query)


def _forge(cursor: str, **changes: Any) -> str:
    import base64

    payload, signature = cursor.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{forged}.{signature}"


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        "a.b.c",
        "!!!.???",
        _forge(REPO.encode_cursor(QUERY, SK), u="user-2"),
        _forge(REPO.encode_cursor(QUERY, SK), k="2026-11-28T11:30:00.000Z#evt-x"),
        UsageRepository(table_name="t", cursor_key=b"other-key").encode_cursor(QUERY, SK),
        REPO.encode_cursor(QUERY, SK)[:-2],
    ],
    ids=["empty", "garbage", "three parts", "not base64", "other user", "other key", "other signer", "cut"],
)
def test_a_forged_or_tampered_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        REPO.decode_cursor(cursor, QUERY)


# -- the handler with in-memory repositories, on the canonical fixtures ---------------------------


@pytest.mark.parametrize("fixture", ["sqs_eventbridge_batch.json", "sqs_bare_batch.json"])
def test_the_handler_stores_a_canonical_batch(harness: Harness, monkeypatch: pytest.MonkeyPatch, fixture: str) -> None:
    import llmtally.ingest
    from ingest.handler import lambda_handler

    monkeypatch.setattr(llmtally.ingest, "default_ingestor", lambda: harness.ingestor)
    event = json.loads((FIXTURES / fixture).read_text())
    assert lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert len(harness.usage.items) == len(event["Records"]) == 5
    sources = {item["cost_source"] for item in harness.usage.items.values()}
    assert sources == {"catalog", "unpriced"}


def test_the_handler_reports_exactly_the_failed_message(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmtally.ingest
    from ingest.handler import lambda_handler

    monkeypatch.setattr(llmtally.ingest, "default_ingestor", lambda: harness.ingestor)
    event = json.loads((FIXTURES / "sqs_bare_batch.json").read_text())
    # Given the write of one event of the batch is throttled
    failing = event["Records"][2]
    harness.usage.fail_with = StorageError("PutItem on the usage table failed: ThrottlingException")
    harness.usage.fail_for = {json.loads(failing["body"])["event_id"]}
    # Then only its message is reported, the other four are stored
    response = lambda_handler(event, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": failing["messageId"]}]}
    assert len(harness.usage.items) == 4


def test_a_batch_whose_every_message_fails_raises_so_lambda_retries_it_whole(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    import llmtally.ingest
    from ingest.handler import lambda_handler

    monkeypatch.setattr(llmtally.ingest, "default_ingestor", lambda: harness.ingestor)
    harness.usage.fail_with = StorageError("PutItem on the usage table failed: ThrottlingException")
    event = json.loads((FIXTURES / "sqs_bare_batch.json").read_text())
    with pytest.raises(BatchProcessingError):
        lambda_handler(event, FakeLambdaContext())

"""The usage event contract v1: what is accepted, what is refused, and the message it is refused with."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from llmtally.events import (
    SEED_OPERATION_TYPES,
    Provider,
    Status,
    TokenCounts,
    UsageEvent,
    format_timestamp,
    usage_event_json_schema,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def valid_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema_version": 1,
        "event_id": "evt-0001-abcdef",
        "user_id": "user-1",
        "request_id": "req-42",
        "timestamp": "2026-11-28T11:59:00.123Z",
        "provider": "anthropic",
        "model": "claude-3-5-sonnet-20241022",
        "operation_type": "query_generation",
        "status": "ok",
        "input_tokens": 1500,
        "output_tokens": 500,
        "latency_ms": 842,
    }
    for key, value in changes.items():
        if value is _DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


_DROP = object()


def parse(body: dict[str, Any]) -> UsageEvent:
    return UsageEvent.from_json(json.dumps(body), now=NOW)


def test_the_seed_example_event_is_accepted_and_normalised() -> None:
    # Given the seed's worked example as an event
    event = parse(valid_body())
    # Then the ledger and the identity are as sent, the total derived
    assert event.provider is Provider.ANTHROPIC
    assert event.status is Status.OK
    assert event.total_tokens == 2000
    assert event.timestamp == datetime(2026, 11, 28, 11, 59, 0, 123000, tzinfo=UTC)
    assert event.sort_key == "2026-11-28T11:59:00.123Z#evt-0001-abcdef"


def test_round_trip_through_json_is_lossless() -> None:
    event = parse(
        valid_body(
            cache_read_tokens=100,
            cache_write_tokens=30,
            cache_write_5m_tokens=10,
            cache_write_1h_tokens=20,
            reasoning_tokens=7,
            reported_cost_usd="0.012000001",
            metadata={"team": "search", "attempt": 2, "cached": False},
        )
    )
    again = UsageEvent.from_json(event.to_json(), now=NOW)
    assert again == event
    assert json.loads(event.to_json())["reported_cost_usd"] == "0.012000001"
    assert "total_tokens" not in json.loads(event.to_json())


@pytest.mark.parametrize("operation", SEED_OPERATION_TYPES)
def test_seed_operation_types_are_accepted(operation: str) -> None:
    assert parse(valid_body(operation_type=operation)).operation_type == operation


@pytest.mark.parametrize("operation", ["summarize_ticket", "a", "x" * 64])
def test_custom_operation_types_within_bounds_are_accepted(operation: str) -> None:
    assert parse(valid_body(operation_type=operation)).operation_type == operation


def test_timestamps_are_normalised_to_utc_milliseconds() -> None:
    event = parse(valid_body(timestamp="2026-11-28T17:29:00.123456+05:30"))
    assert event.timestamp == datetime(2026, 11, 28, 11, 59, 0, 123000, tzinfo=UTC)
    assert format_timestamp(event.timestamp) == "2026-11-28T11:59:00.123Z"


def test_clock_skew_within_bound_is_accepted() -> None:
    ahead = NOW + timedelta(minutes=4)
    assert parse(valid_body(timestamp=ahead.isoformat())).timestamp == ahead


def test_a_float_reported_cost_goes_through_its_decimal_repr() -> None:
    event = UsageEvent.model_validate(valid_body(reported_cost_usd=0.1), context={"now": NOW})
    assert event.reported_cost_usd == Decimal("0.1")


def test_defaults_give_a_fresh_id_and_now() -> None:
    event = UsageEvent(user_id="u1", provider=Provider.OPENAI, model="gpt-4o", operation_type="conversation")
    assert len(event.event_id) == 32
    assert abs(event.timestamp - datetime.now(UTC)) < timedelta(minutes=1)
    assert event.total_tokens == 0


# -- the catalogue of bad events: each is refused, and the message says why -------------------------

BAD_EVENTS: list[tuple[str, dict[str, Any], str]] = [
    ("negative input tokens", valid_body(input_tokens=-1), "greater than or equal to 0"),
    ("negative output tokens", valid_body(output_tokens=-5), "greater than or equal to 0"),
    ("fractional tokens", valid_body(input_tokens=1.5), "valid integer"),
    ("integral float tokens", valid_body(output_tokens=500.0), "valid integer"),
    ("string tokens", valid_body(input_tokens="1500"), "valid integer"),
    ("boolean tokens", valid_body(cache_read_tokens=True), "valid integer"),
    ("absurd token count", valid_body(output_tokens=10**12), "less than or equal to 1000000000"),
    ("negative reasoning", valid_body(reasoning_tokens=-2), "greater than or equal to 0"),
    ("cache split not adding up", valid_body(cache_write_tokens=10, cache_write_5m_tokens=3), "must equal"),
    ("cache split without total", valid_body(cache_write_1h_tokens=5), "must equal"),
    ("total sent by the producer", valid_body(total_tokens=2000), "Extra inputs are not permitted"),
    ("unknown provider", valid_body(provider="cohere"), "'anthropic', 'openai', 'google' or 'bedrock'"),
    ("provider in capitals", valid_body(provider="OpenAI"), "'anthropic', 'openai', 'google' or 'bedrock'"),
    ("missing provider", valid_body(provider=_DROP), "Field required"),
    ("missing user", valid_body(user_id=_DROP), "Field required"),
    ("user id with a slash", valid_body(user_id="../other-user"), "String should match pattern"),
    ("user id with spaces", valid_body(user_id="user 1"), "String should match pattern"),
    ("user id too long", valid_body(user_id="u" * 129), "at most 128 characters"),
    ("user id with dot-dot", valid_body(user_id="a..b"), "String should match pattern"),
    ("empty user id", valid_body(user_id=""), "String should match pattern"),
    ("event id with a hash", valid_body(event_id="evt#00000001"), "String should match pattern"),
    ("event id too short", valid_body(event_id="abc"), "String should match pattern"),
    ("request id with spaces", valid_body(request_id="req 42"), "String should match pattern"),
    ("operation in capitals", valid_body(operation_type="QueryGeneration"), "String should match pattern"),
    ("operation too long", valid_body(operation_type="x" * 65), "String should match pattern"),
    ("operation with a dash", valid_body(operation_type="query-generation"), "String should match pattern"),
    ("model with a hash", valid_body(model="gpt-4o#x"), "String should match pattern"),
    ("empty model", valid_body(model=""), "String should match pattern"),
    ("unknown status", valid_body(status="failed"), "'ok' or 'error'"),
    ("error type on success", valid_body(error_type="timeout"), "only allowed when status is 'error'"),
    ("timestamp without timezone", valid_body(timestamp="2026-11-28T11:59:00"), "timezone"),
    ("timestamp far in the future", valid_body(timestamp="2026-11-28T12:30:00Z"), "in the future"),
    ("timestamp too old", valid_body(timestamp="2026-06-01T00:00:00Z"), "older than 90 days"),
    ("timestamp not a date", valid_body(timestamp="yesterday"), "valid datetime"),
    ("negative latency", valid_body(latency_ms=-1), "greater than or equal to 0"),
    ("fractional latency", valid_body(latency_ms=12.5), "valid integer"),
    ("latency over an hour", valid_body(latency_ms=3_600_001), "less than or equal to 3600000"),
    ("negative reported cost", valid_body(reported_cost_usd="-0.01"), "greater than or equal to 0"),
    ("reported cost below a nano-dollar", valid_body(reported_cost_usd="0.0000000001"), "decimal places"),
    ("reported cost not a number", valid_body(reported_cost_usd="cheap"), "valid decimal"),
    ("unknown schema version", valid_body(schema_version=2), "Input should be 1"),
    ("saved cost without a cache hit", valid_body(saved_cost_usd="0.01"), "only allowed when cache_hit is true"),
    (
        "negative saved cost",
        valid_body(cache_hit=True, input_tokens=0, output_tokens=0, saved_cost_usd="-1"),
        "greater than or equal",
    ),
    ("cache hit with tokens", valid_body(cache_hit=True, saved_cost_usd="0.01"), "carries no tokens"),
    ("cache hit that failed", valid_body(cache_hit=True, status="error", input_tokens=0, output_tokens=0), "status"),
    (
        "cache hit with a cost",
        valid_body(cache_hit=True, input_tokens=0, output_tokens=0, reported_cost_usd="1"),
        "costs nothing",
    ),
    ("cache hit as text", valid_body(cache_hit="yes"), "valid boolean"),
    ("unknown field", valid_body(prompt="What is 2+2?"), "Extra inputs are not permitted"),
    ("metadata with too many keys", valid_body(metadata={f"k{i}": i for i in range(17)}), "at most 16"),
    ("metadata value too long", valid_body(metadata={"note": "x" * 257}), "at most 256"),
    ("metadata key with spaces", valid_body(metadata={"my key": "v"}), "must match"),
    ("metadata named like a secret", valid_body(metadata={"api_key": "x"}), "looks like a secret"),
    ("metadata holding a key", valid_body(metadata={"note": "sk-ant-api03-abcdefghijklmnopqrst"}), "API key"),
    ("metadata nested object", valid_body(metadata={"nested": {"a": 1}}), "metadata.nested"),
    ("metadata too large", valid_body(metadata={f"k{i}": "y" * 200 for i in range(12)}), "bytes as JSON"),
]


def test_the_catalogue_has_at_least_thirty_bad_events() -> None:
    assert len(BAD_EVENTS) >= 30


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in BAD_EVENTS], ids=[n for n, _, _ in BAD_EVENTS])
def test_bad_events_are_refused_with_a_clear_message(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(body)
    assert message in str(caught.value)


@pytest.mark.parametrize("raw", ["", "not json", "[]", '"event"', "{", "null"])
def test_malformed_json_is_refused(raw: str) -> None:
    with pytest.raises(ValidationError):
        UsageEvent.from_json(raw, now=NOW)


# -- the ledger ------------------------------------------------------------------------------------

ledgers = st.builds(
    TokenCounts,
    input_tokens=st.integers(0, 10**7),
    cache_read_tokens=st.integers(0, 10**7),
    cache_write_tokens=st.just(0),
    output_tokens=st.integers(0, 10**7),
    reasoning_tokens=st.integers(0, 10**7),
)


@given(ledgers)
def test_total_is_the_sum_of_disjoint_buckets(tokens: TokenCounts) -> None:
    assert tokens.total_tokens == (
        tokens.input_tokens
        + tokens.cache_read_tokens
        + tokens.cache_write_tokens
        + tokens.output_tokens
        + tokens.reasoning_tokens
    )


def test_ledger_drops_event_fields() -> None:
    event = parse(valid_body(cache_read_tokens=3))
    assert event.ledger() == TokenCounts(input_tokens=1500, output_tokens=500, cache_read_tokens=3)


def test_json_schema_describes_the_contract() -> None:
    schema = usage_event_json_schema()
    assert schema["title"] == "LLMUsageEvent"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"user_id", "provider", "model", "operation_type"}
    assert "total_tokens" not in schema["properties"]
    assert schema["properties"]["provider"]["$ref"].endswith("Provider")


def test_the_schema_in_docs_is_current() -> None:
    from pathlib import Path

    on_disk = json.loads((Path(__file__).parents[2] / "docs" / "usage-event.schema.json").read_text())
    assert on_disk == usage_event_json_schema(), "run `make schema` and commit docs/usage-event.schema.json"


# -- response-cache hits -----------------------------------------------------------------------------


def test_a_cache_hit_round_trips_and_ordinary_events_keep_their_wire_form() -> None:
    # Given a hit: zero tokens, status ok, what the answer first cost
    hit = parse(valid_body(cache_hit=True, input_tokens=0, output_tokens=0, saved_cost_usd="0.012", latency_ms=3))
    assert (hit.cache_hit, hit.saved_cost_usd, hit.total_tokens) == (True, Decimal("0.012"), 0)
    # Then it survives the wire exactly (money as a string, never a float)
    detail = hit.to_detail()
    assert (detail["cache_hit"], detail["saved_cost_usd"]) == (True, "0.012")
    assert UsageEvent.from_json(hit.to_json(), now=NOW) == hit
    # And an ordinary event is sent as before the cache existed (no cache_hit: false on the wire)
    plain = parse(valid_body())
    assert "cache_hit" not in plain.to_detail()
    assert "saved_cost_usd" not in plain.to_json()
    assert plain.cache_hit is False
    assert plain.saved_cost_usd is None


def test_a_cache_hit_as_a_json_number_is_exact() -> None:
    body = valid_body(cache_hit=True, input_tokens=0, output_tokens=0)
    raw = json.dumps(body)[:-1] + ', "saved_cost_usd": 0.1}'
    assert UsageEvent.from_json(raw, now=NOW).saved_cost_usd == Decimal("0.1")

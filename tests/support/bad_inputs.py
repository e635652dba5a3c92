"""Usage-event bodies for the ingest tests: a valid one, and a catalog of bad ones with the reason
each must be refused with. Built relative to a clock, so the same catalog serves the unit tier
(a fixed `now`) and the emulator tier (the real clock)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.support.lambda_events import eventbridge_envelope

from llmtally.events import format_timestamp
from llmtally.ingest import MAX_BODY_BYTES, RejectReason

DROP: Any = object()


def valid_detail(now: datetime, **changes: Any) -> dict[str, Any]:
    """A valid event one minute before `now` (the seed's worked example); `DROP` removes a field."""
    body: dict[str, Any] = {
        "schema_version": 1,
        "event_id": "evt-0001-abcdef",
        "user_id": "user-1",
        "request_id": "req-42",
        "timestamp": format_timestamp(now - timedelta(minutes=1)),
        "provider": "anthropic",
        "model": "claude-3-5-sonnet-20241022",
        "operation_type": "query_generation",
        "status": "ok",
        "input_tokens": 1500,
        "output_tokens": 500,
        "latency_ms": 842,
    }
    for key, value in changes.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


@dataclass(frozen=True)
class BadInput:
    name: str
    body: str
    reason: RejectReason
    #: A fragment the recorded reason message must contain.
    message: str


def bad_inputs(now: datetime) -> list[BadInput]:
    def bare(**changes: Any) -> str:
        return json.dumps(valid_detail(now, **changes))

    def envelope(detail: Any = None, **changes: Any) -> str:
        env: dict[str, Any] = eventbridge_envelope(valid_detail(now))
        if detail is DROP:
            env.pop("detail")
        elif detail is not None:
            env["detail"] = detail
        for key, value in changes.items():
            key = key.replace("_", "-")
            if value is DROP:
                env.pop(key, None)
            else:
                env[key] = value
        return json.dumps(env)

    cv = RejectReason.CONTRACT_VIOLATION
    return [
        # -- not JSON at all
        BadInput("empty body", "", RejectReason.MALFORMED_JSON, "not valid JSON"),
        BadInput("plain text", "hello, world", RejectReason.MALFORMED_JSON, "not valid JSON"),
        BadInput("truncated object", '{"user_id": "user-1", "provider"', RejectReason.MALFORMED_JSON, "line 1"),
        BadInput("trailing garbage", bare() + " trailing", RejectReason.MALFORMED_JSON, "Extra data"),
        BadInput("NaN token count", bare().replace("1500", "NaN"), RejectReason.MALFORMED_JSON, "NaN"),
        BadInput("Infinity latency", bare().replace("842", "Infinity"), RejectReason.MALFORMED_JSON, "Infinity"),
        BadInput("single quotes", "{'user_id': 'user-1'}", RejectReason.MALFORMED_JSON, "not valid JSON"),
        # Beyond Python's own int-from-string limit (ValueError) and recursion limit (RecursionError)
        BadInput(
            "5,000-digit integer", bare().replace("1500", "9" * 5000), RejectReason.MALFORMED_JSON, "longer than 64"
        ),
        BadInput(
            "10,000 nested arrays", "[" * 10_000 + "]" * 10_000, RejectReason.MALFORMED_JSON, "nested deeper than 32"
        ),
        BadInput(
            "deep metadata", bare(metadata={"a": json.loads("[" * 40 + "]" * 40)}), RejectReason.MALFORMED_JSON, "32"
        ),
        # -- JSON, but not an object
        BadInput("array", "[]", RejectReason.NOT_AN_OBJECT, "array"),
        BadInput("string", '"event"', RejectReason.NOT_AN_OBJECT, "string"),
        BadInput("null", "null", RejectReason.NOT_AN_OBJECT, "null"),
        BadInput("number", "42", RejectReason.NOT_AN_OBJECT, "number"),
        # -- envelopes
        BadInput("envelope without detail", envelope(detail=DROP), RejectReason.BAD_ENVELOPE, "detail"),
        BadInput(
            "detail is a string", envelope(detail=json.dumps(valid_detail(now))), RejectReason.BAD_ENVELOPE, "detail"
        ),
        BadInput("detail is a list", envelope(detail=[valid_detail(now)]), RejectReason.BAD_ENVELOPE, "detail"),
        BadInput("envelope without detail-type", envelope(detail_type=DROP), RejectReason.BAD_ENVELOPE, "detail-type"),
        BadInput("envelope without source", envelope(source=DROP), RejectReason.BAD_ENVELOPE, "source"),
        BadInput("wrong source", envelope(source="aws.ec2"), RejectReason.WRONG_SOURCE, "'aws.ec2'"),
        BadInput("wrong detail-type", envelope(detail_type="LLMUsageV2"), RejectReason.WRONG_DETAIL_TYPE, "LLMUsageV2"),
        BadInput(
            "envelope around a bad event", envelope(detail=valid_detail(now, input_tokens=-1)), cv, "input_tokens"
        ),
        # -- size
        BadInput("oversized bare body", bare(request_id="r" * MAX_BODY_BYTES), RejectReason.OVERSIZED, "bytes"),
        BadInput(
            "oversized envelope",
            envelope(detail={**valid_detail(now), "pad": "x" * MAX_BODY_BYTES}),
            RejectReason.OVERSIZED,
            "at most 262144",
        ),
        # -- versions
        BadInput("schema version 2", bare(schema_version=2), RejectReason.UNKNOWN_SCHEMA_VERSION, "'2'"),
        BadInput("schema version 0", bare(schema_version=0), RejectReason.UNKNOWN_SCHEMA_VERSION, "not supported"),
        BadInput("schema version as text", bare(schema_version="1"), RejectReason.UNKNOWN_SCHEMA_VERSION, "'1'"),
        BadInput("schema version true", bare(schema_version=True), RejectReason.UNKNOWN_SCHEMA_VERSION, "True"),
        # -- the contract, field by field
        BadInput("missing event id", bare(event_id=DROP), cv, "event_id: Field required"),
        BadInput("missing timestamp", bare(timestamp=DROP), cv, "timestamp: Field required"),
        BadInput("missing user", bare(user_id=DROP), cv, "user_id: Field required"),
        BadInput("missing provider", bare(provider=DROP), cv, "provider: Field required"),
        BadInput("missing model", bare(model=DROP), cv, "model: Field required"),
        BadInput("missing operation", bare(operation_type=DROP), cv, "operation_type: Field required"),
        BadInput("negative input tokens", bare(input_tokens=-1), cv, "input_tokens: Input should be greater than"),
        BadInput("fractional tokens", bare(output_tokens=1.5), cv, "output_tokens: Input should be a valid integer"),
        BadInput("integral float tokens", bare(output_tokens=500.0), cv, "output_tokens"),
        BadInput("string tokens", bare(input_tokens="1500"), cv, "input_tokens: Input should be a valid integer"),
        BadInput("boolean tokens", bare(cache_read_tokens=True), cv, "cache_read_tokens"),
        BadInput("absurd token count", bare(output_tokens=10**12), cv, "less than or equal to 1000000000"),
        BadInput("cache split not adding up", bare(cache_write_tokens=10, cache_write_5m_tokens=3), cv, "must equal"),
        BadInput("total sent by the producer", bare(total_tokens=2000), cv, "total_tokens: Extra inputs"),
        BadInput("unknown provider", bare(provider="cohere"), cv, "provider: Input should be 'anthropic'"),
        BadInput("user id with a slash", bare(user_id="../other-user"), cv, "user_id: String should match pattern"),
        BadInput("user id with dot-dot", bare(user_id="team..admin"), cv, "user_id: String should match pattern"),
        BadInput("user id too long", bare(user_id="u" * 129), cv, "user_id: String should have at most 128"),
        BadInput("event id with a hash", bare(event_id="evt#00000001"), cv, "event_id: String should match"),
        BadInput("operation in capitals", bare(operation_type="QueryGeneration"), cv, "operation_type"),
        BadInput("model with spaces", bare(model="gpt 4o"), cv, "model: String should match pattern"),
        BadInput("unknown status", bare(status="failed"), cv, "status: Input should be 'ok' or 'error'"),
        BadInput("error type on success", bare(error_type="timeout"), cv, "only allowed when status is 'error'"),
        BadInput("timestamp without timezone", bare(timestamp="2026-11-28T11:59:00"), cv, "timezone"),
        BadInput(
            "timestamp in the future", bare(timestamp=format_timestamp(now + timedelta(minutes=30))), cv, "future"
        ),
        BadInput(
            "timestamp too old", bare(timestamp=format_timestamp(now - timedelta(days=91))), cv, "older than 90 days"
        ),
        BadInput("timestamp not a date", bare(timestamp="yesterday"), cv, "timestamp: Input should be a valid"),
        BadInput("fractional latency", bare(latency_ms=12.5), cv, "latency_ms"),
        BadInput("negative reported cost", bare(reported_cost_usd="-0.01"), cv, "reported_cost_usd"),
        BadInput("cost below a nano-dollar", bare(reported_cost_usd="0.0000000001"), cv, "decimal places"),
        BadInput("saved cost without a cache hit", bare(saved_cost_usd="0.01"), cv, "only allowed when cache_hit"),
        BadInput("cache hit with tokens", bare(cache_hit=True), cv, "a cache_hit event carries no tokens"),
        BadInput(
            "negative saved cost",
            bare(cache_hit=True, input_tokens=0, output_tokens=0, saved_cost_usd="-0.01"),
            cv,
            "saved_cost_usd",
        ),
        BadInput("unknown field (a prompt)", bare(prompt="What is 2+2?"), cv, "prompt: Extra inputs are not permitted"),
        BadInput("metadata named like a secret", bare(metadata={"api_key": "x"}), cv, "looks like a secret"),
        BadInput("metadata holding a key", bare(metadata={"note": "sk-ant-api03-abcdefghijklmnopqrst"}), cv, "API key"),
        BadInput("metadata too many keys", bare(metadata={f"k{i}": i for i in range(17)}), cv, "at most 16"),
        BadInput(
            "everything wrong",
            json.dumps({"user_id": 7, "event_id": 1, "timestamp": 2, "a": 1, "b": 2, "c": 3}),
            cv,
            "more)",
        ),
    ]

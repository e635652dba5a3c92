"""GenAI spans → usage events: current and deprecated attribute names, OpenInference, the cache double count,
ignored and rejected spans, tenant, tags, errors, stable ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.events import Status, UsageSource
from llmtally.integrations.otel_mapping import SpanMapping, SpanView, ledger_from_totals, span_to_event

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
END_NS = int((NOW - timedelta(minutes=1)).timestamp()) * 1_000_000_000 + 123_456_789
MAPPING = SpanMapping(default_user_id="acme")


def span(attributes: dict[str, Any], *, resource: dict[str, Any] | None = None, error: bool = False) -> SpanView:
    return SpanView(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        name="chat gpt-4o",
        start_ns=END_NS - 1_500_000_000,
        end_ns=END_NS,
        error=error,
        attributes=attributes,
        resource=resource or {"service.name": "checkout"},
    )


CURRENT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.cache_read.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.reasoning.output_tokens": 100,
}


def test_input_tokens_include_the_cache_so_the_cache_is_subtracted_not_counted_twice() -> None:
    # Given a span whose input_tokens (1200) include 1000 cache reads, and whose output (300) includes 100 reasoning
    result = span_to_event(span(CURRENT), MAPPING, now=NOW)
    # Then the ledger holds each token once
    assert result.kind == "event"
    event = result.event
    assert event is not None
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens) == (200, 1000, 0)
    assert (event.output_tokens, event.reasoning_tokens) == (200, 100)
    assert event.total_tokens == 1500
    # And the rest of the event comes from the span
    assert event.event_id == "otel:0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331"
    assert (event.provider, event.model, event.operation_type) == ("openai", "gpt-4o-2024-08-06", "chat")
    assert event.user_id == "acme"
    assert event.request_id == "chatcmpl-1"
    assert event.latency_ms == 1500
    assert event.timestamp == datetime.fromtimestamp(END_NS // 1_000_000 / 1000, UTC)
    assert event.metadata == {"source": "otlp", "otel.service": "checkout"}
    assert event.status is Status.OK
    assert event.usage_source is UsageSource.REPORTED


def test_deprecated_names_and_anthropic_cache_writes() -> None:
    # Given an older instrumentation: gen_ai.system, prompt/completion tokens, underscore cache names
    old = {
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.prompt_tokens": 5000,
        "gen_ai.usage.cache_read_input_tokens": 3000,
        "gen_ai.usage.cache_creation_input_tokens": 1500,
        "gen_ai.usage.completion_tokens": 400,
        "gen_ai.usage.reasoning_tokens": 150,
    }
    event = span_to_event(span(old), MAPPING, now=NOW).event
    assert event is not None
    assert (event.provider, event.model) == ("anthropic", "claude-sonnet-4-5")
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens) == (500, 3000, 1500)
    assert (event.output_tokens, event.reasoning_tokens) == (250, 150)


def test_the_current_name_wins_over_its_deprecated_alias() -> None:
    both = {**CURRENT, "gen_ai.usage.prompt_tokens": 999_999, "gen_ai.system": "anthropic"}
    event = span_to_event(span(both), MAPPING, now=NOW).event
    assert event is not None
    assert (event.provider, event.input_tokens) == ("openai", 200)


def test_openinference_llm_spans() -> None:
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.provider": "openai",
        "llm.model_name": "gpt-4o-mini",
        "llm.token_count.prompt": 800,
        "llm.token_count.prompt_details.cache_read": 512,
        "llm.token_count.completion": 60,
        "llm.token_count.completion_details.reasoning": 20,
    }
    event = span_to_event(span(attributes), MAPPING, now=NOW).event
    assert event is not None
    assert (event.input_tokens, event.cache_read_tokens, event.output_tokens, event.reasoning_tokens) == (
        288,
        512,
        40,
        20,
    )


def test_a_producer_that_reports_the_buckets_apart_is_detected_when_it_shows() -> None:
    # Given input (50) smaller than its cache reads (1000): the producer did not include the cache
    attributes = {**CURRENT, "gen_ai.usage.input_tokens": 50}
    event = span_to_event(span(attributes), MAPPING, now=NOW).event
    assert event is not None
    assert (event.input_tokens, event.cache_read_tokens) == (50, 1000)
    assert event.metadata["otel.usage_convention"] == "exclusive"


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"http.method": "GET"}, "not a GenAI span"),
        ({**CURRENT, "gen_ai.operation.name": "invoke_agent"}, "not a model call"),
        ({**CURRENT, "gen_ai.operation.name": "execute_tool"}, "not a model call"),
        ({"openinference.span.kind": "CHAIN", "llm.token_count.prompt": 5}, "not a model call"),
    ],
)
def test_spans_that_are_not_model_calls_are_ignored(attributes: dict[str, Any], reason: str) -> None:
    result = span_to_event(span(attributes), MAPPING, now=NOW)
    assert result.kind == "ignored"
    assert reason in (result.reason or "")


def test_a_model_call_without_usage_is_recorded_as_missing() -> None:
    attributes = {k: v for k, v in CURRENT.items() if not k.startswith("gen_ai.usage.")}
    event = span_to_event(span(attributes), MAPPING, now=NOW).event
    assert event is not None
    assert event.usage_source is UsageSource.MISSING
    assert event.total_tokens == 0


@pytest.mark.parametrize(
    ("attributes", "mapping", "reason"),
    [
        ({**CURRENT, "gen_ai.provider.name": "cohere"}, MAPPING, "not metered"),
        ({k: v for k, v in CURRENT.items() if k != "gen_ai.provider.name"}, MAPPING, "no provider"),
        ({**CURRENT, "gen_ai.usage.input_tokens": -5}, MAPPING, "outside"),
        ({**CURRENT, "gen_ai.usage.input_tokens": 1.5}, MAPPING, "whole number"),
        ({**CURRENT, "gen_ai.usage.output_tokens": "many"}, MAPPING, "not a token count"),
        ({**CURRENT, "gen_ai.response.model": "bad model!"}, MAPPING, "model"),
        (CURRENT, SpanMapping(), "no tenant"),
        ({**CURRENT, "enduser.id": "../etc"}, MAPPING, "not a valid user id"),
    ],
)
def test_bad_spans_are_rejected_with_their_reason(
    attributes: dict[str, Any], mapping: SpanMapping, reason: str
) -> None:
    result = span_to_event(span(attributes), mapping, now=NOW)
    assert result.kind == "rejected"
    assert reason in (result.reason or "")
    assert result.event_id == "otel:0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331"


def test_tenant_and_tags_come_from_span_then_resource_attributes() -> None:
    # Given the tenant on the resource, tags on both (the span's win) and a mapped attribute
    mapping = SpanMapping(tag_attributes={"deployment.environment.name": "environment"})
    resource = {
        "enduser.id": "tenant-a",
        "llmtally.tags.team": "search",
        "llmtally.tags.feature": "resource-level",
        "deployment.environment.name": "prod",
    }
    attributes = {**CURRENT, "llmtally.tags.feature": "autocomplete", "llmtally.tags.Bad Key": "x"}
    result = span_to_event(span(attributes, resource=resource), mapping, now=NOW)
    assert result.event is not None
    assert result.event.user_id == "tenant-a"
    assert result.event.tags == {"team": "search", "feature": "autocomplete", "environment": "prod"}
    assert result.dropped_tags == ("Bad Key",)


def test_a_span_level_tenant_wins_over_the_default() -> None:
    event = span_to_event(span({**CURRENT, "llmtally.user_id": "tenant-b"}), MAPPING, now=NOW).event
    assert event is not None
    assert event.user_id == "tenant-b"


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [("RateLimitError", "rate_limit"), ("AuthenticationError", "authentication"), ("ValueError", "other")],
)
def test_error_spans_are_error_events(error_type: str, expected: str) -> None:
    attributes = {k: v for k, v in CURRENT.items() if not k.startswith("gen_ai.usage.")}
    event = span_to_event(span({**attributes, "error.type": error_type}, error=True), MAPPING, now=NOW).event
    assert event is not None
    assert event.status is Status.ERROR
    assert event.error_type == expected


counts = st.integers(min_value=0, max_value=10_000_000)


@given(cache_read=counts, cache_write=counts, uncached=counts, visible=counts, reasoning=counts)
def test_inclusive_totals_map_back_to_exactly_the_buckets_they_were_made_of(
    cache_read: int, cache_write: int, uncached: int, visible: int, reasoning: int
) -> None:
    # Given totals made as the conventions make them (input includes the cache, output includes reasoning)
    ledger, exclusive = ledger_from_totals(
        uncached + cache_read + cache_write, visible + reasoning, cache_read, cache_write, reasoning
    )
    # Then each bucket comes back, and the total is what the provider billed — never more
    assert not exclusive
    assert ledger == {
        "input_tokens": uncached,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": visible,
        "reasoning_tokens": reasoning,
    }
    assert sum(ledger.values()) == uncached + cache_read + cache_write + visible + reasoning


@given(total_input=counts, total_output=counts, cache_read=counts, cache_write=counts, reasoning=counts)
def test_the_ledger_never_counts_a_token_the_totals_do_not_hold(
    total_input: int, total_output: int, cache_read: int, cache_write: int, reasoning: int
) -> None:
    ledger, exclusive = ledger_from_totals(total_input, total_output, cache_read, cache_write, reasoning)
    assert all(v >= 0 for v in ledger.values())
    if not exclusive:
        assert sum(ledger.values()) == total_input + total_output

"""TrackedProvider: one usage event per call (success, error, stream, cancelled stream); tracking never raises."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from llmtally.events import Status, UsageEvent
from llmtally.pricing import PriceBook
from llmtally.providers import (
    LLMProviderFactory,
    ProviderError,
    RetryPolicy,
    TrackedProvider,
    UsageSink,
    track,
)
from tests.unit.providers.conftest import (
    ANTHROPIC_KEY,
    MockAPI,
    driven,
    error_reply,
    fixture_json,
    fixture_text,
    json_reply,
    no_sleep,
    sse_reply,
)

pytestmark = pytest.mark.usefixtures("sync_and_async")


class RecordingSink:
    def __init__(self, accept: bool = True) -> None:
        self.events: list[UsageEvent] = []
        self.accept = accept

    def publish(self, event: UsageEvent) -> bool:
        self.events.append(event)
        return self.accept


class ExplodingSink:
    def publish(self, event: UsageEvent) -> bool:
        raise RuntimeError("queue is on fire")


def tracked(api: MockAPI, sink: UsageSink, price_book: PriceBook, **kwargs: Any) -> TrackedProvider:
    provider = LLMProviderFactory.create(
        "anthropic",
        api_key=ANTHROPIC_KEY,
        **api.clients(),
        price_book=price_book,
        retry=RetryPolicy(max_attempts=1),
        sleep=no_sleep,
    )
    return driven(track(provider, sink, user_id="user-123", operation_type="query_generation", **kwargs))


def test_a_successful_call_is_one_event_with_every_bucket(price_book: PriceBook) -> None:
    sink = RecordingSink()
    api = MockAPI([json_reply(fixture_json("anthropic", "message_cache.json"), headers={"request-id": "req_77"})])
    provider = tracked(api, sink, price_book, metadata={"service": "detections"})
    response = provider.generate(prompt="q", request_id="corr-1", metadata={"rule": "r-9"})
    assert isinstance(sink, UsageSink)
    (event,) = sink.events
    assert (event.user_id, event.provider.value, event.model) == ("user-123", "anthropic", "claude-sonnet-4-6")
    assert (event.operation_type, event.request_id, event.status) == ("query_generation", "corr-1", Status.OK)
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens) == (50, 2000, 1200)
    assert (event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (1000, 200)
    assert (event.output_tokens, event.reasoning_tokens) == (300, 0)
    assert event.reported_cost_usd == Decimal("0.0102") == response.usage.cost_usd
    assert event.latency_ms == response.usage.latency_ms
    assert event.metadata == {"service": "detections", "rule": "r-9", "provider_request_id": "req_77"}


def test_a_failed_call_is_one_error_event_and_the_error_still_reaches_the_caller(price_book: PriceBook) -> None:
    sink = RecordingSink()
    api = MockAPI([error_reply(fixture_json("anthropic", "errors.json")["rate_limit"])])
    with pytest.raises(ProviderError):
        tracked(api, sink, price_book).generate(prompt="q", operation_type="detection_rule")
    (event,) = sink.events
    assert (event.status, event.error_type, event.operation_type) == (Status.ERROR, "rate_limit", "detection_rule")
    assert event.total_tokens == 0
    assert event.reported_cost_usd is None
    assert event.metadata == {"provider_request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


def test_a_filtered_answer_is_an_error_event_carrying_its_billed_tokens(price_book: PriceBook) -> None:
    sink = RecordingSink()
    api = MockAPI([json_reply(fixture_json("anthropic", "message_refusal.json"))])
    with pytest.raises(ProviderError):
        tracked(api, sink, price_book).generate(prompt="q")
    (event,) = sink.events
    assert (event.status, event.error_type) == (Status.ERROR, "content_filtered")
    assert (event.input_tokens, event.output_tokens, event.reported_cost_usd) == (40, 5, Decimal("0.000195"))


def test_a_stream_is_tracked_when_it_ends(price_book: PriceBook) -> None:
    sink = RecordingSink()
    api = MockAPI([sse_reply(fixture_text("anthropic", "stream_cache.sse"))])
    stream = tracked(api, sink, price_book).stream(prompt="hi")
    assert next(stream) == "Hello"
    assert sink.events == []
    rest = list(stream)
    assert rest[0] == ", world"
    (event,) = sink.events
    assert (event.status, event.input_tokens, event.cache_write_tokens, event.output_tokens) == (
        Status.OK,
        25,
        1500,
        15,
    )
    assert event.reported_cost_usd == Decimal("0.005925")


def test_an_abandoned_stream_is_tracked_as_cancelled_with_the_tokens_seen(price_book: PriceBook) -> None:
    sink = RecordingSink()
    api = MockAPI([sse_reply(fixture_text("anthropic", "stream_cache.sse"))])
    with tracked(api, sink, price_book).stream(prompt="hi") as stream:
        assert next(stream) == "Hello"
    (event,) = sink.events
    assert (event.status, event.error_type) == (Status.ERROR, "cancelled")
    assert (event.input_tokens, event.cache_write_tokens) == (25, 1500)  # from message_start


def test_tracking_never_raises_into_the_caller(price_book: PriceBook, caplog: pytest.LogCaptureFixture) -> None:
    api = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))])
    provider = tracked(api, ExplodingSink(), price_book)
    response = provider.generate(prompt="q")
    assert response.content
    assert provider.tracking_failures == 1
    assert "usage event not published" in caplog.text

    refused = tracked(api, RecordingSink(accept=False), price_book)
    refused.generate(prompt="q")
    assert refused.tracking_failures == 1


def test_caller_mistakes_are_refused_before_any_provider_request(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))])
    provider = tracked(api, RecordingSink(), price_book)
    with pytest.raises(ValueError, match="operation_type"):
        provider.generate(prompt="q", operation_type="Not Valid")
    with pytest.raises(ValueError, match="secret"):
        provider.generate(prompt="q", metadata={"api_key": "x"})
    with pytest.raises(ValueError, match="user_id"):
        track(provider.inner, RecordingSink(), user_id="../etc")
    assert api.requests == []

"""FallbackProvider: ordered / cheapest / fastest routing, fallback on retryable errors, every attempt tracked."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llmtally.events import Status
from llmtally.pricing import PriceBook
from llmtally.providers import (
    FallbackProvider,
    LLMProvider,
    LLMProviderFactory,
    ProviderError,
    RetryPolicy,
    RoutingPolicy,
)
from tests.unit.providers.conftest import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    MockAPI,
    driven,
    error_reply,
    fixture_json,
    fixture_text,
    json_reply,
    no_sleep,
    sse_reply,
)
from tests.unit.providers.test_tracking import RecordingSink

pytestmark = pytest.mark.usefixtures("sync_and_async")


def anthropic(api: MockAPI, price_book: PriceBook, model: str = "claude-sonnet-4-6") -> LLMProvider:
    return LLMProviderFactory.create(
        "anthropic",
        api_key=ANTHROPIC_KEY,
        **api.clients(),
        price_book=price_book,
        model=model,
        retry=RetryPolicy(max_attempts=1),
        sleep=no_sleep,
    )


def openai(api: MockAPI, price_book: PriceBook, model: str = "gpt-4o") -> LLMProvider:
    return LLMProviderFactory.create(
        "openai",
        api_key=OPENAI_KEY,
        **api.clients(),
        price_book=price_book,
        model=model,
        retry=RetryPolicy(max_attempts=1),
        sleep=no_sleep,
    )


def test_ordered_falls_back_on_a_retryable_error_and_tracks_both_attempts(price_book: PriceBook) -> None:
    down = MockAPI([error_reply(fixture_json("anthropic", "errors.json")["overloaded"])])
    up = MockAPI([json_reply(fixture_json("openai", "chat_plain.json"))])
    sink = RecordingSink()
    chain = driven(
        FallbackProvider([anthropic(down, price_book), openai(up, price_book)], publisher=sink, user_id="user-1")
    )
    response = chain.generate(prompt="q", request_id="corr-9")
    assert response.provider == "openai"
    assert [(e.provider.value, e.status, e.error_type) for e in sink.events] == [
        ("anthropic", Status.ERROR, "unavailable"),
        ("openai", Status.OK, None),
    ]
    assert [e.metadata["fallback_attempt"] for e in sink.events] == [1, 2]
    assert {e.request_id for e in sink.events} == {"corr-9"}


def test_a_non_retryable_error_does_not_fall_back(price_book: PriceBook) -> None:
    bad_key = MockAPI([error_reply(fixture_json("anthropic", "errors.json")["authentication"])])
    up = MockAPI([json_reply(fixture_json("openai", "chat_plain.json"))])
    chain = driven(FallbackProvider([anthropic(bad_key, price_book), openai(up, price_book)]))
    with pytest.raises(ProviderError) as caught:
        chain.generate(prompt="q")
    assert caught.value.error_type.value == "authentication"
    assert up.requests == []


def test_when_every_member_fails_the_last_error_is_raised(price_book: PriceBook) -> None:
    a = MockAPI([error_reply(fixture_json("anthropic", "errors.json")["overloaded"])])
    b = MockAPI([error_reply(fixture_json("openai", "errors.json")["unavailable"])])
    with pytest.raises(ProviderError) as caught:
        driven(FallbackProvider([anthropic(a, price_book), openai(b, price_book)]).generate(prompt="q"))
    assert caught.value.provider == "openai"


def test_cheapest_orders_by_catalog_price_of_the_expected_tokens(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("openai", "chat_plain.json"))])
    opus = anthropic(api, price_book, model="claude-opus-4-6")  # $5 / $25
    mini = openai(api, price_book, model="gpt-5-mini")  # $0.25 / $2
    unknown = openai(api, price_book, model="gpt-unknown-model")
    chain = driven(FallbackProvider([opus, unknown, mini], policy="cheapest", price_book=price_book))
    # 1000 in + 500 out: opus 5000 + 12500 = $0.0175, mini 250 + 1000 = $0.00125
    assert chain.expected_cost_usd(0) == Decimal("0.0175")
    assert chain.expected_cost_usd(2) == Decimal("0.00125")
    assert chain.expected_cost_usd(1) is None
    assert chain.order() == [2, 0, 1]


def test_fastest_learns_from_observed_latencies(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("openai", "chat_plain.json"))])
    chain = driven(FallbackProvider([openai(api, price_book), openai(api, price_book)], policy=RoutingPolicy.FASTEST))
    assert chain.order() == [0, 1]  # nothing observed: in the given order
    chain._observe(0, 900)
    assert chain.order() == [1, 0]  # an unobserved member is measured first
    chain._observe(1, 300)
    assert chain.order() == [1, 0]
    chain._observe(1, 3000)  # EWMA: 0.3 × 3000 + 0.7 × 300 = 1110
    assert chain.observed_latency_ms(1) == pytest.approx(1110.0)
    assert chain.order() == [0, 1]
    chain.generate(prompt="q")
    assert chain.observed_latency_ms(0) is not None


def test_stream_falls_back_before_the_first_chunk(price_book: PriceBook) -> None:
    down = MockAPI([error_reply(fixture_json("anthropic", "errors.json")["rate_limit"])])
    up = MockAPI([sse_reply(fixture_text("openai", "stream_usage.sse"))])
    sink = RecordingSink()
    chain = driven(
        FallbackProvider([anthropic(down, price_book), openai(up, price_book)], publisher=sink, user_id="u-1")
    )
    stream = chain.stream(prompt="hi")
    assert list(stream.text_chunks()) == ["Hello", ", world"]
    assert stream.response is not None
    assert stream.response.provider == "openai"
    assert [(e.provider.value, e.status) for e in sink.events] == [("anthropic", Status.ERROR), ("openai", Status.OK)]

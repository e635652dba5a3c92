"""Anthropic adapter through the real SDK, HTTP mocked with httpx2.MockTransport, payloads from tests/fixtures."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from llmtally.pricing import CostSource, PriceBook
from llmtally.providers import (
    AnthropicProvider,
    ContentFilteredError,
    LLMProviderFactory,
    ModelNotFoundError,
    ProviderError,
    RetryPolicy,
)
from llmtally.responses import LLMUsage
from tests.unit.providers.conftest import (
    ANTHROPIC_KEY,
    FAST_RETRY,
    MockAPI,
    driven,
    error_reply,
    fixture_json,
    fixture_text,
    json_reply,
    no_sleep,
    sse_reply,
    usd,
)

pytestmark = pytest.mark.usefixtures("sync_and_async")


def make(api: MockAPI, price_book: PriceBook, **options: Any) -> AnthropicProvider:
    options = {"retry": FAST_RETRY, "sleep": no_sleep, **options}
    provider = LLMProviderFactory.create(
        "anthropic", api_key=ANTHROPIC_KEY, **api.clients(), price_book=price_book, **options
    )
    assert isinstance(provider, AnthropicProvider)
    return driven(provider)


def test_plain_message_fills_the_ledger_and_the_seed_cost(price_book: PriceBook) -> None:
    # Given a plain Messages API answer: 1,500 input and 500 output tokens on Claude Sonnet 4.6
    api = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"), headers={"request-id": "req_1"})])
    # When
    response = make(api, price_book).generate(prompt="count errors", system="You write SQL.", max_tokens=1000)
    # Then every bucket is mapped and the cost is 1500×$3 + 500×$15 per MTok
    usage = response.usage
    assert response.content == "SELECT * FROM logs WHERE level = 'ERROR'"
    assert (response.provider, response.model, response.request_id) == ("anthropic", "claude-sonnet-4-6", "req_1")
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (1500, 0, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (500, 0, 2000)
    assert usage.cost_usd == usd("0.012")
    assert usage.cost_source is CostSource.CATALOG
    assert response.raw_response["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    sent = api.body()
    assert sent["system"] == [{"type": "text", "text": "You write SQL."}]
    assert sent["messages"] == [{"role": "user", "content": "count errors"}]
    assert sent["max_tokens"] == 1000
    assert ANTHROPIC_KEY in (
        api.requests[0].headers.get("x-api-key"),
        api.requests[0].headers.get("authorization", "")[7:],
    )


def test_cache_reads_and_writes_with_the_ttl_split_are_priced_apart(price_book: PriceBook) -> None:
    # Given an answer that read 2,000 tokens from the cache and wrote 1,200 (1,000 for 5 min, 200 for 1 h)
    api = MockAPI([json_reply(fixture_json("anthropic", "message_cache.json"))])
    # When the caller asks for caching
    response = make(api, price_book).generate(prompt="q", system="long stable prompt", cache=True)
    # Then input excludes the cache, each cache bucket has its own price
    usage = response.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (50, 2000, 1200)
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (1000, 200)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (300, 0, 3550)
    # 50×3 + 2000×0.30 + 1000×3.75 + 200×6 + 300×15 = 10,200 µ$
    assert usage.cost_usd == usd("0.0102")
    # and the system prompt carries the cache breakpoint
    assert api.body()["system"] == [
        {"type": "text", "text": "long stable prompt", "cache_control": {"type": "ephemeral", "ttl": "5m"}}
    ]


def test_one_hour_cache_without_a_system_prompt_uses_the_top_level_breakpoint(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))])
    make(api, price_book).generate(prompt="q", cache="1h")
    assert api.body()["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "system" not in api.body()


def test_thinking_tokens_move_to_the_reasoning_bucket(price_book: PriceBook) -> None:
    # Given extended thinking: output_tokens 1,000 of which 700 were thinking
    api = MockAPI([json_reply(fixture_json("anthropic", "message_thinking.json"))])
    response = make(api, price_book).generate(prompt="q", thinking={"type": "enabled", "budget_tokens": 1024})
    usage = response.usage
    # Then the thinking text is not content, and the ledger splits output from reasoning
    assert response.content == "The rule fires on five failed logins."
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (200, 0, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (300, 700, 1200)
    # reasoning is billed at the output price: 200×3 + 1000×15 = 15,600 µ$
    assert usage.cost_usd == usd("0.0156")
    assert api.body()["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_stream_yields_text_then_usage_from_message_start_and_delta(price_book: PriceBook) -> None:
    api = MockAPI([sse_reply(fixture_text("anthropic", "stream_cache.sse"))])
    stream = make(api, price_book).stream(prompt="hi", system="cached", cache=True)
    items = list(stream)
    assert items[:2] == ["Hello", ", world"]
    usage = items[-1]
    assert isinstance(usage, LLMUsage)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (25, 0, 1500)
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (1500, 0)
    assert (usage.output_tokens, usage.reasoning_tokens) == (15, 0)
    # 25×3 + 1500×3.75 + 15×15 = 5,925 µ$
    assert usage.cost_usd == usd("0.005925")
    assert stream.response is not None
    assert stream.response.content == "Hello, world"
    assert api.body()["stream"] is True


def test_refusal_raises_content_filtered_with_the_billed_usage(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("anthropic", "message_refusal.json"))])
    with pytest.raises(ContentFilteredError) as caught:
        make(api, price_book).generate(prompt="q")
    assert caught.value.usage is not None
    assert (caught.value.usage.input_tokens, caught.value.usage.output_tokens) == (40, 5)
    assert caught.value.usage.cost_usd == usd("0.000195")  # 40×3 + 5×15


@pytest.mark.parametrize("case", list(fixture_json("anthropic", "errors.json")))
def test_each_error_class_maps_to_the_taxonomy(case: str, price_book: PriceBook) -> None:
    spec = fixture_json("anthropic", "errors.json")[case]
    api = MockAPI([error_reply(spec)])
    provider = make(api, price_book, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(ProviderError) as caught:
        provider.generate(prompt="q")
    error = caught.value
    assert error.error_type.value == spec["expected"]
    assert isinstance(error, ModelNotFoundError) == spec["model_missing"]
    assert error.status_code == spec["status"]
    assert error.provider == "anthropic"
    assert error.code is not None
    assert error.code in str(error)
    assert ANTHROPIC_KEY not in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_retryable_errors_are_retried_with_backoff_then_succeed(price_book: PriceBook) -> None:
    spec = fixture_json("anthropic", "errors.json")
    api = MockAPI(
        [
            error_reply(spec["overloaded"]),
            error_reply(spec["rate_limit"]),
            json_reply(fixture_json("anthropic", "message_plain.json")),
        ]
    )
    delays: list[float] = []
    provider = make(api, price_book, retry=RetryPolicy(max_attempts=3, base_delay=0.25, max_delay=4.0))
    provider._sleep = delays.append
    response = provider.generate(prompt="q")
    assert response.usage.cost_usd == usd("0.012")
    assert len(api.requests) == 3
    # the first wait is jittered within [base/2, base]; the second honours retry-after (7 s) capped at max_delay
    assert 0.125 <= delays[0] <= 0.25
    assert delays[1] == 4.0


def test_retries_are_bounded_and_non_retryable_errors_are_not_retried(price_book: PriceBook) -> None:
    spec = fixture_json("anthropic", "errors.json")
    api = MockAPI([error_reply(spec["api_error"])])
    with pytest.raises(ProviderError) as caught:
        make(api, price_book).generate(prompt="q")
    assert caught.value.error_type.value == "unavailable"
    assert len(api.requests) == 3  # FAST_RETRY: 3 attempts, the SDK's own retries are off

    api = MockAPI([error_reply(spec["authentication"])])
    with pytest.raises(ProviderError):
        make(api, price_book).generate(prompt="q")
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    ("exc", "expected", "network"),
    [
        (httpx2.ReadTimeout("read timed out"), "timeout", False),
        (httpx2.ConnectError("[Errno -3] Temporary failure in name resolution"), "unavailable", True),
    ],
)
def test_transport_failures(exc: Exception, expected: str, network: bool, price_book: PriceBook) -> None:
    api = MockAPI([exc])
    with pytest.raises(ProviderError) as caught:
        make(api, price_book, retry=RetryPolicy(max_attempts=1)).generate(prompt="q")
    assert caught.value.error_type.value == expected
    assert caught.value.network is network


def test_connection_test_retrieves_the_model_for_free(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("anthropic", "model.json"))])
    result = make(api, price_book).test_connection()
    assert result.success is True
    assert result.to_dict().keys() == {"success", "provider", "message", "model", "latency_ms"}
    assert (result.provider, result.model) == ("anthropic", "claude-sonnet-4-6")
    assert [(r.method, r.url.path) for r in api.requests] == [("GET", "/v1/models/claude-sonnet-4-6")]


def test_connection_test_with_generation_makes_a_one_token_call(price_book: PriceBook) -> None:
    api = MockAPI(
        [
            json_reply(fixture_json("anthropic", "model.json")),
            json_reply(fixture_json("anthropic", "message_plain.json")),
        ]
    )
    result = make(api, price_book).test_connection(generate=True)
    assert result.success is True
    assert api.body(1)["max_tokens"] == 1


@pytest.mark.parametrize(
    ("reply", "error_type", "phrase"),
    [
        ("authentication", "authentication", "rejected the API key"),
        ("not_found", "invalid_request", "was not found"),
        (httpx2.ConnectError("no route"), "unavailable", "no network"),
        (httpx2.ConnectTimeout("timed out"), "timeout", "timeout"),
    ],
)
def test_connection_test_failures_say_what_is_wrong(
    reply: str | Exception, error_type: str, phrase: str, price_book: PriceBook
) -> None:
    answer = error_reply(fixture_json("anthropic", "errors.json")[reply]) if isinstance(reply, str) else reply
    api = MockAPI([answer])
    result = make(api, price_book, retry=RetryPolicy(max_attempts=1)).test_connection("claude-nope")
    assert result.success is False
    assert result.error_type == error_type
    assert phrase in result.message
    assert result.model == "claude-nope"
    assert ANTHROPIC_KEY not in result.message

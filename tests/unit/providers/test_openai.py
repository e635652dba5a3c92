"""OpenAI adapter through the real SDK (Chat Completions), HTTP mocked with httpx2.MockTransport."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from llmtally.events import UsageSource
from llmtally.pricing import PriceBook
from llmtally.providers import (
    ContentFilteredError,
    LLMProviderFactory,
    ModelNotFoundError,
    OpenAIProvider,
    ProviderError,
    RetryPolicy,
)
from llmtally.responses import LLMUsage
from tests.unit.providers.conftest import (
    FAST_RETRY,
    OPENAI_KEY,
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


def make(api: MockAPI, price_book: PriceBook, **options: Any) -> OpenAIProvider:
    options = {"retry": FAST_RETRY, "sleep": no_sleep, **options}
    provider = LLMProviderFactory.create(
        "openai", api_key=OPENAI_KEY, **api.clients(), price_book=price_book, **options
    )
    assert isinstance(provider, OpenAIProvider)
    return driven(provider)


def test_plain_completion(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("openai", "chat_plain.json"), headers={"x-request-id": "req_9"})])
    response = make(api, price_book).generate(
        messages=[{"role": "system", "content": "SQL only."}, {"role": "user", "content": "count"}],
        max_tokens=400,
        temperature=0.2,
    )
    usage = response.usage
    assert response.content == "SELECT count(*) FROM logs"
    assert (response.model, response.request_id, response.stop_reason) == ("gpt-4o-2024-08-06", "req_9", "stop")
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (1200, 0, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (300, 0, 1500)
    assert usage.cost_usd == usd("0.006")  # 1200×2.50 + 300×10
    sent = api.body()
    assert sent["messages"] == [{"role": "system", "content": "SQL only."}, {"role": "user", "content": "count"}]
    assert (sent["max_completion_tokens"], sent["temperature"]) == (400, 0.2)
    assert api.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_cached_prompt_tokens_are_taken_out_of_input(price_book: PriceBook) -> None:
    # prompt_tokens 2,048 INCLUDES 1,536 cached
    api = MockAPI([json_reply(fixture_json("openai", "chat_cached.json"))])
    usage = make(api, price_book).generate(prompt="q", cache=True).usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (512, 1536, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (100, 0, 2148)
    assert usage.cost_usd == usd("0.0042")  # 512×2.50 + 1536×1.25 + 100×10


def test_reasoning_tokens_are_taken_out_of_output(price_book: PriceBook) -> None:
    # completion_tokens 1,500 INCLUDES 1,200 reasoning tokens (o4-mini: $1.10 in, $4.40 out)
    api = MockAPI([json_reply(fixture_json("openai", "chat_reasoning.json"))])
    response = make(api, price_book, model="o4-mini").generate(prompt="q")
    usage = response.usage
    assert response.model == "o4-mini-2025-04-16"
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (400, 0, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (300, 1200, 1900)
    assert usage.cost_usd == usd("0.00704")  # 400×1.10 + 300×4.40 + 1200×4.40
    assert "temperature" not in api.body()


def test_stream_asks_for_usage_and_reports_it_last(price_book: PriceBook) -> None:
    api = MockAPI([sse_reply(fixture_text("openai", "stream_usage.sse"))])
    stream = make(api, price_book).stream(prompt="hi")
    items = list(stream)
    assert items[:-1] == ["Hello", ", world"]
    usage = items[-1]
    assert isinstance(usage, LLMUsage)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens, usage.reasoning_tokens) == (
        744,
        256,
        50,
        0,
    )
    assert usage.cost_usd == usd("0.00268")  # 744×2.50 + 256×1.25 + 50×10
    sent = api.body()
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


def test_a_stream_without_its_usage_chunk_is_delivered_and_marked_usage_missing(price_book: PriceBook) -> None:
    # Given a stream whose usage chunk never comes (cut off after the finish reason)
    text = fixture_text("openai", "stream_usage.sse").split("\n\n")
    without_usage = "\n\n".join(text[:4] + text[5:])
    api = MockAPI([sse_reply(without_usage)])
    # When read to the end, Then the text arrives, nothing is raised, and the usage is missing
    stream = make(api, price_book).stream(prompt="hi")
    assert [item for item in stream if isinstance(item, str)] == ["Hello", ", world"]
    assert stream.usage_source is UsageSource.MISSING


def test_content_filter_finish_reason(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("openai", "chat_content_filter.json"))])
    with pytest.raises(ContentFilteredError) as caught:
        make(api, price_book).generate(prompt="q")
    assert caught.value.usage is not None
    assert caught.value.usage.input_tokens == 60
    assert caught.value.usage.cost_usd == usd("0.00015")


@pytest.mark.parametrize("case", list(fixture_json("openai", "errors.json")))
def test_each_error_class_maps_to_the_taxonomy(case: str, price_book: PriceBook) -> None:
    spec = fixture_json("openai", "errors.json")[case]
    api = MockAPI([error_reply(spec)])
    with pytest.raises(ProviderError) as caught:
        make(api, price_book, retry=RetryPolicy(max_attempts=1)).generate(prompt="q")
    error = caught.value
    assert error.error_type.value == spec["expected"]
    assert isinstance(error, ModelNotFoundError) == spec["model_missing"]
    if spec["retryable"] is not None:
        assert error.retryable is spec["retryable"]
    assert error.status_code == spec["status"]
    # OpenAI echoes a masked key in its 401 message: none of it reaches ours
    assert "sk-proj" not in str(error)
    assert "wxyz" not in str(error)


def test_insufficient_quota_is_not_retried(price_book: PriceBook) -> None:
    api = MockAPI([error_reply(fixture_json("openai", "errors.json")["quota"])])
    with pytest.raises(ProviderError):
        make(api, price_book).generate(prompt="q")
    assert len(api.requests) == 1


def test_timeout_is_retried_then_reported(price_book: PriceBook) -> None:
    api = MockAPI([httpx2.ReadTimeout("timed out")])
    with pytest.raises(ProviderError) as caught:
        make(api, price_book).generate(prompt="q")
    assert caught.value.error_type.value == "timeout"
    assert len(api.requests) == 3


def test_connection_test_retrieves_the_model(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("openai", "model.json"))])
    result = make(api, price_book).test_connection()
    assert (result.success, result.model) == (True, "gpt-4o")
    assert [(r.method, r.url.path) for r in api.requests] == [("GET", "/v1/models/gpt-4o")]


def test_connection_test_bad_key(price_book: PriceBook) -> None:
    api = MockAPI([error_reply(fixture_json("openai", "errors.json")["authentication"])])
    result = make(api, price_book).test_connection()
    assert result.success is False
    assert result.message == "OpenAI rejected the API key. Check that it is correct, active and has billing enabled."

"""Gemini adapter through the real `google-genai` SDK, HTTP mocked with httpx2.MockTransport."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from llmtally.pricing import PriceBook
from llmtally.providers import (
    ContentFilteredError,
    GoogleProvider,
    LLMProviderFactory,
    ModelNotFoundError,
    ProviderError,
    RetryPolicy,
)
from llmtally.responses import LLMUsage
from tests.unit.providers.conftest import (
    FAST_RETRY,
    GOOGLE_KEY,
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


def make(api: MockAPI, price_book: PriceBook, **options: Any) -> GoogleProvider:
    options = {"retry": FAST_RETRY, "sleep": no_sleep, **options}
    provider = LLMProviderFactory.create(
        "google", api_key=GOOGLE_KEY, **api.clients(), price_book=price_book, **options
    )
    assert isinstance(provider, GoogleProvider)
    return driven(provider)


def test_plain_generation(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("google", "generate_plain.json"))])
    response = make(api, price_book).generate(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "count"},
        ],
        system="SQL only.",
        max_tokens=300,
        temperature=0.0,
    )
    usage = response.usage
    assert response.content == "SELECT * FROM logs"
    assert (response.model, response.request_id, response.stop_reason) == (
        "gemini-2.5-flash",
        "mK5pZ8qWLdGz1MkP9pPnmAo",
        "STOP",
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (800, 0, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (200, 0, 1000)
    assert usage.cost_usd == usd("0.00074")  # 800×0.30 + 200×2.50
    request = api.requests[0]
    assert request.url.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert request.headers["x-goog-api-key"] == GOOGLE_KEY
    sent = api.body()
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    assert sent["systemInstruction"]["parts"] == [{"text": "SQL only."}]
    assert sent["generationConfig"] == {"maxOutputTokens": 300, "temperature": 0.0}


def test_cached_content_and_thoughts(price_book: PriceBook) -> None:
    # promptTokenCount 5,000 INCLUDES 4,000 cached; thoughts (600) are reported apart from candidates (150)
    api = MockAPI([json_reply(fixture_json("google", "generate_cached_thinking.json"))])
    response = make(api, price_book).generate(prompt="q")
    usage = response.usage
    assert response.content == "Use a threshold of five."  # the thought summary is not content
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (1000, 4000, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (150, 600, 5750)
    assert usage.cost_usd == usd("0.002295")  # 1000×0.30 + 4000×0.03 + 150×2.50 + 600×2.50


def test_stream_reports_the_last_chunk_usage(price_book: PriceBook) -> None:
    api = MockAPI([sse_reply(fixture_text("google", "stream.sse"))])
    stream = make(api, price_book).stream(prompt="hi")
    items = list(stream)
    assert items[:-1] == ["Hello", ", world"]
    usage = items[-1]
    assert isinstance(usage, LLMUsage)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens, usage.reasoning_tokens) == (
        100,
        0,
        40,
        10,
    )
    assert usage.cost_usd == usd("0.000155")  # 100×0.30 + 40×2.50 + 10×2.50
    assert ":streamGenerateContent" in api.requests[0].url.path


def test_safety_block(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("google", "generate_safety.json"))])
    with pytest.raises(ContentFilteredError) as caught:
        make(api, price_book).generate(prompt="q")
    assert caught.value.code == "SAFETY"
    assert caught.value.usage is not None
    assert caught.value.usage.input_tokens == 30
    assert caught.value.usage.cost_usd == usd("0.000009")


@pytest.mark.parametrize("case", list(fixture_json("google", "errors.json")))
def test_each_error_class_maps_to_the_taxonomy(case: str, price_book: PriceBook) -> None:
    spec = fixture_json("google", "errors.json")[case]
    api = MockAPI([error_reply(spec)])
    with pytest.raises(ProviderError) as caught:
        make(api, price_book, retry=RetryPolicy(max_attempts=1)).generate(prompt="q")
    assert caught.value.error_type.value == spec["expected"]
    assert isinstance(caught.value, ModelNotFoundError) == spec["model_missing"]
    assert caught.value.status_code == spec["status"]
    assert GOOGLE_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [(httpx2.ReadTimeout("timed out"), "timeout"), (httpx2.ConnectError("refused"), "unavailable")],
)
def test_transport_failures_are_retried_by_us_only(exc: Exception, expected: str, price_book: PriceBook) -> None:
    api = MockAPI([exc])
    with pytest.raises(ProviderError) as caught:
        make(api, price_book).generate(prompt="q")
    assert caught.value.error_type.value == expected
    assert len(api.requests) == 3


def test_connection_test_gets_the_model(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("google", "model.json"))])
    result = make(api, price_book).test_connection()
    assert (result.success, result.provider, result.model) == (True, "google", "gemini-2.5-flash")
    assert api.requests[0].method == "GET"
    assert api.requests[0].url.path.endswith("/models/gemini-2.5-flash")


def test_connection_test_invalid_key(price_book: PriceBook) -> None:
    api = MockAPI([error_reply(fixture_json("google", "errors.json")["authentication"])])
    result = make(api, price_book).test_connection()
    assert (result.success, result.error_type) == (False, "authentication")
    assert "rejected the API key" in result.message

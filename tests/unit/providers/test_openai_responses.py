"""OpenAI adapter on the Responses API through the real SDK, sync and async, HTTP mocked with httpx2.MockTransport.

The payloads are hand-made in the shape of the API reference (tests/fixtures/providers/openai/):
plain (`responses_plain.json`), cached input (`responses_cached.json`), reasoning
(`responses_reasoning.json`), cut off at `max_output_tokens` (`responses_incomplete.json`), a
stream (`responses_stream.sse`), a stream cut off (`responses_stream_incomplete.sse`) and a stream
ending in an `error` event (`responses_stream_error.sse`). Each passes through with its exact ledger
and cost (catalog prices per million tokens in the comments).
"""

from __future__ import annotations

from typing import Any

import pytest

from llmtally.events import Status, UsageSource
from llmtally.pricing import PriceBook
from llmtally.providers import LLMProviderFactory, OpenAIProvider, ProviderError, track
from llmtally.providers.openai import responses_first
from llmtally.responses import LLMUsage
from tests.unit.providers.conftest import (
    FAST_RETRY,
    OPENAI_KEY,
    MockAPI,
    driven,
    fixture_json,
    fixture_text,
    json_reply,
    no_sleep,
    sse_reply,
    usd,
)
from tests.unit.providers.test_tracking import RecordingSink

pytestmark = pytest.mark.usefixtures("sync_and_async")


def make(mock: MockAPI, price_book: PriceBook, **options: Any) -> OpenAIProvider:
    options = {"retry": FAST_RETRY, "sleep": no_sleep, **options}
    provider = LLMProviderFactory.create(
        "openai", api_key=OPENAI_KEY, **mock.clients(), price_book=price_book, **options
    )
    assert isinstance(provider, OpenAIProvider)
    return driven(provider)


def ledger(usage: LLMUsage) -> tuple[int, int, int, int, int]:
    return (
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
    )


def test_a_responses_first_model_goes_to_the_responses_api_by_default(price_book: PriceBook) -> None:
    # Given gpt-5-codex (served only by the Responses API): 1,000 in, 200 out ($1.25 / $10)
    api = MockAPI([json_reply(fixture_json("openai", "responses_plain.json"), headers={"x-request-id": "req_r1"})])
    # When asked with a system prompt
    response = make(api, price_book, model="gpt-5-codex").generate(prompt="count errors", system="SQL only.")
    # Then the request is a stateless Responses request
    assert api.requests[0].url.path == "/v1/responses"
    sent = api.body()
    assert sent["input"] == [{"role": "user", "content": "count errors"}]
    assert (sent["instructions"], sent["max_output_tokens"], sent["store"]) == ("SQL only.", 1024, False)
    # and the answer carries the text, the ledger and the cost
    assert response.content == "SELECT count(*) FROM logs WHERE level = 'ERROR'"
    assert (response.request_id, response.stop_reason) == ("req_r1", "completed")
    assert ledger(response.usage) == (1000, 0, 0, 200, 0)
    assert response.usage.cost_usd == usd("0.00325")  # 1000×1.25 + 200×10
    assert response.usage_source is UsageSource.REPORTED


def test_cached_input_is_taken_out_of_input_tokens(price_book: PriceBook) -> None:
    # Given gpt-4.1 by option: input_tokens 2,048 INCLUDES 1,536 cached ($2 / $0.50 cached / $8)
    api = MockAPI([json_reply(fixture_json("openai", "responses_cached.json"))])
    response = make(api, price_book, model="gpt-4.1", api="responses").generate(prompt="q", temperature=0)
    assert api.requests[0].url.path == "/v1/responses"
    assert api.body()["temperature"] == 0
    assert ledger(response.usage) == (512, 1536, 0, 100, 0)
    assert response.usage.cost_usd == usd("0.002592")  # 512×2 + 1536×0.50 + 100×8


def test_reasoning_tokens_are_taken_out_of_output_tokens(price_book: PriceBook) -> None:
    # Given o4-mini by option: 1,200 in incl. 1,024 cached; 740 out incl. 512 reasoning ($1.10 / $0.275 / $4.40)
    api = MockAPI([json_reply(fixture_json("openai", "responses_reasoning.json"))])
    response = make(api, price_book, model="o4-mini", api="responses").generate(prompt="q")
    assert response.content == "Three rules fire on that log line."
    assert response.model == "o4-mini-2025-04-16"
    assert ledger(response.usage) == (176, 1024, 0, 228, 512)
    assert response.usage.total_tokens == 1940
    assert response.usage.cost_usd == usd("0.0037312")  # 176×1.10 + 1024×0.275 + (228 + 512)×4.40


def test_an_answer_cut_off_at_max_output_tokens_is_incomplete_and_billed(price_book: PriceBook) -> None:
    # Given o3-pro (Responses-only) stopped by max_output_tokens after 64 reasoning tokens ($20 / $80)
    api = MockAPI([json_reply(fixture_json("openai", "responses_incomplete.json"))])
    response = make(api, price_book, model="o3-pro").generate(prompt="q", max_tokens=64)
    # Then it is an answer (not an error) that says why it stopped, with every billed token
    assert (response.content, response.stop_reason) == ("", "max_output_tokens")
    assert ledger(response.usage) == (300, 0, 0, 0, 64)
    assert response.usage.cost_usd == usd("0.01112")  # 300×20 + 64×80


def test_a_stream_takes_its_usage_from_response_completed(price_book: PriceBook) -> None:
    # Given gpt-5 by option: 2,000 in incl. 1,536 cached; 300 out incl. 256 reasoning ($1.25 / $0.125 / $10)
    api = MockAPI([sse_reply(fixture_text("openai", "responses_stream.sse"))])
    stream = make(api, price_book, model="gpt-5", api="responses").stream(prompt="hi")
    assert list(stream.text_chunks()) == ["Hello", ", world"]
    assert api.body()["stream"] is True
    response = stream.response
    assert response is not None
    assert (response.content, response.stop_reason, response.model) == ("Hello, world", "completed", "gpt-5-2025-08-07")
    assert ledger(response.usage) == (464, 1536, 0, 44, 256)
    assert response.usage.cost_usd == usd("0.003772")  # 464×1.25 + 1536×0.125 + (44 + 256)×10
    assert stream.usage_source is UsageSource.REPORTED


def test_a_stream_cut_off_ends_with_response_incomplete_and_its_usage(price_book: PriceBook) -> None:
    # Given gpt-5-codex stopped by max_output_tokens=2: 900 in, 2 out
    api = MockAPI([sse_reply(fixture_text("openai", "responses_stream_incomplete.sse"))])
    stream = make(api, price_book, model="gpt-5-codex").stream(prompt="q", max_tokens=2)
    assert list(stream.text_chunks()) == ["SELECT"]
    response = stream.response
    assert response is not None
    assert response.stop_reason == "max_output_tokens"
    assert ledger(response.usage) == (900, 0, 0, 2, 0)
    assert response.usage.cost_usd == usd("0.001145")  # 900×1.25 + 2×10
    assert response.usage_source is UsageSource.REPORTED


def test_an_error_event_mid_stream_raises_and_is_tracked_as_usage_missing(price_book: PriceBook) -> None:
    # Given a tracked stream that sends "Hello", then an `error` event (server_error)
    api = MockAPI([sse_reply(fixture_text("openai", "responses_stream_error.sse"))])
    provider = LLMProviderFactory.create(
        "openai", api_key=OPENAI_KEY, **api.clients(), price_book=price_book, retry=FAST_RETRY, sleep=no_sleep
    )
    sink = RecordingSink()
    stream = driven(track(provider, sink, user_id="user-1")).stream(prompt="q", model="gpt-5-codex")
    # When read: the text so far arrives, then the mapped error
    assert next(stream) == "Hello"
    with pytest.raises(ProviderError) as raised:
        next(stream)
    assert raised.value.error_type.value == "unavailable"
    assert raised.value.code == "server_error"
    # Then exactly one error event, its usage missing (output had arrived, nobody reported its usage)
    (event,) = sink.events
    assert (event.status, event.error_type, event.usage_source) == (Status.ERROR, "unavailable", UsageSource.MISSING)
    assert OPENAI_KEY not in str(raised.value)


def test_the_responses_first_models_are_the_sdks_responses_only_models_and_their_families() -> None:
    for model in ("o1-pro", "o3-pro-2025-06-10", "gpt-5-codex", "gpt-5.1-codex-max", "gpt-5-pro", "codex-mini-latest"):
        assert responses_first(model), model
    for model in ("o3-deep-research", "computer-use-preview"):
        assert responses_first(model), model
    for model in ("gpt-4o", "gpt-5", "gpt-5-mini", "o3", "o4-mini", "gpt-4.1"):
        assert not responses_first(model), model


def test_chat_completions_stays_the_default_for_other_models_and_can_be_forced(price_book: PriceBook) -> None:
    api = MockAPI([json_reply(fixture_json("openai", "chat_plain.json"))])
    make(api, price_book, model="gpt-5").generate(prompt="q")
    make(api, price_book, model="gpt-5-codex", api="chat").generate(prompt="q")
    assert [r.url.path for r in api.requests] == ["/v1/chat/completions", "/v1/chat/completions"]
    with pytest.raises(ValueError, match="api must be"):
        OpenAIProvider(OPENAI_KEY, api="assistants")  # type: ignore[arg-type]

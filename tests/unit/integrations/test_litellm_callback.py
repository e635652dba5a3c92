"""LLMTallyCallback through LiteLLM itself (`completion` / `acompletion` with `mock_response`, offline): success and
failure, sync and async, the ledger with cache and reasoning tokens, tenant, tags and operation."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: the bundled cost map, before import

import litellm
from litellm import ModelResponse, Usage
from litellm.exceptions import InternalServerError, RateLimitError

from llmtally.events import Status, UsageEvent, UsageSource
from llmtally.integrations.litellm import CallbackStats, LLMTallyCallback


class RecordingPublisher:
    """The publisher's one method the callback calls (`publish` enqueues and returns at once)."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def publish(self, event: UsageEvent) -> bool:
        self.events.append(event)
        return True


Registered = tuple[LLMTallyCallback, RecordingPublisher]


@pytest.fixture(scope="module")
def _registered() -> Iterator[Registered]:
    # LiteLLM copies `litellm.callbacks` into its internal success/failure lists on the first call, so one
    # callback is registered for the whole module (as a service registers it once at start-up).
    publisher = RecordingPublisher()
    callback = LLMTallyCallback(publisher, user_id="fallback-tenant")  # type: ignore[arg-type]
    previous = litellm.callbacks
    litellm.callbacks = [callback]
    try:
        yield callback, publisher
    finally:
        litellm.callbacks = previous


@pytest.fixture
def published(_registered: Registered) -> Registered:
    callback, publisher = _registered
    publisher.events.clear()
    callback.stats = CallbackStats()
    callback.user_id = "fallback-tenant"
    return callback, publisher


def _wait(publisher: RecordingPublisher, count: int) -> list[UsageEvent]:
    deadline = time.monotonic() + 20
    while len(publisher.events) < count and time.monotonic() < deadline:
        time.sleep(0.02)  # LiteLLM runs sync success callbacks on its own thread after returning
    return publisher.events


def _answer(model: str, **usage: Any) -> ModelResponse:
    return ModelResponse(
        model=model,
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
        usage=Usage(**usage),
    )


MESSAGES = [{"role": "user", "content": "hi"}]
# LiteLLM 1.110's own TypedDicts use `ReadOnly`, which pydantic warns about when it first builds their
# schema inside a call; it says nothing about this code. Every other warning stays an error.
pytestmark = pytest.mark.filterwarnings(r"ignore:Items? .* using the `ReadOnly` qualifier:UserWarning")


def test_a_sync_openai_call_with_cached_and_reasoning_tokens(
    published: tuple[LLMTallyCallback, RecordingPublisher],
) -> None:
    callback, publisher = published
    # Given an OpenAI answer: 2048 prompt tokens of which 1536 cached, 1500 completion of which 1200 reasoning
    answer = _answer(
        "o4-mini-2025-04-16",
        prompt_tokens=2048,
        completion_tokens=1500,
        total_tokens=3548,
        prompt_tokens_details={"cached_tokens": 1536},
        completion_tokens_details={"reasoning_tokens": 1200},
    )
    # When the caller makes the call with a user and tags
    response = litellm.completion(
        model="o4-mini",
        messages=MESSAGES,
        mock_response=answer,
        user="acme",
        metadata={"llmtally_tags": {"feature": "search"}, "tags": ["team:growth", "plain"]},
    )
    # Then the caller sees LiteLLM's answer unchanged
    assert response.choices[0].message.content == "ok"
    # And one event holds each token once
    [event] = _wait(publisher, 1)
    assert (event.input_tokens, event.cache_read_tokens, event.output_tokens, event.reasoning_tokens) == (
        512,
        1536,
        300,
        1200,
    )
    assert event.total_tokens == 2048 + 1500
    assert (event.provider, event.model, event.user_id) == ("openai", "o4-mini-2025-04-16", "acme")
    assert event.operation_type == "completion"
    assert event.tags == {"feature": "search", "team": "growth"}
    assert event.event_id.startswith("litellm:")
    assert event.metadata == {"source": "litellm"}
    assert event.status is Status.OK
    assert callback.stats.published == 1


def test_an_async_anthropic_call_with_cache_writes(published: Registered) -> None:
    callback, publisher = published
    answer = _answer(
        "claude-3-5-haiku-20241022",
        prompt_tokens=3000,
        completion_tokens=200,
        total_tokens=3200,
        cache_read_input_tokens=2000,
        cache_creation_input_tokens=500,
    )

    async def call() -> None:
        await litellm.acompletion(
            model="anthropic/claude-3-5-haiku-20241022",
            messages=MESSAGES,
            mock_response=answer,
            metadata={"llmtally_user_id": "tenant-b", "llmtally_operation_type": "rule_enrichment"},
        )
        for _ in range(400):
            if publisher.events:
                break
            await asyncio.sleep(0.02)

    asyncio.run(call())
    [event] = publisher.events
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens) == (
        500,
        2000,
        500,
        200,
    )
    assert (event.provider, event.user_id, event.operation_type) == ("anthropic", "tenant-b", "rule_enrichment")
    assert callback.stats.published == 1


def test_a_failed_sync_call_is_one_error_event(published: Registered) -> None:
    _, publisher = published
    with pytest.raises(RateLimitError):
        litellm.completion(
            model="gpt-4o", messages=MESSAGES, mock_response=RateLimitError("slow down", "openai", "gpt-4o")
        )
    [event] = _wait(publisher, 1)
    assert event.status is Status.ERROR
    assert event.error_type == "rate_limit"
    assert event.user_id == "fallback-tenant"
    assert event.total_tokens == 0
    assert event.usage_source is UsageSource.REPORTED


def test_a_failed_async_call_is_one_error_event(published: Registered) -> None:
    _, publisher = published

    async def call() -> None:
        with pytest.raises(InternalServerError):
            await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response=Exception("boom"))
        for _ in range(400):
            if publisher.events:
                break
            await asyncio.sleep(0.02)

    asyncio.run(call())
    [event] = publisher.events
    assert (event.status, event.error_type) == (Status.ERROR, "unavailable")


def test_calls_that_cannot_be_metered_are_counted_not_raised(
    published: tuple[LLMTallyCallback, RecordingPublisher],
) -> None:
    callback, publisher = published
    callback.user_id = None
    # Given a call without a tenant, and one through a provider llmtally does not meter
    litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="no tenant")
    litellm.completion(model="mistral/mistral-small", messages=MESSAGES, mock_response="unsupported", user="acme")
    deadline = time.monotonic() + 20
    while callback.stats.no_tenant + callback.stats.unsupported < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    # Then nothing is published and each is counted
    assert (callback.stats.no_tenant, callback.stats.unsupported) == (1, 1)
    assert publisher.events == []


def test_both_hooks_of_one_call_publish_one_event() -> None:
    # Given the payload of one call handed to the sync and the async hook (LiteLLM may call both)
    publisher = RecordingPublisher()
    callback = LLMTallyCallback(publisher)  # type: ignore[arg-type]
    kwargs = {
        "litellm_call_id": "5f0c1f0e-0000-4000-8000-000000000001",
        "user": "acme",
        "standard_logging_object": {
            "custom_llm_provider": "openai",
            "model": "gpt-4o",
            "call_type": "acompletion",
            "startTime": time.time() - 1,
            "endTime": time.time(),
            "metadata": {"usage_object": {"prompt_tokens": 10, "completion_tokens": 5}},
        },
    }
    callback.log_success_event(kwargs, None, None, None)
    asyncio.run(callback.async_log_success_event(kwargs, None, None, None))
    [event] = publisher.events
    assert event.event_id == "litellm:5f0c1f0e-0000-4000-8000-000000000001"
    assert (event.input_tokens, event.output_tokens, event.latency_ms > 0) == (10, 5, True)


def test_a_broken_payload_never_raises_into_litellm() -> None:
    callback = LLMTallyCallback(RecordingPublisher())  # type: ignore[arg-type]
    callback.log_success_event(
        {"standard_logging_object": {"custom_llm_provider": "openai"}, "user": "acme"}, None, None, None
    )
    callback.log_failure_event(None, None, None, None)
    assert callback.stats.invalid == 1

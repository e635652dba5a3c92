"""openai.OpenAI / AsyncOpenAI through llmtally.instrument: Chat Completions and the Responses API, sync and
async, streaming or not, on a mocked HTTP transport with realistic payloads; exact ledger and cost."""

from __future__ import annotations

import asyncio
import gc
from decimal import Decimal
from typing import Any

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import ResponseUsage

import llmtally
from llmtally.events import Provider, Status, UsageSource
from llmtally.instrumentation import stats
from llmtally.providers.openai import responses_ledger
from tests.unit.instrument.conftest import (
    Recorder,
    RecordingPublisher,
    cost,
    fixture_json,
    fixture_text,
    json_body,
    ledger,
    sse,
)

SCHEMA: Any = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": False,
        },
    },
}
CHAT: Any = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]
CHAT_LEDGER = {
    "input_tokens": 512,
    "cache_read_tokens": 1536,
    "cache_write_tokens": 0,
    "output_tokens": 100,
    "reasoning_tokens": 0,
}
CHAT_STREAM_LEDGER = {
    "input_tokens": 744,
    "cache_read_tokens": 256,
    "cache_write_tokens": 0,
    "output_tokens": 50,
    "reasoning_tokens": 0,
}
# Responses stream fixture (gpt-5): input 2000 incl. 1536 cached; output 300 incl. 256 reasoning.
RESPONSES_STREAM_LEDGER = {
    "input_tokens": 464,
    "cache_read_tokens": 1536,
    "cache_write_tokens": 0,
    "output_tokens": 44,
    "reasoning_tokens": 256,
}
RESPONSES_STREAM_COST = Decimal("0.003772")  # 464×1.25 + 1536×0.125 + (44+256)×10 per million


def make(recorder: Recorder, *, is_async: bool, publisher: RecordingPublisher) -> Any:
    options: dict[str, Any] = {"api_key": "sk-test-key", "base_url": "http://openai.test/v1", "max_retries": 0}
    if is_async:
        client: Any = openai.AsyncOpenAI(http_client=recorder.async_client(), **options)
    else:
        client = openai.OpenAI(http_client=recorder.sync_client(), **options)
    assert llmtally.instrument(client, publisher=publisher, user_id="acme", operation_type="rule_enrichment") is client
    return client


def run(value: Any) -> Any:
    return asyncio.run(value) if asyncio.iscoroutine(value) else value


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_chat_completion_with_json_schema_and_image(is_async: bool, publisher: RecordingPublisher) -> None:
    # Given a cached-prompt answer
    recorder = Recorder(json_body(fixture_json("openai", "chat_cached.json"), headers={"x-request-id": "req_c"}))
    client = make(recorder, is_async=is_async, publisher=publisher)

    # When the caller asks with a JSON schema and an image
    completion = run(client.chat.completions.create(model="gpt-4o", messages=CHAT, response_format=SCHEMA))

    # Then the SDK's ChatCompletion comes back and the request is the caller's, untouched
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert recorder.body() == {"model": "gpt-4o", "messages": CHAT, "response_format": SCHEMA}
    # And the ledger subtracts the cached share from prompt_tokens
    event = publisher.only
    assert (event.provider, event.model, event.operation_type) == (
        Provider.OPENAI,
        "gpt-4o-2024-08-06",
        "rule_enrichment",
    )
    assert ledger(event) == CHAT_LEDGER
    assert event.usage_source is UsageSource.REPORTED
    assert event.metadata["provider_request_id"] == "req_c"
    assert cost(event) == Decimal("0.0042")  # 512×2.5 + 1536×1.25 + 100×10 per million


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_chat_stream_asks_for_usage_and_hides_the_extra_chunk(is_async: bool, publisher: RecordingPublisher) -> None:
    # Given a stream whose last chunk carries the usage
    recorder = Recorder(sse(fixture_text("openai", "stream_usage.sse")))
    client = make(recorder, is_async=is_async, publisher=publisher)

    async def consume_async() -> list[Any]:
        stream = await client.chat.completions.create(model="gpt-4o", messages=CHAT, stream=True)
        assert isinstance(stream, openai.AsyncStream)
        return [chunk async for chunk in stream]

    def consume_sync() -> list[Any]:
        with client.chat.completions.create(model="gpt-4o", messages=CHAT, stream=True) as stream:
            assert isinstance(stream, openai.Stream)
            return list(stream)

    # When the caller streams without asking for usage
    chunks = asyncio.run(consume_async()) if is_async else consume_sync()

    # Then usage was requested, but the caller sees only the chunks it would have seen without it
    assert recorder.body()["stream_options"] == {"include_usage": True}
    assert [chunk.choices[0].delta.content for chunk in chunks] == ["", "Hello", ", world", None]
    event = publisher.only
    assert ledger(event) == CHAT_STREAM_LEDGER
    assert event.usage_source is UsageSource.REPORTED
    assert cost(event) == Decimal("0.00268")  # 744×2.5 + 256×1.25 + 50×10 per million


def test_a_caller_that_asked_for_usage_still_gets_the_usage_chunk(publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("openai", "stream_usage.sse")))
    client = make(recorder, is_async=False, publisher=publisher)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=CHAT, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len(chunks) == 5
    assert chunks[-1].usage is not None
    assert chunks[-1].choices == []
    assert ledger(publisher.only) == CHAT_STREAM_LEDGER


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_responses_create_with_reasoning(is_async: bool, publisher: RecordingPublisher) -> None:
    # Given a Responses API answer from a reasoning model
    recorder = Recorder(json_body(fixture_json("openai", "responses_reasoning.json")))
    client = make(recorder, is_async=is_async, publisher=publisher)

    # When the caller uses responses.create
    response = run(client.responses.create(model="o4-mini", input="Which rules fire?", reasoning={"effort": "medium"}))

    # Then the SDK's Response comes back; cached input and reasoning are split out of the totals
    assert isinstance(response, openai.types.responses.Response)
    assert response.output_text == "Three rules fire on that log line."
    event = publisher.only
    assert event.model == "o4-mini-2025-04-16"
    assert event.metadata["instrumented"] == "openai.responses.create"
    assert ledger(event) == {
        "input_tokens": 176,
        "cache_read_tokens": 1024,
        "cache_write_tokens": 0,
        "output_tokens": 228,
        "reasoning_tokens": 512,
    }
    assert cost(event) == Decimal("0.0037312")  # 176×1.1 + 1024×0.275 + (228+512)×4.4 per million


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_responses_stream(is_async: bool, publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("openai", "responses_stream.sse"), {"x-request-id": "req_rs"}))
    client = make(recorder, is_async=is_async, publisher=publisher)

    async def consume_async() -> list[str]:
        stream = await client.responses.create(model="gpt-5", input="Hi", stream=True)
        async with stream:
            return [event.type async for event in stream]

    def consume_sync() -> list[str]:
        return [event.type for event in client.responses.create(model="gpt-5", input="Hi", stream=True)]

    types = asyncio.run(consume_async()) if is_async else consume_sync()

    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert len(types) == 10
    event = publisher.only
    assert event.model == "gpt-5-2025-08-07"
    assert event.metadata["provider_request_id"] == "req_rs"
    assert ledger(event) == RESPONSES_STREAM_LEDGER
    assert cost(event) == RESPONSES_STREAM_COST


def test_the_responses_stream_helper_is_metered_through_create(publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("openai", "responses_stream.sse")))
    client = make(recorder, is_async=False, publisher=publisher)
    with client.responses.stream(model="gpt-5", input="Hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello, world"
    assert ledger(publisher.only) == RESPONSES_STREAM_LEDGER


def test_a_responses_stream_broken_off_is_one_missing_event(publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("openai", "responses_stream.sse")))
    client = make(recorder, is_async=False, publisher=publisher)
    stream = client.responses.create(model="gpt-5", input="Hi", stream=True)
    for event in stream:
        if event.type == "response.output_text.delta":
            break
    del stream
    gc.collect()
    event = publisher.only
    assert event.usage_source is UsageSource.MISSING
    assert event.total_tokens == 0
    assert event.model == "gpt-5-2025-08-07"


def test_with_raw_response_is_metered_from_the_parsed_body(publisher: RecordingPublisher) -> None:
    # LangChain's ChatOpenAI calls through with_raw_response
    recorder = Recorder(json_body(fixture_json("openai", "chat_cached.json")))
    client = make(recorder, is_async=False, publisher=publisher)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=CHAT)
    parsed = raw.parse()
    assert parsed is raw.parse()
    assert parsed.usage is not None
    assert ledger(publisher.only) == CHAT_LEDGER


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_error_propagates_and_is_published(is_async: bool, publisher: RecordingPublisher) -> None:
    case = fixture_json("openai", "errors.json")["authentication"]
    recorder = Recorder(json_body(case["body"], case["status"], case.get("headers")))
    client = make(recorder, is_async=is_async, publisher=publisher)
    with pytest.raises(openai.AuthenticationError):
        run(client.responses.create(model="gpt-5", input="Hi"))
    event = publisher.only
    assert (event.status, event.error_type, event.model) == (Status.ERROR, "authentication", "gpt-5")
    # The masked key the provider echoed never reaches the event
    assert "sk-" not in event.to_json()


def test_azure_clients_are_not_metered(publisher: RecordingPublisher) -> None:
    recorder = Recorder(json_body(fixture_json("openai", "chat_cached.json")))
    azure = openai.AzureOpenAI(
        api_key="k", api_version="2024-10-21", azure_endpoint="http://azure.test", http_client=recorder.sync_client()
    )
    assert llmtally.instrument(azure, publisher=publisher, user_id="acme") is azure
    azure.chat.completions.create(model="my-deployment", messages=CHAT)
    assert publisher.events == []
    assert stats().unmetered >= 1


@given(
    st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7)
)
def test_the_responses_ledger_splits_the_totals_without_losing_or_adding_a_token(
    input_tokens: int, cached: int, written: int, output_tokens: int, reasoning: int
) -> None:
    # Details larger than their totals (a provider bug) are clamped, never negative
    usage = ResponseUsage.model_validate(
        {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_tokens + output_tokens,
        }
    )
    tokens = responses_ledger(usage)
    assert tokens.input_tokens + tokens.cache_read_tokens + tokens.cache_write_tokens == input_tokens
    assert tokens.output_tokens + tokens.reasoning_tokens == output_tokens
    assert tokens.total_tokens == input_tokens + output_tokens


def test_no_key_reaches_a_log_line_or_an_event(publisher: RecordingPublisher, caplog: pytest.LogCaptureFixture) -> None:
    # Given a client with a real-shaped key, a 401 that echoes the (masked) key, and a broken answer
    key = "sk-proj-REALSHAPEDKEY0123456789abcdefABCDEF0123456789wxyz"
    case = fixture_json("openai", "errors.json")["authentication"]
    broken = fixture_json("openai", "chat_cached.json")
    broken["usage"]["prompt_tokens"] = -1
    answers = iter([json_body(case["body"], case["status"], case.get("headers")), json_body(broken)])
    recorder = Recorder(lambda request: next(answers)(request))
    client = openai.OpenAI(
        api_key=key, base_url="http://openai.test/v1", http_client=recorder.sync_client(), max_retries=0
    )
    llmtally.instrument(client, publisher=publisher, user_id="acme")
    caplog.set_level("DEBUG")

    # When both calls run (one error event; one extraction failure, logged with its traceback)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o", messages=CHAT)
    client.chat.completions.create(model="gpt-4o", messages=CHAT)

    # Then neither the key nor its masked echo is in any log line or event
    assert stats().failures == 1
    published = "".join(event.to_json() for event in publisher.events)
    for text in (caplog.text, published):
        assert key not in text
        assert "sk-proj-" not in text


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_beta_responses_create_is_metered_like_responses_create(is_async: bool, publisher: RecordingPublisher) -> None:
    recorder = Recorder(json_body(fixture_json("openai", "responses_reasoning.json")))
    client = make(recorder, is_async=is_async, publisher=publisher)
    run(client.beta.responses.create(model="o4-mini", input="Which rules fire?"))
    event = publisher.only
    assert event.metadata["instrumented"] == "openai.beta.responses.create"
    assert (event.input_tokens, event.cache_read_tokens, event.output_tokens, event.reasoning_tokens) == (
        176,
        1024,
        228,
        512,
    )

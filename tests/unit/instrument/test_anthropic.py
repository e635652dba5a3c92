"""anthropic.Anthropic / AsyncAnthropic through llmtally.instrument: every entry point, sync and async,
streaming or not, on a mocked HTTP transport with realistic payloads; exact ledger and cost."""

from __future__ import annotations

import asyncio
import gc
import json
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import pytest

import llmtally
from llmtally.events import Provider, Status, UsageSource
from llmtally.instrumentation import stats
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

MODEL = "claude-sonnet-4-6"
TOOLS: Any = [
    {
        "name": "get_weather",
        "description": "Current weather",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    }
]
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
MESSAGES: Any = [{"role": "user", "content": [{"type": "text", "text": "Weather in SF?"}, IMAGE]}]
# The fixture stream: input 25, cache write 1500 (5-minute), output 15.
STREAM_LEDGER = {
    "input_tokens": 25,
    "cache_read_tokens": 0,
    "cache_write_tokens": 1500,
    "cache_write_5m_tokens": 1500,
    "cache_write_1h_tokens": 0,
    "output_tokens": 15,
    "reasoning_tokens": 0,
}
STREAM_COST = Decimal("0.005925")  # 25×3 + 1500×3.75 + 15×15 per million


def make(recorder: Recorder, *, is_async: bool, publisher: RecordingPublisher, **defaults: Any) -> Any:
    if is_async:
        client: Any = anthropic.AsyncAnthropic(
            api_key="sk-ant-test", base_url="http://anthropic.test", http_client=recorder.async_client(), max_retries=0
        )
    else:
        client = anthropic.Anthropic(
            api_key="sk-ant-test", base_url="http://anthropic.test", http_client=recorder.sync_client(), max_retries=0
        )
    assert llmtally.instrument(client, publisher=publisher, user_id="acme", **defaults) is client
    return client


def run(value: Any) -> Any:
    return asyncio.run(value) if asyncio.iscoroutine(value) else value


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_tool_call_is_metered_and_everything_passes_through(is_async: bool, publisher: RecordingPublisher) -> None:
    # Given an instrumented client and a tool-use answer with cache reads
    recorder = Recorder(
        json_body(fixture_json("anthropic", "message_tool_use.json"), headers={"request-id": "req_tool"})
    )
    client = make(recorder, is_async=is_async, publisher=publisher, tags={"feature": "weather"})

    # When the caller makes a call with tools, an image and extra headers
    message = run(
        client.messages.create(
            model=MODEL, max_tokens=512, messages=MESSAGES, tools=TOOLS, extra_headers={"x-trace": "t-1"}
        )
    )

    # Then it gets the SDK's own Message, and the request went out exactly as written
    assert isinstance(message, anthropic.types.Message)
    assert message.stop_reason == "tool_use"
    tool_use = message.content[1]
    assert isinstance(tool_use, anthropic.types.ToolUseBlock)
    assert tool_use.input == {
        "location": "San Francisco, CA",
        "unit": "celsius",
    }
    assert recorder.body() == {"model": MODEL, "max_tokens": 512, "messages": MESSAGES, "tools": TOOLS}
    assert recorder.requests[-1].headers["x-trace"] == "t-1"
    # And one event carries the exact ledger (Anthropic's input excludes cache) and cost
    event = publisher.only
    assert (event.provider, event.model, event.user_id, event.status) == (Provider.ANTHROPIC, MODEL, "acme", Status.OK)
    assert event.tags == {"feature": "weather"}
    assert event.operation_type == "conversation"
    assert ledger(event) == {
        "input_tokens": 472,
        "cache_read_tokens": 1024,
        "cache_write_tokens": 0,
        "output_tokens": 89,
        "reasoning_tokens": 0,
    }
    assert event.usage_source is UsageSource.REPORTED
    assert event.metadata == {"instrumented": "anthropic.messages.create", "provider_request_id": "req_tool"}
    assert cost(event) == Decimal("0.0030582")  # 472×3 + 1024×0.3 + 89×15 per million


def test_a_sync_stream_behaves_like_the_sdks_and_publishes_once(publisher: RecordingPublisher) -> None:
    # Given a streamed answer
    recorder = Recorder(sse(fixture_text("anthropic", "stream_cache.sse"), {"request-id": "req_s"}))
    client = make(recorder, is_async=False, publisher=publisher)

    # When the caller iterates it inside `with`
    with client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True) as stream:
        assert isinstance(stream, anthropic.Stream)
        types = [event.type for event in stream]
        assert not publisher.events or len(publisher.events) == 1

    # Then it saw every event the SDK yields (it drops `ping`), and exactly one usage event was published
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    event = publisher.only
    assert ledger(event) == STREAM_LEDGER
    assert event.usage_source is UsageSource.REPORTED
    assert cost(event) == STREAM_COST
    assert event.metadata["provider_request_id"] == "req_s"


def test_an_async_stream_behaves_like_the_sdks_and_publishes_once(publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("anthropic", "stream_cache.sse")))
    client = make(recorder, is_async=True, publisher=publisher)

    async def consume() -> list[str]:
        stream = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
        assert isinstance(stream, anthropic.AsyncStream)
        async with stream:
            return [event.type async for event in stream]

    # When an async stream is consumed
    types = asyncio.run(consume())

    # Then one event, exact ledger and cost
    assert len(types) == 7  # the SDK drops `ping`
    event = publisher.only
    assert ledger(event) == STREAM_LEDGER
    assert cost(event) == STREAM_COST


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_stream_helper_text_stream_and_final_message(is_async: bool, publisher: RecordingPublisher) -> None:
    # Given the messages.stream(...) helper, under an attribution block
    recorder = Recorder(sse(fixture_text("anthropic", "stream_cache.sse")))
    client = make(recorder, is_async=is_async, publisher=publisher)

    def sync() -> tuple[str, Any]:
        with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            text = "".join(stream.text_stream)
            return text, stream.get_final_message()

    async def asynchronous() -> tuple[str, Any]:
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            text = "".join([chunk async for chunk in stream.text_stream])
            return text, await stream.get_final_message()

    with llmtally.attribution(user_id="tenant-b", operation_type="support_chat"):
        text, final = asyncio.run(asynchronous()) if is_async else sync()

    # Then the helper works as the SDK's: text, final message with its usage
    assert text == "Hello, world"
    assert final.usage.output_tokens == 15
    # And one event, billed to the block's tenant
    event = publisher.only
    assert (event.user_id, event.operation_type) == ("tenant-b", "support_chat")
    assert ledger(event) == STREAM_LEDGER
    assert cost(event) == STREAM_COST
    assert event.metadata["instrumented"] == "anthropic.messages.stream"


def test_a_stream_abandoned_mid_way_publishes_exactly_one_missing_event(publisher: RecordingPublisher) -> None:
    # Given a stream the caller leaves after the first event, without closing it
    recorder = Recorder(sse(fixture_text("anthropic", "stream_cache.sse")))
    client = make(recorder, is_async=False, publisher=publisher)
    stream = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    for _ in stream:
        break
    assert publisher.events == []

    # When it is dropped
    del stream
    gc.collect()

    # Then exactly one event: usage missing, holding what was known (input and cache from message_start)
    event = publisher.only
    assert event.usage_source is UsageSource.MISSING
    assert event.status is Status.OK
    assert (event.input_tokens, event.cache_write_tokens, event.output_tokens) == (25, 1500, 1)


def test_close_mid_way_publishes_once_and_closing_again_adds_nothing(publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("anthropic", "stream_cache.sse")))
    client = make(recorder, is_async=False, publisher=publisher)
    stream = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    next(stream)

    # When the caller closes it early, twice, then drops it
    stream.close()
    stream.close()
    del stream
    gc.collect()

    # Then one event, marked missing
    assert publisher.only.usage_source is UsageSource.MISSING


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_api_error_propagates_unchanged_and_is_published(is_async: bool, publisher: RecordingPublisher) -> None:
    # Given a 429 answer
    case = fixture_json("anthropic", "errors.json")["rate_limit"]
    recorder = Recorder(json_body(case["body"], case["status"], case.get("headers")))
    client = make(recorder, is_async=is_async, publisher=publisher)
    # When the call fails
    with pytest.raises(anthropic.RateLimitError) as raised:
        run(client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES))

    # Then the SDK's exception reached the caller, and an error event with the taxonomy's class
    assert raised.value.status_code == 429
    event = publisher.only
    assert (event.status, event.error_type, event.total_tokens) == (Status.ERROR, "rate_limit", 0)


def test_an_error_mid_stream_is_an_error_event_with_missing_usage(publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("anthropic", "stream_overloaded_mid_stream.sse")))
    client = make(recorder, is_async=False, publisher=publisher)
    stream = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)

    with pytest.raises(anthropic.APIStatusError):
        for _ in stream:
            pass

    event = publisher.only
    assert (event.status, event.error_type, event.usage_source) == (Status.ERROR, "unavailable", UsageSource.MISSING)
    assert event.input_tokens == 412


def test_an_uninstrumented_client_is_not_metered(publisher: RecordingPublisher) -> None:
    # Given one instrumented client and one plain client of the same SDK
    recorder = Recorder(json_body(fixture_json("anthropic", "message_plain.json")))
    make(recorder, is_async=False, publisher=publisher)
    plain = anthropic.Anthropic(api_key="k", base_url="http://anthropic.test", http_client=recorder.sync_client())

    # When the plain one is used, and then an instrumented one is uninstrumented and used
    plain.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    other = make(recorder, is_async=False, publisher=publisher)
    llmtally.uninstrument(other)
    other.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    # Then nothing was published
    assert publisher.events == []


def test_a_bug_in_usage_extraction_never_reaches_the_caller(
    publisher: RecordingPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a response whose usage is not what the mapping expects
    body = fixture_json("anthropic", "message_plain.json")
    body["usage"]["output_tokens"] = -5  # the ledger refuses negative counts
    recorder = Recorder(json_body(body))
    client = make(recorder, is_async=False, publisher=publisher)

    # When the caller makes the call
    message = client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    # Then it gets its message, nothing is published, the failure is counted and logged
    assert message.usage.output_tokens == -5
    assert publisher.events == []
    assert stats().failures == 1
    assert "the call itself is unaffected" in caplog.text or "could not publish" in caplog.text


def test_request_bodies_are_byte_identical_to_an_uninstrumented_call(publisher: RecordingPublisher) -> None:
    reply = json_body(fixture_json("anthropic", "message_plain.json"))
    bare, metered = Recorder(reply), Recorder(reply)
    anthropic.Anthropic(api_key="k", base_url="http://anthropic.test", http_client=bare.sync_client()).messages.create(
        model=MODEL, max_tokens=8, messages=MESSAGES, tools=TOOLS
    )
    make(metered, is_async=False, publisher=publisher).messages.create(
        model=MODEL, max_tokens=8, messages=MESSAGES, tools=TOOLS
    )
    assert json.loads(bare.requests[0].content) == json.loads(metered.requests[0].content)
    assert isinstance(bare.requests[0], httpx2.Request)


def test_an_async_stream_broken_off_and_closed_publishes_one_missing_event(publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("anthropic", "stream_cache.sse")))
    client = make(recorder, is_async=True, publisher=publisher)

    async def consume() -> None:
        stream = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
        async for event in stream:
            if event.type == "content_block_delta":
                break
        await stream.close()
        await stream.close()

    asyncio.run(consume())
    event = publisher.only
    assert event.usage_source is UsageSource.MISSING
    assert (event.input_tokens, event.cache_write_tokens) == (25, 1500)


def test_a_cancelled_call_propagates_the_cancellation_and_is_recorded(publisher: RecordingPublisher) -> None:
    # Given a provider that never answers
    reached: list[asyncio.Event] = []

    async def hang(request: httpx2.Request) -> httpx2.Response:
        reached[0].set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    client = anthropic.AsyncAnthropic(
        api_key="k",
        base_url="http://anthropic.test",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(hang)),
        max_retries=0,
    )
    llmtally.instrument(client, publisher=publisher, user_id="acme")

    async def main() -> None:
        reached.append(asyncio.Event())
        task = asyncio.create_task(client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES))
        await reached[0].wait()  # the request is in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # When the caller cancels the call
    asyncio.run(main())

    # Then the cancellation propagated, and the call is recorded as cancelled with its usage unknown
    event = publisher.only
    assert (event.status, event.error_type, event.usage_source) == (Status.ERROR, "cancelled", UsageSource.MISSING)


def test_leaving_the_stream_helper_early_publishes_one_missing_event(publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("anthropic", "stream_cache.sse")))
    client = make(recorder, is_async=False, publisher=publisher)
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        for _ in stream.text_stream:
            break  # the helper closes its stream on exit
    event = publisher.only
    assert event.usage_source is UsageSource.MISSING
    assert event.input_tokens == 25

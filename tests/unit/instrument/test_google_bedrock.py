"""google-genai and boto3 bedrock-runtime through llmtally.instrument: every entry point, sync and async
(google), streaming or not, on mocked transports (httpx2 MockTransport; botocore Stubber or canned
HTTP answers with real event-stream bytes); exact ledger and cost."""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from google import genai
from google.genai import types

import llmtally
from llmtally.events import Provider, Status, UsageSource
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
from tests.unit.providers.conftest import answer_bedrock_http, bedrock_stream_body

BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def gemini(recorder: Recorder, publisher: RecordingPublisher) -> genai.Client:
    client = genai.Client(
        api_key="test-google-key",
        http_options=types.HttpOptions(
            base_url="http://gemini.test",
            httpx_client=recorder.sync_client(),
            httpx_async_client=recorder.async_client(),
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )
    assert llmtally.instrument(client, publisher=publisher, user_id="acme") is client
    return client


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_gemini_generate_content(is_async: bool, publisher: RecordingPublisher) -> None:
    # Given an answer with cached content and thoughts
    recorder = Recorder(json_body(fixture_json("google", "generate_cached_thinking.json")))
    client = gemini(recorder, publisher)
    config = types.GenerateContentConfig(response_mime_type="application/json", max_output_tokens=800)

    # When generate_content is called (client.aio for async)
    if is_async:
        response = asyncio.run(
            client.aio.models.generate_content(model="gemini-2.5-flash", contents="Hi", config=config)
        )
    else:
        response = client.models.generate_content(model="gemini-2.5-flash", contents="Hi", config=config)

    # Then the SDK's response, and prompt minus cached is the uncached input; thoughts are reasoning
    assert isinstance(response, types.GenerateContentResponse)
    assert recorder.body()["generationConfig"]["responseMimeType"] == "application/json"
    event = publisher.only
    assert (event.provider, event.model) == (Provider.GOOGLE, "gemini-2.5-flash")
    assert ledger(event) == {
        "input_tokens": 1000,
        "cache_read_tokens": 4000,
        "cache_write_tokens": 0,
        "output_tokens": 150,
        "reasoning_tokens": 600,
    }
    assert cost(event) == Decimal("0.002295")  # 1000×0.3 + 4000×0.03 + (150+600)×2.5 per million


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_gemini_generate_content_stream(is_async: bool, publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("google", "stream.sse")))
    client = gemini(recorder, publisher)

    async def consume_async() -> list[str]:
        stream = await client.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi")
        return [chunk.text or "" async for chunk in stream]

    def consume_sync() -> list[str]:
        return [
            chunk.text or "" for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi")
        ]

    texts = asyncio.run(consume_async()) if is_async else consume_sync()

    assert "".join(texts) == "Hello, world"
    event = publisher.only
    assert event.usage_source is UsageSource.REPORTED
    assert ledger(event) == {
        "input_tokens": 100,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 40,
        "reasoning_tokens": 10,
    }
    assert cost(event) == Decimal("0.000155")  # 100×0.3 + (40+10)×2.5 per million


def test_a_gemini_stream_left_after_the_first_chunk_is_missing(publisher: RecordingPublisher) -> None:
    recorder = Recorder(sse(fixture_text("google", "stream.sse")))
    client = gemini(recorder, publisher)
    stream: Any = client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi")
    next(iter(stream))
    stream.close()
    event = publisher.only
    assert event.usage_source is UsageSource.MISSING
    assert event.input_tokens == 100


def test_a_gemini_error_is_published_and_propagates(publisher: RecordingPublisher) -> None:
    case = fixture_json("google", "errors.json")["authentication"]
    recorder = Recorder(json_body(case["body"], case["status"]))
    client = gemini(recorder, publisher)
    with pytest.raises(genai.errors.ClientError):
        client.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    event = publisher.only
    assert (event.status, event.error_type) == (Status.ERROR, "authentication")


# -- Bedrock -----------------------------------------------------------------------------------------------


def bedrock(publisher: RecordingPublisher) -> Any:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    assert llmtally.instrument(client, publisher=publisher, user_id="acme") is client
    return client


def test_converse(publisher: RecordingPublisher) -> None:
    # Given a Converse answer with cache reads and a 5-minute cache write
    client = bedrock(publisher)
    request = {"modelId": BEDROCK_MODEL, "messages": [{"role": "user", "content": [{"text": "Hi"}]}]}
    with Stubber(client) as stub:
        stub.add_response("converse", fixture_json("bedrock", "converse_cache.json"), request)
        response = client.converse(**request)

    # Then the caller's dict, and the exact ledger
    assert response["stopReason"] == "end_turn"
    event = publisher.only
    assert (event.provider, event.model) == (Provider.BEDROCK, BEDROCK_MODEL)
    assert ledger(event) == {
        "input_tokens": 100,
        "cache_read_tokens": 3000,
        "cache_write_tokens": 500,
        "cache_write_5m_tokens": 500,
        "cache_write_1h_tokens": 0,
        "output_tokens": 100,
        "reasoning_tokens": 0,
    }
    assert cost(event) == Decimal("0.0050325")  # 100×3.3 + 3000×0.33 + 500×4.125 + 100×16.5 per million


def test_converse_stream(publisher: RecordingPublisher) -> None:
    client = bedrock(publisher)
    body = bedrock_stream_body(fixture_json("bedrock", "stream_events.json"))
    answer_bedrock_http(client, "ConverseStream", 200, body, "application/vnd.amazon.eventstream")

    response = client.converse_stream(modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Hi"}]}])
    texts = [e["contentBlockDelta"]["delta"]["text"] for e in response["stream"] if "contentBlockDelta" in e]

    assert texts == ["Hello", ", world"]
    event = publisher.only
    assert (event.input_tokens, event.output_tokens, event.usage_source) == (30, 12, UsageSource.REPORTED)
    assert cost(event) == Decimal("0.000297")  # 30×3.3 + 12×16.5 per million


def test_invoke_model_with_an_anthropic_body(publisher: RecordingPublisher) -> None:
    client = bedrock(publisher)
    answer = json.dumps(fixture_json("bedrock", "invoke_anthropic.json")).encode()
    answer_bedrock_http(client, "InvokeModel", 200, answer, "application/json")
    payload = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
    }

    response = client.invoke_model(modelId=BEDROCK_MODEL, body=json.dumps(payload))

    # The caller reads the body as usual
    assert json.loads(response["body"].read())["content"][0]["text"] == "Hello, world"
    event = publisher.only
    assert ledger(event) == {
        "input_tokens": 40,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 200,
        "output_tokens": 25,
        "reasoning_tokens": 0,
    }
    assert cost(event) == Decimal("0.0016995")  # 40×3.3 + 1000×0.33 + 200×4.125 + 25×16.5 per million


def test_invoke_model_with_response_stream(publisher: RecordingPublisher) -> None:
    client = bedrock(publisher)
    chunks = fixture_json("bedrock", "invoke_stream_anthropic.json")
    events = [{"chunk": {"bytes": base64.b64encode(json.dumps(c).encode()).decode()}} for c in chunks]
    answer_bedrock_http(
        client, "InvokeModelWithResponseStream", 200, bedrock_stream_body(events), "application/vnd.amazon.eventstream"
    )

    response = client.invoke_model_with_response_stream(modelId=BEDROCK_MODEL, body=b"{}")
    decoded = [json.loads(part["chunk"]["bytes"])["type"] for part in response["body"]]

    assert decoded[0] == "message_start"
    assert decoded[-1] == "message_stop"
    event = publisher.only
    assert ledger(event) == {
        "input_tokens": 40,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 0,
        "output_tokens": 25,
        "reasoning_tokens": 0,
    }
    assert cost(event) == Decimal("0.0008745")  # 40×3.3 + 1000×0.33 + 25×16.5 per million


def test_a_bedrock_error_is_published_and_the_client_error_propagates(publisher: RecordingPublisher) -> None:
    client = bedrock(publisher)
    with Stubber(client) as stub:
        stub.add_client_error("converse", "ThrottlingException", "Too many requests", 429)
        with pytest.raises(client.exceptions.ThrottlingException):
            client.converse(modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Hi"}]}])
    event = publisher.only
    assert (event.status, event.error_type) == (Status.ERROR, "rate_limit")


def test_other_boto3_clients_pass_straight_through(publisher: RecordingPublisher) -> None:
    bedrock(publisher)
    sqs = boto3.client("sqs", region_name="us-east-1")
    with Stubber(sqs) as stub:
        stub.add_response("list_queues", {"QueueUrls": []})
        assert sqs.list_queues()["QueueUrls"] == []
    assert publisher.events == []


def test_instrumenting_client_aio_meters_the_async_models(publisher: RecordingPublisher) -> None:
    recorder = Recorder(json_body(fixture_json("google", "generate_cached_thinking.json")))
    client = genai.Client(
        api_key="test-google-key",
        http_options=types.HttpOptions(base_url="http://gemini.test", httpx_async_client=recorder.async_client()),
    )
    assert llmtally.instrument(client.aio, publisher=publisher, user_id="acme") is not None
    asyncio.run(client.aio.models.generate_content(model="gemini-2.5-flash", contents="Hi"))
    assert publisher.only.reasoning_tokens == 600

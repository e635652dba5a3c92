"""Bedrock adapter on the Converse API through real boto3 clients, answered by botocore's Stubber.

ConverseStream returns an event stream, which the Stubber cannot produce; it is answered at the
HTTP layer with real event-stream bytes (see conftest.answer_bedrock_http) so botocore parses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from llmtally.pricing import PriceBook
from llmtally.providers import (
    BedrockProvider,
    ContentFilteredError,
    LLMProviderFactory,
    ModelNotFoundError,
    ProviderError,
    RetryPolicy,
)
from llmtally.responses import LLMUsage
from tests.unit.providers.conftest import (
    FAST_RETRY,
    answer_bedrock_http,
    bedrock_stream_body,
    driven,
    fixture_json,
    no_sleep,
    usd,
)

MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # $1.10 in, $5.50 out, $0.11 read, $1.375 write (5m)

pytestmark = pytest.mark.usefixtures("sync_and_async")


@pytest.fixture
def runtime() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1")


@pytest.fixture
def stub(runtime: Any) -> Iterator[Stubber]:
    with Stubber(runtime) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def make(runtime: Any, price_book: PriceBook, **options: Any) -> BedrockProvider:
    options = {"retry": FAST_RETRY, "sleep": no_sleep, "model": MODEL, **options}
    provider = LLMProviderFactory.create("bedrock", client=runtime, price_book=price_book, **options)
    assert isinstance(provider, BedrockProvider)
    return driven(provider)


def test_plain_converse(runtime: Any, stub: Stubber, price_book: PriceBook) -> None:
    expected = {
        "modelId": MODEL,
        "messages": [{"role": "user", "content": [{"text": "count"}]}],
        "system": [{"text": "SQL only."}],
        "inferenceConfig": {"maxTokens": 500, "temperature": 0.0},
    }
    stub.add_response("converse", fixture_json("bedrock", "converse_plain.json"), expected)
    response = make(runtime, price_book).generate(prompt="count", system="SQL only.", max_tokens=500, temperature=0.0)
    usage = response.usage
    assert response.content == "SELECT * FROM cloudtrail"
    assert (response.provider, response.model) == ("bedrock", MODEL)
    assert response.request_id == "4d2c1e7a-8b9f-4c3d-a1e2-f3b4c5d6e7f8"
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (1000, 0, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (200, 0, 1200)
    assert usage.cost_usd == usd("0.0022")  # 1000×1.10 + 200×5.50


def test_cache_point_and_cache_buckets(runtime: Any, stub: Stubber, price_book: PriceBook) -> None:
    expected = {
        "modelId": MODEL,
        "messages": [{"role": "user", "content": [{"text": "q"}]}],
        "system": [{"text": "long prompt"}, {"cachePoint": {"type": "default"}}],
        "inferenceConfig": {"maxTokens": 1024},
    }
    stub.add_response("converse", fixture_json("bedrock", "converse_cache.json"), expected)
    usage = make(runtime, price_book).generate(prompt="q", system="long prompt", cache=True).usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (100, 3000, 500)
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (500, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (100, 0, 3700)
    # 100×1.10 + 3000×0.11 + 500×1.375 + 100×5.50 = 1,677.5 µ$
    assert usage.cost_usd == usd("0.0016775")


def test_guardrail_intervention_is_content_filtered(runtime: Any, stub: Stubber, price_book: PriceBook) -> None:
    stub.add_response("converse", fixture_json("bedrock", "converse_guardrail.json"))
    with pytest.raises(ContentFilteredError) as caught:
        make(runtime, price_book).generate(prompt="q")
    assert caught.value.code == "guardrail_intervened"
    assert caught.value.content == "Sorry, the model cannot answer this question."
    assert caught.value.usage is not None
    assert caught.value.usage.cost_usd == usd("0.000077")


def test_converse_stream(runtime: Any, price_book: PriceBook) -> None:
    body = bedrock_stream_body(fixture_json("bedrock", "stream_events.json"))
    sent = answer_bedrock_http(runtime, "ConverseStream", 200, body, "application/vnd.amazon.eventstream")
    stream = make(runtime, price_book).stream(prompt="hi")
    items = list(stream)
    assert items[:-1] == ["Hello", ", world"]
    usage = items[-1]
    assert isinstance(usage, LLMUsage)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        30,
        12,
        0,
        0,
    )
    assert usage.cost_usd == usd("0.000099")  # 30×1.10 + 12×5.50
    assert stream.response is not None
    assert stream.response.request_id == "req-stream-1"
    assert len(sent) == 1


def test_an_exception_event_mid_stream_is_mapped(runtime: Any, price_book: PriceBook) -> None:
    events: list[dict[str, Any]] = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 0}},
        {"throttlingException": {"message": "Too many tokens"}},
    ]
    answer_bedrock_http(
        runtime, "ConverseStream", 200, bedrock_stream_body(events), "application/vnd.amazon.eventstream"
    )
    stream = make(runtime, price_book).stream(prompt="hi")
    assert next(stream) == "Hel"
    with pytest.raises(ProviderError) as caught:
        next(stream)
    assert caught.value.error_type.value == "rate_limit"


@pytest.mark.parametrize("case", list(fixture_json("bedrock", "errors.json")))
def test_each_error_class_maps_to_the_taxonomy(case: str, runtime: Any, stub: Stubber, price_book: PriceBook) -> None:
    spec = fixture_json("bedrock", "errors.json")[case]
    stub.add_client_error("converse", spec["code"], spec["message"], spec["status"])
    with pytest.raises(ProviderError) as caught:
        make(runtime, price_book, retry=RetryPolicy(max_attempts=1)).generate(prompt="q")
    assert caught.value.error_type.value == spec["expected"]
    assert isinstance(caught.value, ModelNotFoundError) == spec["model_missing"]
    assert caught.value.code == spec["code"]


def test_throttling_is_retried_by_us(runtime: Any, stub: Stubber, price_book: PriceBook) -> None:
    stub.add_client_error("converse", "ThrottlingException", "slow down", 429)
    stub.add_response("converse", fixture_json("bedrock", "converse_plain.json"))
    assert make(runtime, price_book).generate(prompt="q").usage.cost_usd == usd("0.0022")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"), "timeout"),
        (EndpointConnectionError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"), "unavailable"),
    ],
)
def test_transport_failures(exc: Exception, expected: str, runtime: Any, price_book: PriceBook) -> None:
    def fail(**_: Any) -> None:
        raise exc

    runtime.meta.events.register("before-send.bedrock-runtime.Converse", fail)
    with pytest.raises(ProviderError) as caught:
        make(runtime, price_book, retry=RetryPolicy(max_attempts=1)).generate(prompt="q")
    assert caught.value.error_type.value == expected


def test_connection_test_uses_the_control_plane_for_free(runtime: Any, price_book: PriceBook) -> None:
    control = boto3.client("bedrock", region_name="us-east-1")
    with Stubber(control) as stubber:
        stubber.add_response(
            "get_foundation_model",
            fixture_json("bedrock", "foundation_model.json"),
            {"modelIdentifier": "amazon.nova-pro-v1:0"},
        )
        stubber.add_client_error(
            "get_inference_profile", "ResourceNotFoundException", "Inference profile not found", 404
        )
        provider = make(runtime, price_book, control_client=control)
        ok = provider.test_connection("amazon.nova-pro-v1:0")
        missing = provider.test_connection("us.anthropic.claude-nope-v1:0")
    assert (ok.success, ok.model) == (True, "amazon.nova-pro-v1:0")
    assert (missing.success, missing.error_type) == (False, "invalid_request")
    assert "was not found" in missing.message


def test_bedrock_takes_no_api_key() -> None:
    from llmtally.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="AWS credentials"):
        LLMProviderFactory.create("bedrock", api_key="sk-whatever")

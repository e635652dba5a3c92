"""Streams whose usage never arrives: recorded as usage-missing, never as a $0 success; one event each.

Every provider's real SDK parses the payloads (httpx2.MockTransport for Anthropic, OpenAI and
Gemini; real event-stream bytes for Bedrock). The caller still gets every chunk the provider sent
and no exception (instrumentation never changes what the caller sees); the response, and the
event TrackedProvider publishes, say `usage_source=missing` and carry no reported cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from llmtally.events import Status, UsageEvent, UsageSource
from llmtally.pricing import PriceBook
from llmtally.providers import LLMProvider, LLMProviderFactory, ProviderError, RetryPolicy, TrackedProvider
from llmtally.providers import track as _track
from llmtally.responses import LLMUsage
from tests.unit.providers.conftest import (
    KEYS,
    MockAPI,
    answer_bedrock_http,
    bedrock_stream_body,
    driven,
    fixture_json,
    fixture_text,
    no_sleep,
    run_finalizers,
    sse_reply,
)

TEXT = "The rule matches failed logins."
OPTIONS: dict[str, Any] = {"retry": RetryPolicy(max_attempts=1), "sleep": no_sleep}


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def publish(self, event: UsageEvent) -> bool:
        self.events.append(event)
        return True


pytestmark = pytest.mark.usefixtures("sync_and_async")


def track(provider: LLMProvider, sink: Any, **kwargs: Any) -> TrackedProvider:
    """`llmtally.providers.track`, driven through the async API in the async run."""
    return driven(_track(provider, sink, **kwargs))


def keyed(provider: str, fixture: str, price_book: PriceBook) -> LLMProvider:
    api = MockAPI([sse_reply(fixture_text(provider, fixture))])
    return LLMProviderFactory.create(
        provider, api_key=KEYS[provider], **api.clients(), price_book=price_book, **OPTIONS
    )


def bedrock(fixture: str, price_book: PriceBook) -> LLMProvider:
    runtime = boto3.client("bedrock-runtime", region_name="us-east-1")
    body = bedrock_stream_body(fixture_json("bedrock", fixture))
    answer_bedrock_http(runtime, "ConverseStream", 200, body, "application/vnd.amazon.eventstream")
    return LLMProviderFactory.create(
        "bedrock",
        client=runtime,
        price_book=price_book,
        model="us.anthropic.claude-haiku-4-5-20251001-v1:0",
        **OPTIONS,
    )


#: (case, a provider answering with a stream that never reports its final usage, tokens seen before the end)
CASES: dict[str, tuple[Callable[[PriceBook], LLMProvider], tuple[int, int]]] = {
    # message_start (input 412, output 1) arrived, the message_delta with the final counts never did
    "anthropic-cut-before-message-delta": (
        lambda book: keyed("anthropic", "stream_cut_before_usage.sse", book),
        (412, 1),
    ),
    # a finish reason without usageMetadata anywhere
    "google-no-usage-metadata": (lambda book: keyed("google", "stream_without_usage.sse", book), (0, 0)),
    # prompt counts on each chunk, but the stream ends before the finishing chunk
    "google-cut-before-finish": (lambda book: keyed("google", "stream_cut_before_finish.sse", book), (412, 0)),
    # a compatible server that ignores stream_options.include_usage
    "openai-no-usage-chunk": (lambda book: keyed("openai", "stream_without_usage.sse", book), (0, 0)),
    # no `metadata` event
    "bedrock-no-metadata-event": (lambda book: bedrock("stream_without_metadata.json", book), (0, 0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_stream_without_usage_delivers_its_text_and_says_the_usage_is_missing(
    case: str, price_book: PriceBook, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a provider whose stream ends without its final usage
    build, (input_tokens, output_tokens) = CASES[case]
    # When the caller reads the stream to the end
    stream = driven(build(price_book)).stream(prompt="Explain the rule")
    items = list(stream)
    # Then every chunk arrived, nothing was raised, and the usage is marked missing (the counts seen)
    text = [item for item in items if isinstance(item, str)]
    usage = items[-1]
    assert "".join(text) == (TEXT if "openai" not in case else "Hello, world")
    assert isinstance(usage, LLMUsage)
    assert (usage.input_tokens, usage.output_tokens) == (input_tokens, output_tokens)
    assert stream.usage_source is UsageSource.MISSING
    assert stream.response is not None
    assert stream.response.usage_source is UsageSource.MISSING
    assert "stream ended without usage" in caplog.text


@pytest.mark.parametrize("case", list(CASES))
def test_a_tracked_stream_without_usage_is_one_usage_missing_event_never_a_reported_cost(
    case: str, price_book: PriceBook
) -> None:
    # Given a tracked provider whose stream ends without its final usage
    build, (input_tokens, output_tokens) = CASES[case]
    sink = RecordingSink()
    provider = track(build(price_book), sink, user_id="user-123", operation_type="detection_rule")
    # When the caller reads it to the end
    list(provider.stream(prompt="Explain the rule"))
    # Then one event: a completed call (status ok) whose usage is missing, with no cost reported
    (event,) = sink.events
    assert (event.status, event.usage_source) == (Status.OK, UsageSource.MISSING)
    assert (event.input_tokens, event.output_tokens) == (input_tokens, output_tokens)
    assert event.reported_cost_usd is None
    assert event.to_detail()["usage_source"] == "missing"


@pytest.mark.parametrize(
    ("provider", "fixture"),
    [("anthropic", "stream_cache.sse"), ("google", "stream.sse"), ("openai", "stream_usage.sse")],
)
def test_a_stream_with_its_usage_is_reported(provider: str, fixture: str, price_book: PriceBook) -> None:
    # Given the providers' complete streams, When tracked to the end
    sink = RecordingSink()
    list(track(keyed(provider, fixture, price_book), sink, user_id="user-123").stream(prompt="hi"))
    # Then the event's usage is reported (the default, left off the wire) with the adapter's cost
    (event,) = sink.events
    assert event.usage_source is UsageSource.REPORTED
    assert "usage_source" not in event.to_detail()
    assert event.reported_cost_usd is not None
    assert event.reported_cost_usd > 0


def test_a_bedrock_stream_with_its_metadata_is_reported(price_book: PriceBook) -> None:
    sink = RecordingSink()
    list(track(bedrock("stream_events.json", price_book), sink, user_id="user-123").stream(prompt="hi"))
    (event,) = sink.events
    assert (event.usage_source, event.input_tokens, event.output_tokens) == (UsageSource.REPORTED, 30, 12)


# -- closed early, failed after partial output: TrackedProvider ------------------------------------


@pytest.mark.parametrize("how", ["break", "close", "context manager", "dropped"])
def test_a_stream_the_caller_abandons_publishes_exactly_one_cancelled_usage_missing_event(
    how: str, price_book: PriceBook
) -> None:
    # Given a tracked Anthropic stream whose first chunk the caller has read
    sink = RecordingSink()
    provider = track(keyed("anthropic", "stream_cache.sse", price_book), sink, user_id="user-123")
    stream = provider.stream(prompt="hi")
    # When the caller stops reading, in each way a caller can
    if how == "break":
        for chunk in stream:
            assert chunk == "Hello"
            break
        stream.close()  # what the generator's finalizer would do; idempotent
    elif how == "close":
        assert next(stream) == "Hello"
        stream.close()
        stream.close()
    elif how == "context manager":
        with stream:
            assert next(stream) == "Hello"
    else:
        assert next(stream) == "Hello"
        del stream  # CPython finalizes the generator at once (an async one: the loop's finalizer runs aclose)
        run_finalizers()
    # Then exactly one event: cancelled, with the tokens message_start reported, usage missing
    (event,) = sink.events
    assert (event.status, event.error_type, event.usage_source) == (Status.ERROR, "cancelled", UsageSource.MISSING)
    assert (event.input_tokens, event.cache_write_tokens) == (25, 1500)
    assert event.reported_cost_usd is None


def test_a_caller_that_stops_after_the_usage_item_gets_a_reported_event(price_book: PriceBook) -> None:
    # Given a tracked stream read up to and including its final usage item
    sink = RecordingSink()
    stream = track(keyed("anthropic", "stream_cache.sse", price_book), sink, user_id="user-123").stream(prompt="hi")
    items = [next(stream) for _ in range(3)]
    assert isinstance(items[-1], LLMUsage)
    # When the caller closes it instead of reaching StopIteration
    stream.close()
    # Then the one event is the completed call's, usage reported
    (event,) = sink.events
    assert (event.status, event.usage_source, event.output_tokens) == (Status.OK, UsageSource.REPORTED, 15)


def test_an_error_after_partial_output_is_one_error_event_with_usage_missing(price_book: PriceBook) -> None:
    # Given a tracked Anthropic stream that fails (overloaded) after its first text
    sink = RecordingSink()
    stream = track(keyed("anthropic", "stream_overloaded_mid_stream.sse", price_book), sink, user_id="user-123").stream(
        prompt="hi"
    )
    # When the caller reads it
    assert next(stream) == "The rule matches"
    with pytest.raises(ProviderError) as caught:
        next(stream)
    # Then the caller sees the mapped error, and one event records it with the usage missing
    assert caught.value.error_type.value == "unavailable"
    (event,) = sink.events
    assert (event.status, event.error_type, event.usage_source) == (Status.ERROR, "unavailable", UsageSource.MISSING)
    assert event.input_tokens == 412
    assert event.reported_cost_usd is None


def test_a_bedrock_exception_event_after_output_is_usage_missing(price_book: PriceBook) -> None:
    # Given a tracked Bedrock stream throttled after its first text
    events: list[dict[str, Any]] = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 0}},
        {"throttlingException": {"message": "Too many tokens"}},
    ]
    runtime = boto3.client("bedrock-runtime", region_name="us-east-1")
    answer_bedrock_http(
        runtime, "ConverseStream", 200, bedrock_stream_body(events), "application/vnd.amazon.eventstream"
    )
    sink = RecordingSink()
    provider = LLMProviderFactory.create("bedrock", client=runtime, price_book=price_book, **OPTIONS)
    # When read
    with pytest.raises(ProviderError):
        list(track(provider, sink, user_id="user-123").stream(prompt="hi"))
    # Then one error event, usage missing
    (event,) = sink.events
    assert (event.error_type, event.usage_source) == ("rate_limit", UsageSource.MISSING)


def test_an_error_before_any_output_is_an_error_event_whose_zero_usage_is_known(price_book: PriceBook) -> None:
    # Given a stream refused at once (429): nothing generated, nothing billed
    from tests.unit.providers.conftest import ANTHROPIC_KEY, error_reply

    api = MockAPI([error_reply(fixture_json("anthropic", "errors.json")["rate_limit"])])
    provider = LLMProviderFactory.create(
        "anthropic", api_key=ANTHROPIC_KEY, **api.clients(), price_book=price_book, **OPTIONS
    )
    sink = RecordingSink()
    # When read
    with pytest.raises(ProviderError):
        list(track(provider, sink, user_id="user-123").stream(prompt="hi"))
    # Then one error event, its (zero) usage reported, not missing
    (event,) = sink.events
    assert (event.status, event.error_type, event.usage_source) == (Status.ERROR, "rate_limit", UsageSource.REPORTED)
    assert event.total_tokens == 0

"""LLMTallySpanExporter under the real OpenTelemetry SDK, with opentelemetry-instrumentation-openai tracing an OpenAI
client whose HTTP is a mocked transport: one event per model call, the same mapping as the OTLP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from llmtally.events import UsageEvent
from llmtally.integrations.otel import LLMTallySpanExporter

# opentelemetry-instrumentation-openai 0.62 declares a pydantic model with a class-based `Config` (its
# responses wrapper, imported by `instrument()`); pydantic warns once. Every other warning stays an error.
pytestmark = pytest.mark.filterwarnings("ignore:Support for class-based `config` is deprecated:DeprecationWarning")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers" / "openai"


class RecordingPublisher:
    def __init__(self, *, accept: bool = True) -> None:
        self.events: list[UsageEvent] = []
        self.accept = accept
        self.flushes = 0

    def publish(self, event: UsageEvent) -> bool:
        self.events.append(event)
        return self.accept

    def flush(self, timeout: float | None = None) -> bool:
        self.flushes += 1
        return True


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, LLMTallySpanExporter, RecordingPublisher]]:
    publisher = RecordingPublisher()
    exporter = LLMTallySpanExporter(publisher, user_id="acme", tag_attributes={"deployment.environment.name": "env"})  # type: ignore[arg-type]
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "deployment.environment.name": "prod"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider, exporter, publisher
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def _client(fixture: str) -> openai.OpenAI:
    body = (FIXTURES / fixture).read_bytes()
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, content=body, headers={"content-type": "application/json"})
    )
    return openai.OpenAI(api_key="sk-test-not-a-key", http_client=httpx2.Client(transport=transport))


def test_each_model_call_span_is_one_event_with_the_cache_counted_once(
    traced: tuple[TracerProvider, LLMTallySpanExporter, RecordingPublisher],
) -> None:
    provider, exporter, publisher = traced
    # Given a traced request handler that makes a cached chat completion
    with provider.get_tracer("svc").start_as_current_span("POST /search"):
        answer = _client("chat_cached.json").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    # Then the caller's answer is the provider's
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 2048
    # And one event was published for the model call; the HTTP span was ignored
    [event] = publisher.events
    assert (event.input_tokens, event.cache_read_tokens, event.output_tokens) == (512, 1536, 100)
    assert (event.provider, event.model, event.user_id) == ("openai", "gpt-4o-2024-08-06", "acme")
    assert event.tags == {"env": "prod"}
    assert event.metadata["source"] == "otel-exporter"
    assert event.event_id.startswith("otel:")
    assert (exporter.stats.published, exporter.stats.ignored) == (1, 1)


def test_reasoning_tokens_are_taken_out_of_output(
    traced: tuple[TracerProvider, LLMTallySpanExporter, RecordingPublisher],
) -> None:
    _, _, publisher = traced
    _client("chat_reasoning.json").chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "x"}])
    [event] = publisher.events
    assert (event.input_tokens, event.output_tokens, event.reasoning_tokens) == (400, 300, 1200)


def test_a_full_publisher_is_counted_and_flush_and_shutdown_go_to_the_publisher() -> None:
    publisher = RecordingPublisher(accept=False)
    exporter = LLMTallySpanExporter(publisher, user_id="acme")  # type: ignore[arg-type]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"})
    assert exporter.stats.dropped == 1
    assert exporter.force_flush() is True
    provider.shutdown()
    assert publisher.flushes == 2

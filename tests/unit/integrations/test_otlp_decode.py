"""OTLP/HTTP trace bodies → SpanViews: protobuf as the real SDK's OTLP exporter encodes it, OTLP/JSON, gzip, bounds."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from llmtally.integrations.otlp import OtlpError, decode, inflate, response_body


@pytest.fixture(scope="module")
def spans() -> Iterator[list[ReadableSpan]]:
    # Given spans made by the real SDK: a GenAI chat span (error), and an HTTP span
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "enduser.id": "acme"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("chat gpt-4o") as chat:
        chat.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.cache_read.input_tokens": 1000,
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.request.temperature": 0.5,
            }
        )
        chat.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span("GET /") as http:
            http.set_attribute("http.request.method", "GET")
    yield list(memory.get_finished_spans())
    provider.shutdown()


def _protobuf(spans: list[ReadableSpan]) -> bytes:
    return bytes(encode_spans(spans).SerializeToString())


def _otlp_json(spans: list[ReadableSpan]) -> bytes:
    """OTLP/JSON: protobuf's JSON mapping with trace and span ids as hex (not base64)."""
    document: dict[str, Any] = MessageToDict(encode_spans(spans))
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


def test_protobuf_and_json_decode_to_the_same_spans(spans: list[ReadableSpan]) -> None:
    from_protobuf = decode(_protobuf(spans), "application/x-protobuf", max_spans=100)
    from_json = decode(_otlp_json(spans), "application/json; charset=utf-8", max_spans=100)
    assert from_protobuf == from_json
    by_name = {view.name: view for view in from_protobuf}
    chat = by_name["chat gpt-4o"]
    assert chat.error is True
    assert chat.trace_id == spans[1].context.trace_id.to_bytes(16, "big")
    assert chat.span_id == spans[1].context.span_id.to_bytes(8, "big")
    assert chat.attributes["gen_ai.usage.input_tokens"] == 1200
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert chat.resource["enduser.id"] == "acme"
    assert chat.end_ns == spans[1].end_time
    assert by_name["GET /"].error is False


def test_gzip_is_inflated_within_the_bound(spans: list[ReadableSpan]) -> None:
    body = _protobuf(spans)
    assert inflate(gzip.compress(body), "gzip", 1_000_000) == body
    with pytest.raises(OtlpError) as bomb:
        inflate(gzip.compress(b"\0" * 2_000_000), "gzip", 1_000_000)
    assert bomb.value.status == 413
    with pytest.raises(OtlpError) as corrupt:
        inflate(b"not gzip", "gzip", 1_000_000)
    assert corrupt.value.status == 400
    with pytest.raises(OtlpError) as unknown:
        inflate(body, "br", 1_000_000)
    assert unknown.value.status == 415


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\xff\xfe garbage", "application/x-protobuf", 400),
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"00"}]}]}]}', "application/json", 400),
        (b"{}", "text/plain", 415),
        (b"[" * 10_000 + b"]" * 10_000, "application/json", 400),
    ],
)
def test_unreadable_bodies_are_refused_with_a_status(body: bytes, content_type: str, status: int) -> None:
    with pytest.raises(OtlpError) as refused:
        decode(body, content_type, max_spans=100)
    assert refused.value.status == status


def test_more_spans_than_the_bound_is_413(spans: list[ReadableSpan]) -> None:
    for body, kind in ((_protobuf(spans), "application/x-protobuf"), (_otlp_json(spans), "application/json")):
        with pytest.raises(OtlpError) as refused:
            decode(body, kind, max_spans=1)
        assert refused.value.status == 413


def test_responses_are_encoded_like_the_request() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    raw, kind = response_body("application/x-protobuf", 2, "2 of 5 spans rejected")
    parsed = ExportTraceServiceResponse.FromString(raw)
    assert kind == "application/x-protobuf"
    assert (parsed.partial_success.rejected_spans, parsed.partial_success.error_message) == (2, "2 of 5 spans rejected")
    assert response_body("application/json", 0, "") == (b"{}", "application/json")

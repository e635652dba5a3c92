"""OTLP/HTTP trace requests (protobuf or JSON, optionally gzip) → `SpanView`s, in bounded time and memory.

* protobuf: `ExportTraceServiceRequest` from `opentelemetry-proto` (imported on first use only);
* JSON: OTLP's JSON encoding, read with llmtally's bounded JSON parser — ids are hex strings
  (not protobuf-JSON's base64), 64-bit integers may be strings, enums may be numbers or names;
* `Content-Encoding: gzip` is inflated up to the same byte bound as a plain body.

At most `max_spans` spans are read from one request; more is an `OtlpError` (the sender splits).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Final

from llmtally import safejson
from llmtally.integrations.otel_mapping import AttributeValue, SpanView

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
#: OTLP's STATUS_CODE_ERROR.
_STATUS_ERROR: Final = 2


class OtlpError(ValueError):
    """A request that cannot be read; the message is safe to return (never quotes the body)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def inflate(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise OtlpError(f"Content-Encoding {encoding[:20]!r} is not supported (gzip or none)", 415)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise OtlpError("the gzip body is corrupt") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise OtlpError(f"the body inflates to more than {max_bytes} bytes", 413)
    return out


def decode(body: bytes, content_type: str | None, *, max_spans: int) -> list[SpanView]:
    kind = media_type(content_type)
    if kind == PROTOBUF:
        spans = _from_protobuf(body, max_spans)
    elif kind == JSON:
        spans = _from_json(body, max_spans)
    else:
        raise OtlpError("Content-Type must be application/x-protobuf or application/json", 415)
    return spans


# -- protobuf ------------------------------------------------------------------------------------


def _any_value(value: Any) -> AttributeValue | None:
    which = value.WhichOneof("value")
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        result: AttributeValue = getattr(value, which)
        return result
    if which == "array_value":
        items = [_any_value(v) for v in value.array_value.values]
        return [v for v in items if isinstance(v, str | bool | int | float)]
    return None  # kvlist, bytes: never read by the mapping


def _attributes(pairs: Any) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for pair in pairs:
        value = _any_value(pair.value)
        if value is not None:
            out[pair.key] = value
    return out


def _from_protobuf(body: bytes, max_spans: int) -> list[SpanView]:
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise OtlpError("the body is not an OTLP ExportTraceServiceRequest") from exc
    views: list[SpanView] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(views) >= max_spans:
                    raise OtlpError(f"more than {max_spans} spans in one request; export smaller batches", 413)
                views.append(
                    SpanView(
                        trace_id=bytes(span.trace_id),
                        span_id=bytes(span.span_id),
                        name=span.name,
                        start_ns=int(span.start_time_unix_nano),
                        end_ns=int(span.end_time_unix_nano),
                        error=span.status.code == _STATUS_ERROR,
                        attributes=_attributes(span.attributes),
                        resource=resource,
                    )
                )
    return views


# -- JSON ----------------------------------------------------------------------------------------


def _json_value(value: Any) -> AttributeValue | None:
    if not isinstance(value, Mapping):
        return None
    if isinstance(value.get("stringValue"), str):
        return str(value["stringValue"])
    if isinstance(value.get("boolValue"), bool):
        return bool(value["boolValue"])
    raw_int = value.get("intValue")
    if isinstance(raw_int, int) and not isinstance(raw_int, bool):
        return raw_int
    if isinstance(raw_int, str) and raw_int.lstrip("-").isdigit() and len(raw_int) <= 20:
        return int(raw_int)
    raw_double = value.get("doubleValue")
    if isinstance(raw_double, int | float) and not isinstance(raw_double, bool):
        return float(raw_double)
    array = value.get("arrayValue")
    if isinstance(array, Mapping) and isinstance(array.get("values"), list):
        items = [_json_value(v) for v in array["values"]]
        return [v for v in items if isinstance(v, str | bool | int | float)]
    return None


def _json_attributes(pairs: Any) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    if not isinstance(pairs, list):
        return out
    for pair in pairs:
        if isinstance(pair, Mapping) and isinstance(pair.get("key"), str):
            value = _json_value(pair.get("value"))
            if value is not None:
                out[pair["key"]] = value
    return out


def _hex_id(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise OtlpError(f"a span's {what} must be {2 * size} hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise OtlpError(f"a span's {what} must be {2 * size} hex characters") from exc


def _nanos(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    return 0


def _is_error(status: Any) -> bool:
    if not isinstance(status, Mapping):
        return False
    code = status.get("code")
    return code == _STATUS_ERROR or code == "STATUS_CODE_ERROR"


def _items(container: Any, key: str) -> Iterator[Mapping[str, Any]]:
    values = container.get(key) if isinstance(container, Mapping) else None
    if isinstance(values, list):
        yield from (v for v in values if isinstance(v, Mapping))


def _from_json(body: bytes, max_spans: int) -> list[SpanView]:
    try:
        document = safejson.loads(body)
    except ValueError as exc:
        raise OtlpError("the body is not valid JSON") from exc
    if not isinstance(document, Mapping):
        raise OtlpError("the body must be an OTLP ExportTraceServiceRequest object")
    views: list[SpanView] = []
    for resource_spans in _items(document, "resourceSpans"):
        resource_obj = resource_spans.get("resource")
        resource = _json_attributes(resource_obj.get("attributes")) if isinstance(resource_obj, Mapping) else {}
        for scope_spans in _items(resource_spans, "scopeSpans"):
            for span in _items(scope_spans, "spans"):
                if len(views) >= max_spans:
                    raise OtlpError(f"more than {max_spans} spans in one request; export smaller batches", 413)
                name = span.get("name")
                views.append(
                    SpanView(
                        trace_id=_hex_id(span.get("traceId"), 16, "traceId"),
                        span_id=_hex_id(span.get("spanId"), 8, "spanId"),
                        name=name if isinstance(name, str) else "",
                        start_ns=_nanos(span.get("startTimeUnixNano")),
                        end_ns=_nanos(span.get("endTimeUnixNano")),
                        error=_is_error(span.get("status")),
                        attributes=_json_attributes(span.get("attributes")),
                        resource=resource,
                    )
                )
    return views


def response_body(content_type: str, rejected: int, message: str) -> tuple[bytes, str]:
    """OTLP's `ExportTraceServiceResponse` (`partial_success` when spans were rejected), encoded as the request."""
    if media_type(content_type) == PROTOBUF:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        response = ExportTraceServiceResponse()
        if rejected or message:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = message
        return response.SerializeToString(), PROTOBUF
    document: dict[str, Any] = {}
    if rejected or message:
        document["partialSuccess"] = {"rejectedSpans": rejected, "errorMessage": message}
    return safejson_dumps(document), JSON


def safejson_dumps(document: Any) -> bytes:
    import json

    return json.dumps(document, separators=(",", ":")).encode()

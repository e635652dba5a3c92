"""GenAI spans → usage events: the one mapping the OTLP receiver and the in-process SpanExporter share.

Pure Python (no OpenTelemetry import): each side turns its spans into `SpanView`s first.

The ledger trap. OpenTelemetry's `gen_ai.usage.input_tokens` is the *whole* prompt: it
INCLUDES the tokens read from and written to the prompt cache, which the conventions report again
in `gen_ai.usage.cache_read.input_tokens` and `gen_ai.usage.cache_creation.input_tokens`. Taking it
as uncached input counts every cached token twice (and prices it at the full input rate). So:

    input_tokens       = gen_ai.usage.input_tokens - cache_read - cache_creation
    cache_read_tokens  = gen_ai.usage.cache_read.input_tokens
    cache_write_tokens = gen_ai.usage.cache_creation.input_tokens
    reasoning_tokens   = gen_ai.usage.reasoning.output_tokens
    output_tokens      = gen_ai.usage.output_tokens - reasoning   (output includes reasoning)

A producer that breaks the convention the detectable way (cache larger than the input it reports,
reasoning larger than output) is taken to report the buckets apart; the event's metadata says so
(`otel.usage_convention = exclusive`). The deprecated names (`gen_ai.usage.prompt_tokens`,
`…completion_tokens`, `…cache_read_input_tokens`, `…cache_creation_input_tokens`,
`…reasoning_tokens`, `gen_ai.system`) and OpenInference's (`llm.token_count.*`, `llm.provider`,
`llm.model_name`) are read too; the current name wins when both are present.

Spans that are not model calls (no GenAI attribute, or an agent / tool / workflow span whose
usage, if any, repeats its children's) are *ignored* and counted; a model call without any usage
attribute becomes an event with `usage_source = missing`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from pydantic import ValidationError

from llmtally.events import (
    MAX_LATENCY_MS,
    MAX_TAGS,
    MAX_TOKENS_PER_BUCKET,
    MODEL_PATTERN,
    OPERATION_TYPE_PATTERN,
    REQUEST_ID_PATTERN,
    SECRET_KEY_NAME,
    SECRET_VALUE,
    TAG_KEY_PATTERN,
    TAG_VALUE_PATTERN,
    USER_ID_MAX_CHARS,
    USER_ID_PATTERN,
    UsageEvent,
)

AttributeValue = str | bool | int | float | Sequence[str | bool | int | float]

#: Providers as the conventions (current and older) and OpenInference name them → llmtally's.
PROVIDERS: Final[Mapping[str, str]] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "google": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "google_genai": "google",
    "aws.bedrock": "bedrock",
    "bedrock": "bedrock",
    "aws": "bedrock",
}
#: GenAI operations that are not one model call: their usage (when set) sums their children's.
NOT_MODEL_CALLS: Final = frozenset(
    {"invoke_agent", "create_agent", "execute_tool", "invoke_workflow", "workflow", "task", "agent", "tool"}
)
#: OpenInference span kinds that are one model call.
OPENINFERENCE_MODEL_KINDS: Final = frozenset({"LLM", "EMBEDDING"})

PROVIDER_ATTRIBUTES: Final = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
MODEL_ATTRIBUTES: Final = (
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "llm.response.model",
    "llm.request.model",
)
INPUT_ATTRIBUTES: Final = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
    "llm.token_count.prompt",
)
CACHE_READ_ATTRIBUTES: Final = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
CACHE_WRITE_ATTRIBUTES: Final = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
OUTPUT_ATTRIBUTES: Final = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
)
REASONING_ATTRIBUTES: Final = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
OPERATION_ATTRIBUTES: Final = ("gen_ai.operation.name", "llm.request.type")

#: `error.type` values (exception class names or HTTP codes) → the contract's error types.
_ERROR_TYPES: Final = (
    (re.compile(r"auth|permission|401|403", re.I), "authentication"),
    (re.compile(r"rate.?limit|429|quota|throttl", re.I), "rate_limit"),
    (re.compile(r"timeout|timed.?out|408|504", re.I), "timeout"),
    (re.compile(r"unavailable|overload|connection|5\d\d|internal", re.I), "unavailable"),
    (re.compile(r"content.?filter|safety", re.I), "content_filtered"),
    (re.compile(r"invalid|badrequest|bad_request|400|404|422|notfound", re.I), "invalid_request"),
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_OPERATION: Final = re.compile(OPERATION_TYPE_PATTERN)
_MODEL: Final = re.compile(MODEL_PATTERN)
_USER_ID: Final = re.compile(USER_ID_PATTERN)
_REQUEST_ID: Final = re.compile(REQUEST_ID_PATTERN)
_TAG_KEY: Final = re.compile(TAG_KEY_PATTERN)
_TAG_VALUE: Final = re.compile(TAG_VALUE_PATTERN)


@dataclass(frozen=True, slots=True)
class SpanView:
    """The parts of a span the mapping reads, whatever it came from (OTLP protobuf/JSON, the SDK)."""

    trace_id: bytes
    span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    error: bool
    attributes: Mapping[str, AttributeValue]
    resource: Mapping[str, AttributeValue] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        """Stable across re-exports of the same span: a re-sent span is a duplicate, not a second call."""
        return f"otel:{self.trace_id.hex()}:{self.span_id.hex()}"


@dataclass(frozen=True, slots=True)
class SpanMapping:
    """Where the tenant, the tags and the operation come from (see docs/ingest.md)."""

    #: Span, then resource attributes naming the tenant; the first valid one wins.
    tenant_attributes: tuple[str, ...] = ("llmtally.user_id", "enduser.id")
    #: Every `<tag_prefix><key>` attribute is tag `<key>` (resource first, span overrides).
    tag_prefix: str = "llmtally.tags."
    #: Other attributes → tag keys, e.g. {"deployment.environment.name": "environment"}.
    tag_attributes: Mapping[str, str] = field(default_factory=dict)
    operation_attribute: str = "llmtally.operation_type"
    #: The tenant of a span that names none (the ingest key's tenant, the exporter's configured one).
    default_user_id: str | None = None
    #: `metadata.source` of the events (which path they took).
    source: str = "otlp"


@dataclass(frozen=True, slots=True)
class SpanResult:
    """What one span became: an event, an ignored span, or a rejected one with its reason."""

    kind: Literal["event", "ignored", "rejected"]
    event: UsageEvent | None = None
    event_id: str | None = None
    reason: str | None = None
    #: Tag attributes dropped because their value is not a valid tag (the event is kept).
    dropped_tags: tuple[str, ...] = ()


def _first(views: Sequence[Mapping[str, AttributeValue]], names: Sequence[str]) -> AttributeValue | None:
    for attributes in views:
        for name in names:
            value = attributes.get(name)
            if value is not None and value != "":
                return value
    return None


class _BadUsage(ValueError):
    pass


def _count(attributes: Mapping[str, AttributeValue], names: Sequence[str]) -> int | None:
    for name in names:
        value = attributes.get(name)
        if value is None:
            continue
        if isinstance(value, bool):
            raise _BadUsage(f"{name} is a boolean, not a token count")
        if isinstance(value, float):
            if not value.is_integer():
                raise _BadUsage(f"{name} is {value}, not a whole number of tokens")
            value = int(value)
        elif isinstance(value, str):
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise _BadUsage(f"{name} is not a token count")
            value = int(value)
        if not isinstance(value, int):
            raise _BadUsage(f"{name} is not a token count")
        if not 0 <= value <= MAX_TOKENS_PER_BUCKET:
            raise _BadUsage(f"{name} = {value} is outside 0..{MAX_TOKENS_PER_BUCKET}")
        return value
    return None


def is_genai(span: SpanView) -> bool:
    return any(key.startswith(("gen_ai.", "llm.")) or key == "openinference.span.kind" for key in span.attributes)


def _not_a_model_call(span: SpanView) -> str | None:
    kind = span.attributes.get("openinference.span.kind")
    if isinstance(kind, str) and kind.upper() not in OPENINFERENCE_MODEL_KINDS:
        return f"openinference span kind {kind[:40]} is not a model call"
    operation = _first([span.attributes], OPERATION_ATTRIBUTES)
    if isinstance(operation, str) and operation.lower() in NOT_MODEL_CALLS:
        return f"operation {operation[:40]} is not a model call"
    if _first([span.attributes], MODEL_ATTRIBUTES) is None and _first([span.attributes], PROVIDER_ATTRIBUTES) is None:
        return "no model or provider attribute"
    return None


def _operation_type(span: SpanView, mapping: SpanMapping) -> str:
    explicit = _first([span.attributes, span.resource], [mapping.operation_attribute])
    if isinstance(explicit, str) and _OPERATION.match(explicit):
        return explicit
    operation = _first([span.attributes], OPERATION_ATTRIBUTES)
    if isinstance(operation, str):
        normalised = re.sub(r"[^a-z0-9_]+", "_", operation.strip().lower()).strip("_")[:64]
        if _OPERATION.match(normalised):
            return normalised
    return "chat"


def _tenant(span: SpanView, mapping: SpanMapping) -> str | None:
    value = _first([span.attributes, span.resource], mapping.tenant_attributes)
    if value is None:
        return mapping.default_user_id
    return str(value)


def _tags(span: SpanView, mapping: SpanMapping) -> tuple[dict[str, str], tuple[str, ...]]:
    candidates: dict[str, AttributeValue] = {}
    for attributes in (span.resource, span.attributes):
        for name, value in attributes.items():
            if name.startswith(mapping.tag_prefix):
                candidates[name[len(mapping.tag_prefix) :]] = value
            elif name in mapping.tag_attributes:
                candidates[mapping.tag_attributes[name]] = value
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for key, raw in sorted(candidates.items()):
        value = str(raw) if isinstance(raw, int | float) else raw
        if (
            not _TAG_KEY.match(key)
            or SECRET_KEY_NAME.search(key)
            or not isinstance(value, str)
            or not _TAG_VALUE.match(value)
            or SECRET_VALUE.search(value)
            or len(kept) >= MAX_TAGS
        ):
            dropped.append(key[:40])
        else:
            kept[key] = value
    return kept, tuple(dropped)


def _error_type(span: SpanView) -> str:
    raw = span.attributes.get("error.type")
    return classify_error(str(raw)) if isinstance(raw, str | int) else "other"


def classify_error(text: str) -> str:
    """An error's class name, code or message → the contract's error type (`other` when unknown)."""
    for pattern, kind in _ERROR_TYPES:
        if pattern.search(text):
            return kind
    return "other"


def ledger_from_totals(
    total_input: int | None,
    total_output: int | None,
    cache_read: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
) -> tuple[dict[str, int], bool]:
    """The canonical ledger from *inclusive* totals (OTel, LiteLLM, OpenAI: input counts the cache, output
    counts reasoning), and whether the producer evidently reported the buckets apart instead.

    Shared by every integration so the double-count trap is handled once.
    """
    exclusive = False
    cached = cache_read + cache_write
    if total_input is None:
        uncached = 0
    elif total_input >= cached:
        uncached = total_input - cached
    else:
        uncached, exclusive = total_input, True
    if total_output is None:
        visible = 0
    elif total_output >= reasoning:
        visible = total_output - reasoning
    else:
        visible, exclusive = total_output, True
    ledger = {
        "input_tokens": uncached,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": visible,
        "reasoning_tokens": reasoning,
    }
    return ledger, exclusive


def _ledger(span: SpanView) -> tuple[dict[str, int], bool, bool]:
    """The token buckets, whether any usage was reported, and whether the producer reported them apart."""
    attributes = span.attributes
    total_input = _count(attributes, INPUT_ATTRIBUTES)
    total_output = _count(attributes, OUTPUT_ATTRIBUTES)
    ledger, exclusive = ledger_from_totals(
        total_input,
        total_output,
        cache_read=_count(attributes, CACHE_READ_ATTRIBUTES) or 0,
        cache_write=_count(attributes, CACHE_WRITE_ATTRIBUTES) or 0,
        reasoning=_count(attributes, REASONING_ATTRIBUTES) or 0,
    )
    return ledger, total_input is not None or total_output is not None, exclusive


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def span_to_event(span: SpanView, mapping: SpanMapping, *, now: datetime | None = None) -> SpanResult:
    """One span → an event (or why not). Never raises on any span content."""
    if not is_genai(span):
        return SpanResult("ignored", reason="not a GenAI span")
    not_call = _not_a_model_call(span)
    if not_call is not None:
        return SpanResult("ignored", reason=not_call)
    event_id = span.event_id
    provider_raw = _first([span.attributes, span.resource], PROVIDER_ATTRIBUTES)
    if provider_raw is None:
        return SpanResult("rejected", event_id=event_id, reason="no provider attribute (gen_ai.provider.name)")
    provider = PROVIDERS.get(str(provider_raw).strip().lower())
    if provider is None:
        return SpanResult("rejected", event_id=event_id, reason=f"provider {str(provider_raw)[:40]!r} is not metered")
    model = _first([span.attributes], MODEL_ATTRIBUTES)
    if not isinstance(model, str) or not _MODEL.match(model):
        return SpanResult("rejected", event_id=event_id, reason="no valid model attribute (gen_ai.request.model)")
    user_id = _tenant(span, mapping)
    if user_id is None:
        names = ", ".join(mapping.tenant_attributes)
        return SpanResult("rejected", event_id=event_id, reason=f"no tenant: set one of {names}")
    if len(user_id) > USER_ID_MAX_CHARS or not _USER_ID.match(user_id):
        return SpanResult("rejected", event_id=event_id, reason="the tenant attribute is not a valid user id")
    if span.end_ns <= 0:
        return SpanResult("rejected", event_id=event_id, reason="the span has no end time")
    try:
        ledger, reported, exclusive = _ledger(span)
    except _BadUsage as exc:
        return SpanResult("rejected", event_id=event_id, reason=str(exc))
    tags, dropped = _tags(span, mapping)
    error = span.error or span.attributes.get("error.type") is not None
    metadata: dict[str, str | int | bool | None] = {"source": mapping.source}
    service = span.resource.get("service.name")
    if isinstance(service, str) and service and len(service) <= 256 and not SECRET_VALUE.search(service):
        metadata["otel.service"] = service
    if exclusive:
        metadata["otel.usage_convention"] = "exclusive"
    response_id = span.attributes.get("gen_ai.response.id")
    latency = max(0, (span.end_ns - span.start_ns) // 1_000_000) if span.start_ns > 0 else 0
    fields = {
        "event_id": event_id,
        "user_id": user_id,
        "request_id": response_id if isinstance(response_id, str) and _REQUEST_ID.match(response_id) else None,
        "timestamp": _EPOCH + timedelta(microseconds=span.end_ns // 1000),
        "provider": provider,
        "model": model,
        "operation_type": _operation_type(span, mapping),
        "status": "error" if error else "ok",
        "error_type": _error_type(span) if error else None,
        "latency_ms": min(latency, MAX_LATENCY_MS),
        "metadata": metadata,
        "tags": tags,
        "usage_source": "reported" if reported else "missing",
        **ledger,
    }
    try:
        event = UsageEvent.model_validate(fields, context={"now": now} if now else None)
    except ValidationError as exc:
        return SpanResult("rejected", event_id=event_id, reason=_reason(exc))
    return SpanResult("event", event=event, event_id=event_id, dropped_tags=dropped)

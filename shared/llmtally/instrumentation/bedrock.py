"""Metering for boto3 `bedrock-runtime` clients: `converse`, `converse_stream`, `invoke_model`,
`invoke_model_with_response_stream`.

boto3 clients are instances of classes botocore generates per service, so the one place every
operation passes through — `botocore.client.BaseClient._make_api_call` — is wrapped; a call is
metered only for a `bedrock-runtime` client marked by `instrument(client)` (or under
`instrument_all()`), for these four operations. Every other client and operation (the
publisher's own EventBridge calls included) passes straight through.

Ledger — Converse: the provider adapter's mapping (`llmtally.providers.bedrock.ledger`;
`inputTokens` excludes cache reads and writes); a ConverseStream's usage arrives in its final
`metadata` event. InvokeModel with an Anthropic Messages body (`anthropic_version` in the request
body): the response body's `usage`, mapped like Anthropic's API (`llmtally.providers.anthropic`);
with a response stream, the `message_start` / `message_delta` events inside the chunks. For
other model families' bodies, InvokeModel falls back to Bedrock's token-count response headers
(`x-amzn-bedrock-input-token-count` / `-output-token-count`, no cache split) and the response
stream to the `amazon-bedrock-invocationMetrics` of its last chunk.

`invoke_model` returns a `StreamingBody`: it is read here (the whole body is already in the
response) and replaced by an equivalent `StreamingBody` over the same bytes, so the caller's
`response["body"].read()` is unchanged. Streams are the response's `stream` / `body` value,
replaced by the metering proxy of the same EventStream.
"""

from __future__ import annotations

import functools
import io
import json
from typing import Any, Final

from llmtally.events import Provider, TokenCounts, UsageSource
from llmtally.instrumentation._core import OTHER, Defaults, Outcome, Patches, Spec, _start, defaults_of
from llmtally.providers.anthropic import ledger_from_dict
from llmtally.providers.bedrock import ledger as converse_ledger

SERVICE: Final = "bedrock-runtime"
_PATCHES: Final = Patches()


@functools.cache
def _classifier() -> Any:
    from llmtally.providers.bedrock import BedrockProvider

    return BedrockProvider(client=object(), control_client=object())


def error_type(exc: BaseException, model: str | None) -> str:
    error = _classifier()._map_error(exc, model or "unknown")
    return str(error.error_type.value) if error is not None else OTHER


def _request_id(result: dict[str, Any]) -> str | None:
    value = (result.get("ResponseMetadata") or {}).get("RequestId")
    return value if isinstance(value, str) else None


def _headers(result: dict[str, Any]) -> dict[str, Any]:
    return (result.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}


def _metrics_ledger(metrics: dict[str, Any]) -> TokenCounts:
    return TokenCounts(
        input_tokens=int(metrics.get("inputTokenCount") or 0),
        cache_read_tokens=int(metrics.get("cacheReadInputTokenCount") or 0),
        cache_write_tokens=int(metrics.get("cacheWriteInputTokenCount") or 0),
        output_tokens=int(metrics.get("outputTokenCount") or 0),
    )


class _Spec:
    provider = Provider.BEDROCK

    def __init__(self, name: str) -> None:
        self.name = name

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        return kwargs, None

    def model(self, kwargs: dict[str, Any]) -> str | None:
        model = kwargs.get("modelId")
        return model if isinstance(model, str) else None

    def error_type(self, exc: BaseException, model: str | None) -> str:
        return error_type(exc, model)


class ConverseStreamUsage:
    __slots__ = ("request_id", "usage")

    def __init__(self, request_id: str | None) -> None:
        self.usage: dict[str, Any] | None = None
        self.request_id = request_id

    def observe(self, event: Any) -> bool:
        if isinstance(event, dict) and "metadata" in event:
            self.usage = event["metadata"].get("usage") or self.usage
        return True

    def outcome(self, *, exhausted: bool) -> Outcome:
        source = UsageSource.REPORTED if self.usage is not None else UsageSource.MISSING
        return Outcome(converse_ledger(self.usage), source, provider_request_id=self.request_id)


class ConverseSpec(_Spec):
    def __init__(self, name: str, *, stream: bool) -> None:
        super().__init__(name)
        self.stream = stream

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return self.stream

    def outcome(self, result: Any, state: Any) -> Outcome:
        usage = result.get("usage")
        source = UsageSource.REPORTED if usage else UsageSource.MISSING
        return Outcome(converse_ledger(usage), source, provider_request_id=_request_id(result))

    def accumulator(self, result: Any, state: Any) -> ConverseStreamUsage:
        return ConverseStreamUsage(_request_id(result))


class InvokeStreamUsage:
    """Anthropic Messages events inside InvokeModelWithResponseStream's `chunk.bytes`."""

    __slots__ = ("final", "metrics", "request_id", "usage")

    def __init__(self, request_id: str | None) -> None:
        self.usage: dict[str, Any] = {}
        self.metrics: dict[str, Any] | None = None
        self.final = False
        self.request_id = request_id

    def observe(self, event: Any) -> bool:
        chunk = event.get("chunk") if isinstance(event, dict) else None
        if not chunk or "bytes" not in chunk:
            return True
        body = json.loads(chunk["bytes"])
        kind = body.get("type")
        if kind == "message_start":
            self.usage = dict(body.get("message", {}).get("usage") or {})
        elif kind == "message_delta":
            self.usage.update(body.get("usage") or {})
            self.final = True
        metrics = body.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):
            self.metrics = metrics
        return True

    def outcome(self, *, exhausted: bool) -> Outcome:
        if self.usage:
            source = UsageSource.REPORTED if self.final else UsageSource.MISSING
            return Outcome(ledger_from_dict(self.usage), source, provider_request_id=self.request_id)
        if self.metrics is not None:  # another model family: Bedrock's own counts
            return Outcome(_metrics_ledger(self.metrics), provider_request_id=self.request_id)
        return Outcome(TokenCounts(), UsageSource.MISSING, provider_request_id=self.request_id)


class InvokeSpec(_Spec):
    def __init__(self, name: str, *, stream: bool) -> None:
        super().__init__(name)
        self.stream = stream

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return self.stream

    def outcome(self, result: Any, state: Any) -> Outcome:
        from botocore.response import StreamingBody

        data = result["body"].read()
        result["body"] = StreamingBody(io.BytesIO(data), len(data))  # the caller reads the same bytes
        request_id = _request_id(result)
        try:
            usage = json.loads(data).get("usage")
        except (ValueError, AttributeError):
            usage = None
        if isinstance(usage, dict) and "input_tokens" in usage:  # an Anthropic Messages body
            return Outcome(ledger_from_dict(usage), provider_request_id=request_id)
        headers = _headers(result)
        tokens_in = headers.get("x-amzn-bedrock-input-token-count")
        tokens_out = headers.get("x-amzn-bedrock-output-token-count")
        if tokens_in is None or tokens_out is None:
            return Outcome(TokenCounts(), UsageSource.MISSING, provider_request_id=request_id)
        return Outcome(
            TokenCounts(input_tokens=int(tokens_in), output_tokens=int(tokens_out)), provider_request_id=request_id
        )

    def accumulator(self, result: Any, state: Any) -> InvokeStreamUsage:
        return InvokeStreamUsage(_request_id(result))


_SPECS: Final[dict[str, Spec]] = {
    "Converse": ConverseSpec("bedrock.converse", stream=False),
    "ConverseStream": ConverseSpec("bedrock.converse_stream", stream=True),
    "InvokeModel": InvokeSpec("bedrock.invoke_model", stream=False),
    "InvokeModelWithResponseStream": InvokeSpec("bedrock.invoke_model_with_response_stream", stream=True),
}


def lookup(client: Any) -> Defaults | None:
    return defaults_of(client)


def _wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # _make_api_call(operation_name, api_params): botocore's own positional call.
    spec = _SPECS.get(args[0]) if args and len(args) == 2 and not kwargs else None
    if spec is None or instance.meta.service_model.service_name != SERVICE:
        return wrapped(*args, **kwargs)
    call = _start(spec, lookup, instance, args[1])
    if call is None:
        return wrapped(*args, **kwargs)
    call.admit()
    try:
        result = wrapped(args[0], args[1])
    except BaseException as exc:
        call.failed(exc)
        raise
    return call.returned(result, is_async=False)


def patch() -> None:
    """Wrap `BaseClient._make_api_call` (idempotent)."""
    if _PATCHES.active:
        return
    from botocore.client import BaseClient

    _PATCHES.wrap(BaseClient, "_make_api_call", _wrapper)


def unpatch() -> None:
    _PATCHES.remove()


def mark_target(client: Any) -> Any:
    return client


def supported(client: Any) -> bool:
    meta = getattr(client, "meta", None)
    return meta is not None and meta.service_model.service_name == SERVICE

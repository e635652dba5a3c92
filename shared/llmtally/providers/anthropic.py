"""Anthropic (Messages API) on the `anthropic` SDK.

Usage mapping (the SDK's `Usage`; Anthropic's `input_tokens` EXCLUDES cache tokens):
    input_tokens        = usage.input_tokens
    cache_read_tokens   = usage.cache_read_input_tokens
    cache_write_tokens  = usage.cache_creation_input_tokens
        5m / 1h split   = usage.cache_creation.ephemeral_5m_input_tokens / ephemeral_1h_input_tokens
    output_tokens       = usage.output_tokens - thinking
    reasoning_tokens    = usage.output_tokens_details.thinking_tokens (0 when not reported)
Anthropic's `output_tokens` includes thinking; the SDK now reports the thinking share apart
(`output_tokens_details`), so it moves to the reasoning bucket; the sum is unchanged.
`temperature` is not sent: the SDK's Messages API no longer takes sampling parameters.
Streaming: `message_start` carries input and cache counts (and the split), `message_delta`
cumulative counts; the last value of each field wins. The usage is complete only once a
`message_delta` with usage arrived: a stream that ends before it (cut off, or a proxy that drops
it) is a call whose usage is missing (`usage_source=missing`, the counts seen so far), never a
$0 success.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Final

from llmtally.events import Provider, TokenCounts, UsageSource
from llmtally.providers.base import ChatCall, KeyedProvider, RawResult, StreamPiece, StreamReader
from llmtally.providers.errors import (
    ErrorType,
    ProviderError,
    error_type_for_status,
    make_error,
    parse_retry_after,
)

if TYPE_CHECKING:
    import anthropic

#: Stop reasons that mean the answer was withheld for safety.
FILTERED_STOP_REASONS: Final = frozenset({"refusal"})


class AnthropicProvider(KeyedProvider["anthropic.Anthropic"]):
    provider = Provider.ANTHROPIC
    default_model = "claude-sonnet-4-6"
    sdk_module = "anthropic"

    def _build_client(self) -> anthropic.Anthropic:
        import anthropic

        return anthropic.Anthropic(
            api_key=self._api_key,
            base_url=self._base_url,
            http_client=self._http_client,
            max_retries=0,  # llmtally retries; the SDK's would multiply them
            timeout=self.timeout,
        )

    def _build_async_client(self) -> anthropic.AsyncAnthropic:
        import anthropic

        return anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self._base_url,
            http_client=self._async_http_client,
            max_retries=0,
            timeout=self.timeout,
        )

    # -- requests -----------------------------------------------------------------------------

    def _params(self, call: ChatCall) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": call.model,
            "max_tokens": call.max_tokens,
            "messages": [{"role": m["role"], "content": m["content"]} for m in call.messages],
        }
        cache_control = {"type": "ephemeral", "ttl": call.cache} if call.cache else None
        if call.system:
            block: dict[str, Any] = {"type": "text", "text": call.system}
            if cache_control:
                # The usual cache breakpoint: the long, stable system prompt.
                block["cache_control"] = cache_control
            params["system"] = [block]
        elif cache_control:
            # No system prompt: let the API place the breakpoint on the last cacheable block.
            params["cache_control"] = cache_control
        # The Messages API of this SDK generation has no sampling parameters (temperature, top_p):
        # a temperature preference is not sent to Anthropic (docs/providers.md).
        params.update(call.extra)
        return params

    def _complete(self, call: ChatCall) -> RawResult:
        return _result(self.client.messages.create(**self._params(call)))

    async def _acomplete(self, call: ChatCall) -> RawResult:
        return _result(await self.aclient.messages.create(**self._params(call)))

    def _open_stream(self, call: ChatCall) -> tuple[Iterable[Any], StreamReader]:
        stream = self.client.messages.create(**self._params(call), stream=True)
        return stream, _StreamReader(call.model, stream.response.headers.get("request-id"))

    async def _aopen_stream(self, call: ChatCall) -> tuple[AsyncIterator[Any], StreamReader]:
        stream = await self.aclient.messages.create(**self._params(call), stream=True)
        return stream, _StreamReader(call.model, stream.response.headers.get("request-id"))

    def _check_model(self, model: str) -> None:
        self.client.models.retrieve(model)

    # -- errors -------------------------------------------------------------------------------

    def _map_error(self, exc: Exception, model: str) -> ProviderError | None:
        import anthropic

        common: dict[str, Any] = {"provider": self.name, "model": model, "secrets": self._secrets()}
        if isinstance(exc, anthropic.APITimeoutError):
            return make_error(ErrorType.TIMEOUT, **common)
        if isinstance(exc, anthropic.APIConnectionError):
            return make_error(ErrorType.UNAVAILABLE, network=True, **common)
        if isinstance(exc, anthropic.APIStatusError):
            status, kind = exc.status_code, exc.type
            error_type = {
                "authentication_error": ErrorType.AUTHENTICATION,
                "permission_error": ErrorType.AUTHENTICATION,
                "billing_error": ErrorType.AUTHENTICATION,
                "rate_limit_error": ErrorType.RATE_LIMIT,
                "overloaded_error": ErrorType.UNAVAILABLE,
                "api_error": ErrorType.UNAVAILABLE,
                "timeout_error": ErrorType.TIMEOUT,
                "not_found_error": ErrorType.INVALID_REQUEST,
                "invalid_request_error": ErrorType.INVALID_REQUEST,
                "request_too_large": ErrorType.INVALID_REQUEST,
            }.get(kind or "", error_type_for_status(status))
            headers = exc.response.headers
            return make_error(
                error_type,
                status_code=status,
                code=exc.error_code or kind,
                detail=exc.api_message,
                request_id=exc.request_id,
                retry_after=parse_retry_after(headers.get("retry-after")),
                model_missing=status == 404 or kind == "not_found_error",
                **common,
            )
        if isinstance(exc, anthropic.APIResponseValidationError):
            return make_error(ErrorType.UNAVAILABLE, code="invalid_response", **common)
        return None


def _result(message: Any) -> RawResult:
    text = "".join(block.text for block in message.content if block.type == "text")
    return RawResult(
        text=text,
        model=message.model,
        tokens=ledger(message.usage),
        request_id=message._request_id,
        stop_reason=message.stop_reason,
        filtered=message.stop_reason in FILTERED_STOP_REASONS,
        raw=message.model_dump(mode="json", exclude_none=True),
    )


class _StreamReader:
    """A Messages stream's events: text deltas, the usage of `message_start` then `message_delta`."""

    def __init__(self, model: str, request_id: str | None) -> None:
        self.usage: dict[str, Any] = {}
        self.final_usage = False
        self.model = model
        self.stop_reason: str | None = None
        self.request_id = request_id

    def feed(self, event: Any) -> Iterable[StreamPiece]:
        if event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                return (event.delta.text,)
        elif event.type == "message_start":
            self.model = event.message.model
            self.usage = event.message.usage.model_dump(exclude_none=True)
            return (ledger_from_dict(self.usage),)
        elif event.type == "message_delta":
            self.usage.update(event.usage.model_dump(exclude_none=True))
            self.final_usage = True
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            return (ledger_from_dict(self.usage),)
        return ()

    def result(self) -> RawResult:
        return RawResult(
            text="",
            model=self.model,
            tokens=ledger_from_dict(self.usage),
            request_id=self.request_id,
            stop_reason=self.stop_reason,
            filtered=self.stop_reason in FILTERED_STOP_REASONS,
            raw={"usage": self.usage, "stop_reason": self.stop_reason},
            usage_source=UsageSource.REPORTED if self.final_usage else UsageSource.MISSING,
        )


def ledger(usage: anthropic.types.Usage) -> TokenCounts:
    return ledger_from_dict(usage.model_dump(exclude_none=True))


def ledger_from_dict(usage: dict[str, Any]) -> TokenCounts:
    """Map Anthropic's usage object (as a dict, also from a stream) onto the canonical ledger."""
    cache_write = usage.get("cache_creation_input_tokens") or 0
    split = usage.get("cache_creation") or None
    five = hour = None
    if split is not None and cache_write:
        five = int(split.get("ephemeral_5m_input_tokens") or 0)
        hour = int(split.get("ephemeral_1h_input_tokens") or 0)
        if five + hour != cache_write:  # an inconsistent split: keep the total, drop the split
            five = hour = None
    output = usage.get("output_tokens") or 0
    thinking = int((usage.get("output_tokens_details") or {}).get("thinking_tokens") or 0)
    thinking = min(thinking, output)
    return TokenCounts(
        input_tokens=usage.get("input_tokens") or 0,
        cache_read_tokens=usage.get("cache_read_input_tokens") or 0,
        cache_write_tokens=cache_write,
        cache_write_5m_tokens=five,
        cache_write_1h_tokens=hour,
        output_tokens=output - thinking,
        reasoning_tokens=thinking,
    )

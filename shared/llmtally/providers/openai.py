"""OpenAI (Chat Completions API) on the `openai` SDK.

Usage mapping (the SDK's `CompletionUsage`; OpenAI's counts INCLUDE their details):
    cache_read_tokens   = prompt_tokens_details.cached_tokens
    cache_write_tokens  = prompt_tokens_details.cache_write_tokens (reported by some models)
    input_tokens        = prompt_tokens - cached - cache_write
    reasoning_tokens    = completion_tokens_details.reasoning_tokens
    output_tokens       = completion_tokens - reasoning
Streams ask for usage (`stream_options={"include_usage": True}`): it arrives in a last chunk
with no choices. A stream that ends without that chunk (cut off, or a compatible server that
ignores the option) is a call whose usage is missing (`usage_source=missing`), never a $0 success.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from llmtally.events import Provider, TokenCounts, UsageSource
from llmtally.providers.base import ChatCall, KeyedProvider, RawResult, StreamPiece
from llmtally.providers.errors import (
    ErrorType,
    ProviderError,
    error_type_for_status,
    make_error,
    parse_retry_after,
)

if TYPE_CHECKING:
    import openai
    from openai.types import CompletionUsage

FILTERED_FINISH_REASONS: Final = frozenset({"content_filter"})
_FILTER_CODES: Final = frozenset({"content_filter", "content_policy_violation"})
#: 429s that no amount of waiting fixes: the account is out of credit.
_QUOTA_CODES: Final = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


class OpenAIProvider(KeyedProvider["openai.OpenAI"]):
    provider = Provider.OPENAI
    default_model = "gpt-4o"
    sdk_module = "openai"

    def __init__(self, api_key: str, *, organization: str | None = None, **options: Any) -> None:
        super().__init__(api_key, **options)
        self._organization = organization

    def _build_client(self) -> openai.OpenAI:
        import openai

        return openai.OpenAI(
            api_key=self._api_key,
            organization=self._organization,
            base_url=self._base_url,
            http_client=self._http_client,
            max_retries=0,  # llmtally retries; the SDK's would multiply them
            timeout=self.timeout,
        )

    def _params(self, call: ChatCall) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if call.system:
            messages.append({"role": "system", "content": call.system})
        messages.extend({"role": m["role"], "content": m["content"]} for m in call.messages)
        params: dict[str, Any] = {
            "model": call.model,
            "messages": messages,
            "max_completion_tokens": call.max_tokens,
        }
        if call.temperature is not None:
            params["temperature"] = call.temperature
        # OpenAI caches long prompts automatically; `cache` needs no request change here.
        params.update(call.extra)
        return params

    def _complete(self, call: ChatCall) -> RawResult:
        completion = self.client.chat.completions.create(**self._params(call))
        choice = completion.choices[0] if completion.choices else None
        text = (choice.message.content or "") if choice else ""
        finish = choice.finish_reason if choice else None
        refused = bool(choice and choice.message.refusal)
        return RawResult(
            text=text,
            model=completion.model,
            tokens=ledger(completion.usage),
            request_id=completion._request_id,
            stop_reason="refusal" if refused else finish,
            filtered=refused or finish in FILTERED_FINISH_REASONS,
            raw=completion.model_dump(mode="json", exclude_none=True),
        )

    def _stream(self, call: ChatCall) -> Iterator[StreamPiece]:
        params = self._params(call)
        params["stream_options"] = {**params.get("stream_options", {}), "include_usage": True}
        stream = self.client.chat.completions.create(**params, stream=True)
        request_id = stream.response.headers.get("x-request-id")
        usage: CompletionUsage | None = None
        model, finish, refused = call.model, None, False
        try:
            for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content
                    if choice.delta.refusal:
                        refused = True
                    finish = choice.finish_reason or finish
        finally:
            stream.close()
        yield RawResult(
            text="",
            model=model,
            tokens=ledger(usage),
            request_id=request_id,
            stop_reason="refusal" if refused else finish,
            filtered=refused or finish in FILTERED_FINISH_REASONS,
            raw={"usage": usage.model_dump(mode="json", exclude_none=True) if usage else None, "finish_reason": finish},
            usage_source=UsageSource.REPORTED if usage is not None else UsageSource.MISSING,
        )

    def _check_model(self, model: str) -> None:
        self.client.models.retrieve(model)

    def _map_error(self, exc: Exception, model: str) -> ProviderError | None:
        import openai

        common: dict[str, Any] = {"provider": self.name, "model": model, "secrets": self._secrets()}
        if isinstance(exc, openai.APITimeoutError):
            return make_error(ErrorType.TIMEOUT, **common)
        if isinstance(exc, openai.APIConnectionError):
            return make_error(ErrorType.UNAVAILABLE, network=True, **common)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            code = exc.code if isinstance(exc.code, str) else None
            error_type = error_type_for_status(status)
            if code in _FILTER_CODES:
                error_type = ErrorType.CONTENT_FILTERED
            elif code == "invalid_api_key":
                error_type = ErrorType.AUTHENTICATION
            headers = exc.response.headers
            retry_after = parse_retry_after(headers.get("retry-after"))
            detail = getattr(exc, "body", None)
            message = detail.get("message") if isinstance(detail, dict) else None
            return make_error(
                error_type,
                status_code=status,
                code=code or exc.type,
                detail=message if isinstance(message, str) else None,
                request_id=exc.request_id,
                retry_after=retry_after,
                retryable=False if code in _QUOTA_CODES else None,
                model_missing=status == 404 or code == "model_not_found",
                **common,
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return make_error(ErrorType.UNAVAILABLE, code="invalid_response", **common)
        return None


def ledger(usage: CompletionUsage | None) -> TokenCounts:
    """Map OpenAI's CompletionUsage onto the canonical ledger (its totals include the details)."""
    if usage is None:
        return TokenCounts()
    prompt_details, completion_details = usage.prompt_tokens_details, usage.completion_tokens_details
    cached = (prompt_details.cached_tokens or 0) if prompt_details else 0
    written = (prompt_details.cache_write_tokens or 0) if prompt_details else 0
    reasoning = (completion_details.reasoning_tokens or 0) if completion_details else 0
    cached = min(cached, usage.prompt_tokens)
    written = min(written, usage.prompt_tokens - cached)
    reasoning = min(reasoning, usage.completion_tokens)
    return TokenCounts(
        input_tokens=usage.prompt_tokens - cached - written,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=usage.completion_tokens - reasoning,
        reasoning_tokens=reasoning,
    )

"""OpenAI on the `openai` SDK: the Chat Completions API and the Responses API.

Which API: `OpenAIProvider(..., api="responses" | "chat")`; by default (`api=None`) the Responses
API for the models OpenAI serves only there (`responses_first`: the SDK's `ResponsesModel`
list of Responses-only models — o1-pro, o3-pro, the deep-research and computer-use models,
gpt-5-pro, the codex models — and the families they name), Chat Completions for the rest.
Responses requests are sent with `store: false` (the adapter is stateless: OpenAI keeps no
copy of the user's conversation unless the caller passes `store=True`). docs/providers.md says why
reasoning models such as gpt-5 and o3 stay on Chat Completions unless asked.

Chat Completions usage mapping (the SDK's `CompletionUsage`; OpenAI's counts INCLUDE their details):
    cache_read_tokens   = prompt_tokens_details.cached_tokens
    cache_write_tokens  = prompt_tokens_details.cache_write_tokens (reported by some models)
    input_tokens        = prompt_tokens - cached - cache_write
    reasoning_tokens    = completion_tokens_details.reasoning_tokens
    output_tokens       = completion_tokens - reasoning
Streams ask for usage (`stream_options={"include_usage": True}`): it arrives in a last chunk
with no choices. A stream that ends without that chunk (cut off, or a compatible server that
ignores the option) is a call whose usage is missing (`usage_source=missing`), never a $0 success.

Responses API usage mapping (`ResponseUsage`; same convention, totals INCLUDE their details):
    cache_read_tokens   = input_tokens_details.cached_tokens
    cache_write_tokens  = input_tokens_details.cache_write_tokens (when reported)
    input_tokens        = input_tokens - cached - cache_write
    reasoning_tokens    = output_tokens_details.reasoning_tokens
    output_tokens       = output_tokens - reasoning
`status: incomplete` (output cut off at `max_output_tokens`, or by the content filter) is a
normal answer with `stop_reason` the reason (`max_output_tokens`) and its usage billed; a
content-filter cut is `ContentFilteredError`. Streams take the usage from the final
`response.completed` or `response.incomplete` event; `response.failed` and `error` events raise
the mapped `ProviderError`; a stream cut before its final event is `usage_source=missing`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Final, Literal

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
    import openai
    from openai.types import CompletionUsage

FILTERED_FINISH_REASONS: Final = frozenset({"content_filter"})
_FILTER_CODES: Final = frozenset({"content_filter", "content_policy_violation"})
#: 429s that no amount of waiting fixes: the account is out of credit.
_QUOTA_CODES: Final = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
#: Error codes of a Responses `error` / `response.failed` event → taxonomy.
_EVENT_CODES: Final = {
    "rate_limit_exceeded": ErrorType.RATE_LIMIT,
    "insufficient_quota": ErrorType.RATE_LIMIT,
    "server_error": ErrorType.UNAVAILABLE,
    "vector_store_timeout": ErrorType.TIMEOUT,
    "invalid_prompt": ErrorType.INVALID_REQUEST,
    "invalid_request_error": ErrorType.INVALID_REQUEST,
    "content_filter": ErrorType.CONTENT_FILTERED,
}
#: Families of Responses-only models, so that dated and newer variants follow their family.
_RESPONSES_FAMILIES: Final = re.compile(r"codex|deep-research|computer-use|(^|-)pro(-\d{4}-\d\d-\d\d)?$")

Api = Literal["chat", "responses"]


@functools.cache
def _sdk_responses_only() -> frozenset[str]:
    """The Responses-only model names the installed SDK lists (`ResponsesModel` minus `ChatModel`)."""
    from typing import get_args

    try:
        from openai.types.shared.chat_model import ChatModel
        from openai.types.shared.responses_model import ResponsesModel
    except ImportError:  # an SDK without the Responses types: the families alone decide
        return frozenset()
    names = {name for arg in get_args(ResponsesModel) for name in get_args(arg) if isinstance(name, str)}
    return frozenset(names - set(get_args(ChatModel)))


def responses_first(model: str) -> bool:
    """Whether `model` goes to the Responses API by default (OpenAI serves it only there)."""
    name = model.rsplit("/", 1)[-1]
    return name in _sdk_responses_only() or bool(_RESPONSES_FAMILIES.search(name))


class OpenAIProvider(KeyedProvider["openai.OpenAI"]):
    provider = Provider.OPENAI
    default_model = "gpt-4o"
    sdk_module = "openai"

    def __init__(
        self, api_key: str, *, organization: str | None = None, api: Api | None = None, **options: Any
    ) -> None:
        if api not in (None, "chat", "responses"):
            raise ValueError("api must be 'chat', 'responses' or None (by model)")
        super().__init__(api_key, **options)
        self._organization = organization
        self.api = api

    def api_for(self, model: str) -> Api:
        """The API a call to `model` uses: the `api` option, else by model (`responses_first`)."""
        if self.api is not None:
            return self.api
        return "responses" if responses_first(model) else "chat"

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

    def _build_async_client(self) -> openai.AsyncOpenAI:
        import openai

        return openai.AsyncOpenAI(
            api_key=self._api_key,
            organization=self._organization,
            base_url=self._base_url,
            http_client=self._async_http_client,
            max_retries=0,
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

    def _responses_params(self, call: ChatCall) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": call.model,
            "input": [{"role": m["role"], "content": m["content"]} for m in call.messages],
            "max_output_tokens": call.max_tokens,
            "store": False,  # stateless unless the caller asks (extra store=True)
        }
        if call.system:
            params["instructions"] = call.system
        if call.temperature is not None:
            params["temperature"] = call.temperature
        params.update(call.extra)
        return params

    def _complete(self, call: ChatCall) -> RawResult:
        if self.api_for(call.model) == "responses":
            return self._responses_result(self.client.responses.create(**self._responses_params(call)))
        return _chat_result(self.client.chat.completions.create(**self._params(call)))

    async def _acomplete(self, call: ChatCall) -> RawResult:
        if self.api_for(call.model) == "responses":
            return self._responses_result(await self.aclient.responses.create(**self._responses_params(call)))
        return _chat_result(await self.aclient.chat.completions.create(**self._params(call)))

    def _stream_request(self, call: ChatCall) -> tuple[Any, dict[str, Any]]:
        if self.api_for(call.model) == "responses":
            return "responses", {**self._responses_params(call), "stream": True}
        params = self._params(call)
        params["stream_options"] = {**params.get("stream_options", {}), "include_usage": True}
        return "chat", {**params, "stream": True}

    def _reader(self, api: str, call: ChatCall, stream: Any) -> StreamReader:
        request_id = stream.response.headers.get("x-request-id")
        if api == "responses":
            return _ResponsesReader(self, call.model, request_id)
        return _ChatReader(call.model, request_id)

    def _open_stream(self, call: ChatCall) -> tuple[Iterable[Any], StreamReader]:
        api, params = self._stream_request(call)
        resource = self.client.responses if api == "responses" else self.client.chat.completions
        stream = resource.create(**params)
        return stream, self._reader(api, call, stream)

    async def _aopen_stream(self, call: ChatCall) -> tuple[AsyncIterator[Any], StreamReader]:
        api, params = self._stream_request(call)
        resource = self.aclient.responses if api == "responses" else self.aclient.chat.completions
        stream = await resource.create(**params)
        return stream, self._reader(api, call, stream)

    def _responses_result(self, response: Any) -> RawResult:
        if response.status == "failed":
            raise self._event_error(response.error, response.model, response.usage, response._request_id)
        refused = _refused(response.output)
        reason = response.incomplete_details.reason if response.incomplete_details else None
        stop = "refusal" if refused else (reason if response.status == "incomplete" else response.status)
        return RawResult(
            text=response.output_text,
            model=response.model,
            tokens=responses_ledger(response.usage),
            request_id=response._request_id,
            stop_reason=stop,
            filtered=refused or reason == "content_filter",
            raw=response.model_dump(mode="json", exclude_none=True),
            # A background response (queued) carries no usage yet: missing, never a $0 success.
            usage_source=UsageSource.REPORTED if response.usage is not None else UsageSource.MISSING,
        )

    def _event_error(self, error: Any, model: str, usage: Any, request_id: str | None) -> ProviderError:
        """The taxonomy error of a failed response or a stream's `error` event."""
        code = getattr(error, "code", None)
        code = code if isinstance(code, str) else None
        message = getattr(error, "message", None)
        billed = None
        if usage is not None:
            from llmtally.responses import LLMUsage

            billed = LLMUsage.priced(
                provider=self.name,
                model=model,
                tokens=responses_ledger(usage),
                latency_ms=0,
                price_book=self.price_book,
            )
        return make_error(
            _EVENT_CODES.get(code or "", ErrorType.UNAVAILABLE),
            provider=self.name,
            model=model,
            code=code or "response_failed",
            detail=message if isinstance(message, str) else None,
            request_id=request_id,
            usage=billed,
            secrets=self._secrets(),
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
        if isinstance(exc, openai.APIError):  # an `error` event inside a stream (no HTTP status)
            code = exc.code if isinstance(exc.code, str) else None
            return make_error(_EVENT_CODES.get(code or "", ErrorType.UNAVAILABLE), code=code or exc.type, **common)
        return None


def _chat_result(completion: Any) -> RawResult:
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


def _refused(output: Any) -> bool:
    return any(
        getattr(part, "type", None) == "refusal"
        for item in output or ()
        if getattr(item, "type", None) == "message"
        for part in item.content or ()
    )


class _ChatReader:
    """A Chat Completions stream's chunks: text deltas, refusals, the finish, the usage-only last chunk."""

    def __init__(self, model: str, request_id: str | None) -> None:
        self.usage: CompletionUsage | None = None
        self.model = model
        self.request_id = request_id
        self.finish: str | None = None
        self.refused = False

    def feed(self, chunk: Any) -> Iterable[StreamPiece]:
        pieces: list[StreamPiece] = []
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.delta.refusal:
                self.refused = True
            self.finish = choice.finish_reason or self.finish
        return pieces

    def result(self) -> RawResult:
        usage, finish = self.usage, self.finish
        return RawResult(
            text="",
            model=self.model,
            tokens=ledger(usage),
            request_id=self.request_id,
            stop_reason="refusal" if self.refused else finish,
            filtered=self.refused or finish in FILTERED_FINISH_REASONS,
            raw={"usage": usage.model_dump(mode="json", exclude_none=True) if usage else None, "finish_reason": finish},
            usage_source=UsageSource.REPORTED if usage is not None else UsageSource.MISSING,
        )


#: Responses stream events that end the response and carry its usage.
_FINAL_EVENTS: Final = frozenset({"response.completed", "response.incomplete"})


class _ResponsesReader:
    """A Responses stream's events: text deltas, refusals, and the final response with its usage."""

    def __init__(self, provider: OpenAIProvider, model: str, request_id: str | None) -> None:
        self.provider = provider
        self.model = model
        self.request_id = request_id
        self.final: Any = None
        self.refused = False

    def feed(self, event: Any) -> Iterable[StreamPiece]:
        kind = getattr(event, "type", None)
        if kind == "response.output_text.delta":
            return (event.delta,) if event.delta else ()
        if kind == "response.refusal.delta":
            self.refused = True
        elif kind == "response.created":
            self.model = event.response.model or self.model
        elif kind in _FINAL_EVENTS:
            self.final = event.response
            self.model = event.response.model or self.model
            if event.response.usage is not None:
                return (responses_ledger(event.response.usage),)
        elif kind == "response.failed":
            response = event.response
            raise self.provider._event_error(response.error, self.model, response.usage, self.request_id)
        elif kind == "error":
            raise self.provider._event_error(event, self.model, None, self.request_id)
        return ()

    def result(self) -> RawResult:
        final = self.final
        usage = final.usage if final is not None else None
        reason = final.incomplete_details.reason if final is not None and final.incomplete_details else None
        refused = self.refused or (final is not None and _refused(final.output))
        status = final.status if final is not None else None
        return RawResult(
            text="",
            model=self.model,
            tokens=responses_ledger(usage),
            request_id=self.request_id,
            stop_reason="refusal" if refused else (reason if status == "incomplete" else status),
            filtered=refused or reason == "content_filter",
            raw={"usage": usage.model_dump(mode="json", exclude_none=True) if usage else None, "status": status},
            usage_source=UsageSource.REPORTED if usage is not None else UsageSource.MISSING,
        )


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


def responses_ledger(usage: Any) -> TokenCounts:
    """Map the Responses API's ResponseUsage onto the canonical ledger (its totals include the details)."""
    if usage is None:
        return TokenCounts()
    input_details, output_details = usage.input_tokens_details, usage.output_tokens_details
    cached = (input_details.cached_tokens or 0) if input_details else 0
    written = (getattr(input_details, "cache_write_tokens", 0) or 0) if input_details else 0
    reasoning = (output_details.reasoning_tokens or 0) if output_details else 0
    cached = min(cached, usage.input_tokens)
    written = min(written, usage.input_tokens - cached)
    reasoning = min(reasoning, usage.output_tokens)
    return TokenCounts(
        input_tokens=usage.input_tokens - cached - written,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=usage.output_tokens - reasoning,
        reasoning_tokens=reasoning,
    )

"""Google Gemini (Developer API) on `google-genai` — not the deprecated `google-generativeai`.

Usage mapping (`GenerateContentResponseUsageMetadata`):
    cache_read_tokens   = cached_content_token_count
    input_tokens        = prompt_token_count - cached + tool_use_prompt_token_count
                          (the prompt count INCLUDES cached content; tool results are billed as input)
    output_tokens       = candidates_token_count
    reasoning_tokens    = thoughts_token_count (reported apart from the candidates)
Gemini has no cache-write charge per request (explicit caches are billed for storage).
Streams carry usage on each chunk, final on the last; with automatic continuation the SDK
sends several requests ("hops"), each billed, so their finals are added up. The usage is complete
only if the chunk that ends the stream (its finish reason) or a later one carries usage
metadata: otherwise (no finish, or a finish without usage) the call's usage is missing
(`usage_source=missing`, the counts seen so far), never a $0 success.
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
)

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

FILTERED_FINISH_REASONS: Final = frozenset(
    {"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "RECITATION", "IMAGE_SAFETY", "MODEL_ARMOR"}
)
_AUTH_REASONS: Final = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
_USAGE_FIELDS: Final = (
    "prompt_token_count",
    "cached_content_token_count",
    "candidates_token_count",
    "thoughts_token_count",
    "tool_use_prompt_token_count",
)


class GoogleProvider(KeyedProvider["genai.Client"]):
    provider = Provider.GOOGLE
    default_model = "gemini-2.5-flash"
    sdk_module = "google.genai"

    def _build_client(self) -> genai.Client:
        from google import genai
        from google.genai import types

        return genai.Client(
            api_key=self._api_key,
            vertexai=False,
            http_options=types.HttpOptions(
                base_url=self._base_url,
                timeout=int(self.timeout * 1000),  # milliseconds
                retry_options=types.HttpRetryOptions(attempts=1),  # llmtally retries
                httpx_client=self._http_client,
                httpx_async_client=self._async_http_client,
            ),
        )

    def _build_async_client(self) -> Any:
        # One genai client holds both: `client.aio` is its async side (same key, options, transports).
        return self.client.aio

    def _request(self, call: ChatCall) -> tuple[list[types.Content], types.GenerateContentConfig]:
        from google.genai import types

        contents = [
            types.Content(role="model" if m["role"] == "assistant" else "user", parts=[types.Part(text=m["content"])])
            for m in call.messages
        ]
        config: dict[str, Any] = {"max_output_tokens": call.max_tokens}
        if call.system:
            config["system_instruction"] = call.system
        if call.temperature is not None:
            config["temperature"] = call.temperature
        # Gemini 2.5+ caches repeated prefixes implicitly; an explicit cache is `cached_content=` in extra.
        config.update(call.extra)
        return contents, types.GenerateContentConfig(**config)

    def _complete(self, call: ChatCall) -> RawResult:
        contents, config = self._request(call)
        return _result(self.client.models.generate_content(model=call.model, contents=contents, config=config), call)

    async def _acomplete(self, call: ChatCall) -> RawResult:
        contents, config = self._request(call)
        response = await self.aclient.models.generate_content(model=call.model, contents=contents, config=config)
        return _result(response, call)

    def _open_stream(self, call: ChatCall) -> tuple[Iterable[Any], StreamReader]:
        contents, config = self._request(call)
        chunks = self.client.models.generate_content_stream(model=call.model, contents=contents, config=config)
        return chunks, _StreamReader(call.model)

    async def _aopen_stream(self, call: ChatCall) -> tuple[AsyncIterator[Any], StreamReader]:
        contents, config = self._request(call)
        chunks = await self.aclient.models.generate_content_stream(model=call.model, contents=contents, config=config)
        return chunks, _StreamReader(call.model)

    def _check_model(self, model: str) -> None:
        self.client.models.get(model=model)

    def _map_error(self, exc: Exception, model: str) -> ProviderError | None:
        import httpx2
        from google.genai import errors

        common: dict[str, Any] = {"provider": self.name, "model": model, "secrets": self._secrets()}
        if isinstance(exc, httpx2.TimeoutException):
            return make_error(ErrorType.TIMEOUT, **common)
        if isinstance(exc, httpx2.TransportError):
            return make_error(ErrorType.UNAVAILABLE, network=True, **common)
        if isinstance(exc, errors.APIError):
            status = exc.code
            body = exc.details if isinstance(exc.details, dict) else {}
            error = body.get("error", body) if isinstance(body, dict) else {}
            reasons = {
                d.get("reason")
                for d in (error.get("details") or [])
                if isinstance(d, dict) and isinstance(d.get("reason"), str)
            }
            auth_reason = next(iter(reasons & _AUTH_REASONS), None)
            error_type = ErrorType.AUTHENTICATION if auth_reason else error_type_for_status(status)
            if exc.status == "DEADLINE_EXCEEDED":
                error_type = ErrorType.TIMEOUT
            message = error.get("message") if isinstance(error, dict) else None
            return make_error(
                error_type,
                status_code=status,
                code=auth_reason or exc.status,
                detail=message if isinstance(message, str) else None,
                model_missing=status == 404,
                **common,
            )
        return None


def _result(response: types.GenerateContentResponse, call: ChatCall) -> RawResult:
    text, finish = _text_and_finish(response)
    blocked = response.prompt_feedback is not None and response.prompt_feedback.block_reason is not None
    return RawResult(
        text=text,
        model=response.model_version or call.model,
        tokens=ledger(response.usage_metadata),
        request_id=response.response_id,
        stop_reason=finish,
        filtered=blocked or finish in FILTERED_FINISH_REASONS,
        raw=response.model_dump(mode="json", exclude_none=True),
    )


class _StreamReader:
    """A Gemini stream's chunks: text, usage per hop (added up across continuations), the finish."""

    def __init__(self, model: str) -> None:
        self.totals: dict[str, int] = dict.fromkeys(_USAGE_FIELDS, 0)
        self.hop: dict[str, int] = {}
        self.model = model
        self.finish: str | None = None
        self.request_id: str | None = None
        self.blocked = self.finished = self.final_usage = False

    def feed(self, chunk: Any) -> Iterable[StreamPiece]:
        pieces: list[StreamPiece] = []
        self.model = chunk.model_version or self.model
        self.request_id = chunk.response_id or self.request_id
        text, chunk_finish = _text_and_finish(chunk)
        if text:
            pieces.append(text)
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason is not None:
            self.blocked = True
        if bool(chunk_finish) and chunk_finish != "CONTINUATION":
            self.finished, self.final_usage = True, False
        if chunk.usage_metadata is not None:
            self.hop = {f: getattr(chunk.usage_metadata, f) or 0 for f in _USAGE_FIELDS}
            self.final_usage = self.final_usage or self.finished
            pieces.append(_ledger_from_counts(_add(self.totals, self.hop)))
        if chunk_finish:
            self.finish = chunk_finish
        if chunk_finish == "CONTINUATION":  # the next hop is a new, separately billed request
            self.totals, self.hop = _add(self.totals, self.hop), {}
        return pieces

    def result(self) -> RawResult:
        return RawResult(
            text="",
            model=self.model,
            tokens=_ledger_from_counts(_add(self.totals, self.hop)),
            request_id=self.request_id,
            stop_reason=self.finish,
            filtered=self.blocked or self.finish in FILTERED_FINISH_REASONS,
            usage_source=UsageSource.REPORTED if self.final_usage else UsageSource.MISSING,
        )


def _text_and_finish(response: types.GenerateContentResponse) -> tuple[str, str | None]:
    if not response.candidates:
        return "", None
    candidate = response.candidates[0]
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    finish = candidate.finish_reason.value if candidate.finish_reason is not None else None
    return text, finish


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {f: a.get(f, 0) + b.get(f, 0) for f in _USAGE_FIELDS}


def ledger(usage: types.GenerateContentResponseUsageMetadata | None) -> TokenCounts:
    """Map Gemini's usage metadata onto the canonical ledger."""
    if usage is None:
        return TokenCounts()
    return _ledger_from_counts({f: getattr(usage, f) or 0 for f in _USAGE_FIELDS})


def _ledger_from_counts(counts: dict[str, int]) -> TokenCounts:
    prompt = counts["prompt_token_count"]
    cached = min(counts["cached_content_token_count"], prompt)
    return TokenCounts(
        input_tokens=prompt - cached + counts["tool_use_prompt_token_count"],
        cache_read_tokens=cached,
        output_tokens=counts["candidates_token_count"],
        reasoning_tokens=counts["thoughts_token_count"],
    )

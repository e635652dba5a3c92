"""Metering for the `openai` SDK: `chat.completions.create` / `parse` and `responses.create` / `parse`.

Sync (`openai.OpenAI`) and async (`openai.AsyncOpenAI`), streaming or not; `client.beta.chat` is
the same Chat class, and `client.beta.responses.create` is metered like `responses.create`. The SDK's own
`chat.completions.stream(...)` and `responses.stream(...)` helpers call `create(stream=True)`, so
they are metered too.

Ledger — Chat Completions: the provider adapter's mapping (`llmtally.providers.openai.ledger`:
`prompt_tokens` INCLUDES cached and cache-written tokens, `completion_tokens` INCLUDES reasoning).
Responses API (`ResponseUsage`, same convention): `input_tokens` includes
`input_tokens_details.cached_tokens` and `.cache_write_tokens`, `output_tokens` includes
`output_tokens_details.reasoning_tokens`; see `responses_ledger`.

Asking for usage: a Chat Completions stream reports usage only when the request says
`stream_options={"include_usage": True}`. When the caller did not ask for it, instrumentation
adds it and then keeps the extra usage-only chunk (no choices) from the caller, so the caller
iterates exactly the chunks it would have seen without instrumentation. When the caller asked
for usage itself, that chunk reaches it as usual. A Responses stream always ends with
`response.completed` (or `.incomplete` / `.failed`), which carries the usage.

Not metered: Azure OpenAI clients (`AzureOpenAI`, `AsyncAzureOpenAI` — a deployment name is not a
model and Azure's prices are not OpenAI's list prices, so the cost could not be stated honestly),
`with_streaming_response` and raw streams (`with_raw_response.create(stream=True)`; a non-stream
`with_raw_response` call IS metered — LangChain's ChatOpenAI makes its calls that way), and the
other endpoints (embeddings, images, audio, batches). Those calls pass through untouched and
are counted in `stats().unmetered`.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from llmtally.events import Provider, TokenCounts, UsageSource
from llmtally.instrumentation._core import OTHER, Defaults, Outcome, Patches, defaults_of, raw_aware
from llmtally.instrumentation.stats import STATS
from llmtally.providers.openai import ledger as chat_ledger
from llmtally.providers.openai import responses_ledger

_PATCHES: Final = Patches()
#: Responses stream events that carry the final Response (with its usage).
_FINAL_EVENTS: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})


@functools.cache
def _classifier() -> Any:
    from llmtally.providers.openai import OpenAIProvider

    # Only its error mapping is used; the key is never sent anywhere.
    return OpenAIProvider("unused-instrumentation-classifier")


def error_type(exc: BaseException, model: str | None) -> str:
    error = _classifier()._map_error(exc, model or "unknown")
    return str(error.error_type.value) if error is not None else OTHER


def _metered_client(client: Any) -> bool:
    import openai

    return isinstance(client, openai.OpenAI | openai.AsyncOpenAI) and not isinstance(
        client, openai.AzureOpenAI | openai.AsyncAzureOpenAI
    )


def lookup(resource: Any) -> Defaults | None:
    client = getattr(resource, "_client", None)
    defaults = defaults_of(client)
    if defaults is None:
        return None
    if not _metered_client(client):
        STATS.add("unmetered")
        return None
    return defaults


def _request_id(stream: Any) -> str | None:
    response = getattr(stream, "response", None)
    return response.headers.get("x-request-id") if response is not None else None


class _Spec:
    provider = Provider.OPENAI

    def __init__(self, name: str) -> None:
        self.name = name

    def model(self, kwargs: dict[str, Any]) -> str | None:
        model = kwargs.get("model")
        return model if isinstance(model, str) else None

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return kwargs.get("stream") is True

    def error_type(self, exc: BaseException, model: str | None) -> str:
        return error_type(exc, model)


class ChatStreamUsage:
    __slots__ = ("hide_usage_chunk", "model", "request_id", "usage")

    def __init__(self, request_id: str | None, hide_usage_chunk: bool) -> None:
        self.usage: Any = None
        self.model: str | None = None
        self.request_id = request_id
        self.hide_usage_chunk = hide_usage_chunk

    def observe(self, chunk: Any) -> bool:
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = chunk.usage
            if self.hide_usage_chunk and not chunk.choices:
                return False  # the chunk only instrumentation asked for
        return True

    def outcome(self, *, exhausted: bool) -> Outcome:
        if self.usage is None:
            return Outcome(TokenCounts(), UsageSource.MISSING, self.model, provider_request_id=self.request_id)
        return Outcome(chat_ledger(self.usage), model=self.model, provider_request_id=self.request_id)


class ChatSpec(_Spec):
    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        if kwargs.get("stream") is not True:
            return kwargs, False
        options = kwargs.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return kwargs, False
        merged = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        return {**kwargs, "stream_options": merged}, True  # True: hide the usage chunk from the caller

    def outcome(self, result: Any, state: Any) -> Outcome:
        source = UsageSource.REPORTED if result.usage is not None else UsageSource.MISSING
        return Outcome(chat_ledger(result.usage), source, result.model, provider_request_id=result._request_id)

    def accumulator(self, result: Any, state: Any) -> ChatStreamUsage:
        return ChatStreamUsage(_request_id(result), hide_usage_chunk=bool(state))


class ResponsesStreamUsage:
    __slots__ = ("model", "request_id", "usage")

    def __init__(self, request_id: str | None) -> None:
        self.usage: Any = None
        self.model: str | None = None
        self.request_id = request_id

    def observe(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "response.created" or kind in _FINAL_EVENTS:
            response = event.response
            self.model = response.model or self.model
            if response.usage is not None:
                self.usage = response.usage
        return True

    def outcome(self, *, exhausted: bool) -> Outcome:
        if self.usage is None:
            return Outcome(TokenCounts(), UsageSource.MISSING, self.model, provider_request_id=self.request_id)
        return Outcome(responses_ledger(self.usage), model=self.model, provider_request_id=self.request_id)


class ResponsesSpec(_Spec):
    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        return kwargs, None

    def outcome(self, result: Any, state: Any) -> Outcome:
        # A background response (status queued) has no usage yet: counted as missing, never as $0.
        source = UsageSource.REPORTED if result.usage is not None else UsageSource.MISSING
        return Outcome(responses_ledger(result.usage), source, result.model, provider_request_id=result._request_id)

    def accumulator(self, result: Any, state: Any) -> ResponsesStreamUsage:
        return ResponsesStreamUsage(_request_id(result))


CHAT_CREATE: Final = ChatSpec("openai.chat.completions.create")
CHAT_PARSE: Final = ChatSpec("openai.chat.completions.parse")
RESPONSES_CREATE: Final = ResponsesSpec("openai.responses.create")
RESPONSES_PARSE: Final = ResponsesSpec("openai.responses.parse")
BETA_RESPONSES_CREATE: Final = ResponsesSpec("openai.beta.responses.create")


def _count_unmetered(resource: Any) -> None:
    if lookup(resource) is not None:
        STATS.add("unmetered")


def _wrapper(spec: _Spec, *, is_async: bool) -> Any:
    return raw_aware(spec, lookup, is_async=is_async, count_unmetered=_count_unmetered)  # type: ignore[arg-type]


def patch() -> None:
    """Wrap the SDK's chat completions and responses classes (idempotent)."""
    if _PATCHES.active:
        return
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.responses import AsyncResponses, Responses

    targets: list[tuple[type, _Spec, _Spec, bool]] = [
        (Completions, CHAT_CREATE, CHAT_PARSE, False),
        (AsyncCompletions, CHAT_CREATE, CHAT_PARSE, True),
        (Responses, RESPONSES_CREATE, RESPONSES_PARSE, False),
        (AsyncResponses, RESPONSES_CREATE, RESPONSES_PARSE, True),
    ]
    for owner, create, parse, is_async in targets:
        _PATCHES.wrap(owner, "create", _wrapper(create, is_async=is_async))
        _PATCHES.wrap(owner, "parse", _wrapper(parse, is_async=is_async))
    try:  # client.beta.responses (same usage shape), in the SDK versions that have it
        from openai.resources.beta.responses import AsyncResponses as BetaAsyncResponses
        from openai.resources.beta.responses import Responses as BetaResponses
    except ImportError:
        return
    _PATCHES.wrap(BetaResponses, "create", _wrapper(BETA_RESPONSES_CREATE, is_async=False))
    _PATCHES.wrap(BetaAsyncResponses, "create", _wrapper(BETA_RESPONSES_CREATE, is_async=True))


def unpatch() -> None:
    _PATCHES.remove()


def owns(client: Any) -> bool:
    return type(client).__module__.split(".")[0] == "openai"


def mark_target(client: Any) -> Any:
    return client


def supported(client: Any) -> bool:
    return _metered_client(client)

"""Metering for `google-genai`: `models.generate_content` / `generate_content_stream`, and `client.aio.models.…`.

The ledger comes from the provider adapter's mapping (`llmtally.providers.google`: the prompt
count INCLUDES cached content; thoughts are reported apart from the candidates; tool-use prompt
tokens are input). A stream carries usage on its chunks, final on the last one; with automatic
continuation the SDK sends several requests ("hops", each billed, separated by a
`CONTINUATION` finish), whose final counts are added — as the adapter does.

`instrument(client)` marks the client's API client, which `client.models` and `client.aio.models`
share, so one call meters both.

Not metered: Vertex AI clients (`vertexai=True`: Vertex's prices and model names are not the
Gemini Developer API's — counted in `stats().unmetered`), and the other methods (embeddings,
images, live sessions, chats are metered only through the `generate_content` they call).
"""

from __future__ import annotations

import functools
from typing import Any, Final

from llmtally.events import Provider, TokenCounts, UsageSource
from llmtally.instrumentation._core import OTHER, Defaults, Outcome, Patches, async_wrapper, defaults_of, sync_wrapper
from llmtally.instrumentation.stats import STATS
from llmtally.providers.google import _USAGE_FIELDS, _add, _ledger_from_counts
from llmtally.providers.google import ledger as gemini_ledger

_PATCHES: Final = Patches()


@functools.cache
def _classifier() -> Any:
    from llmtally.providers.google import GoogleProvider

    # Only its error mapping is used; the key is never sent anywhere.
    return GoogleProvider("unused-instrumentation-classifier")


def error_type(exc: BaseException, model: str | None) -> str:
    error = _classifier()._map_error(exc, model or "unknown")
    return str(error.error_type.value) if error is not None else OTHER


def lookup(resource: Any) -> Defaults | None:
    api_client = getattr(resource, "_api_client", None)
    defaults = defaults_of(api_client)
    if defaults is None:
        return None
    if getattr(api_client, "vertexai", False):
        STATS.add("unmetered")
        return None
    return defaults


def _model_name(model: str | None) -> str | None:
    if not model:
        return None
    return model.removeprefix("models/")


class StreamUsage:
    __slots__ = ("finish", "hop", "model", "request_id", "totals")

    def __init__(self) -> None:
        self.totals: dict[str, int] = dict.fromkeys(_USAGE_FIELDS, 0)
        self.hop: dict[str, int] = {}
        self.model: str | None = None
        self.request_id: str | None = None
        self.finish: str | None = None

    def observe(self, chunk: Any) -> bool:
        self.model = chunk.model_version or self.model
        self.request_id = chunk.response_id or self.request_id
        usage = chunk.usage_metadata
        if usage is not None:
            self.hop = {f: getattr(usage, f) or 0 for f in _USAGE_FIELDS}
        candidates = chunk.candidates or ()
        reason = candidates[0].finish_reason if candidates else None
        if reason is not None:
            self.finish = reason.value if hasattr(reason, "value") else str(reason)
            if self.finish == "CONTINUATION":  # the next hop is a new, separately billed request
                self.totals, self.hop = _add(self.totals, self.hop), {}
        return True

    def outcome(self, *, exhausted: bool) -> Outcome:
        counts = _add(self.totals, self.hop)
        # The last chunk's counts are the final ones only when the stream ran to its end.
        seen = any(counts.values())
        source = UsageSource.REPORTED if exhausted and seen else UsageSource.MISSING
        return Outcome(_ledger_from_counts(counts), source, self.model, provider_request_id=self.request_id)


class GenerateSpec:
    provider = Provider.GOOGLE

    def __init__(self, name: str, *, stream: bool) -> None:
        self.name = name
        self.stream = stream

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        return kwargs, None

    def model(self, kwargs: dict[str, Any]) -> str | None:
        model = kwargs.get("model")
        return _model_name(model) if isinstance(model, str) else None

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return self.stream

    def outcome(self, result: Any, state: Any) -> Outcome:
        usage = result.usage_metadata
        source = UsageSource.REPORTED if usage is not None else UsageSource.MISSING
        return Outcome(
            gemini_ledger(usage) if usage is not None else TokenCounts(),
            source,
            _model_name(result.model_version),
            provider_request_id=result.response_id,
        )

    def accumulator(self, result: Any, state: Any) -> StreamUsage:
        return StreamUsage()

    def error_type(self, exc: BaseException, model: str | None) -> str:
        return error_type(exc, model)


GENERATE: Final = GenerateSpec("google.models.generate_content", stream=False)
GENERATE_STREAM: Final = GenerateSpec("google.models.generate_content_stream", stream=True)


def patch() -> None:
    """Wrap `Models` and `AsyncModels` (idempotent)."""
    if _PATCHES.active:
        return
    from google.genai.models import AsyncModels, Models

    _PATCHES.wrap(Models, "generate_content", sync_wrapper(GENERATE, lookup))
    _PATCHES.wrap(Models, "generate_content_stream", sync_wrapper(GENERATE_STREAM, lookup))
    _PATCHES.wrap(AsyncModels, "generate_content", async_wrapper(GENERATE, lookup))
    _PATCHES.wrap(AsyncModels, "generate_content_stream", async_wrapper(GENERATE_STREAM, lookup))


def unpatch() -> None:
    _PATCHES.remove()


def mark_target(client: Any) -> Any:
    """`client.models` and `client.aio.models` share the client's API client: mark that."""
    return client._api_client


def supported(client: Any) -> bool:
    """A `genai.Client` or its `.aio` (`AsyncClient`), on the Gemini Developer API (not Vertex AI)."""
    from google import genai
    from google.genai.client import AsyncClient

    return isinstance(client, genai.Client | AsyncClient) and not client._api_client.vertexai

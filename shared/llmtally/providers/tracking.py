"""Automatic tracking: every call through a `TrackedProvider` becomes one usage event — failed ones too.

The event goes to a publisher's `publish(event) -> bool`, which only enqueues (llmtally's
`UsagePublisher` batches and sends in the background), so tracking adds no network time to the
call. Building or publishing an event never raises into the caller: a failure is logged
(without the prompt or any key) and counted in `tracking_failures`.

With a `response_cache` (the user's opt-in `enableCaching`), a deterministic `generate` (effective
temperature exactly 0) is first looked up in the cache: a hit returns the stored answer without a
provider call and is tracked as a zero-token, $0 event with `cache_hit` and `saved_cost_usd`; a
miss calls the provider, is tracked as usual, then stored. Streams are never cached. The cache
never breaks a call (see `llmtally.response_cache`).

A stream publishes exactly one event however it ends. Completed: its usage, `usage_source` as the
adapter saw it (`missing` when the provider's usage never arrived). Closed early by the caller:
`error_type=cancelled`, the tokens seen so far, `usage_source=missing` (the provider bills what
it generated, which nobody reported). Failed: the error's type, and `usage_source=missing` if
anything had arrived before the failure (an error after partial output), else `reported` (a
refused request bills nothing). A `missing` event never reports a cost: the ingest prices what
is known and counts the call as `usage_missing`.

Async (`agenerate`, `astream`) has the same semantics on the same code: the response cache is
read and written off the event loop (`ResponseCache.alookup` / `astore`), publishing only
enqueues. A task cancelled during a call (`asyncio.CancelledError`) publishes one event —
`error_type=cancelled`, `usage_source=missing` (the request may have been billed, nobody
reported it) — and the `CancelledError` propagates.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llmtally.events import (
    OPERATION_TYPE_PATTERN,
    REQUEST_ID_PATTERN,
    MetadataValue,
    Status,
    TokenCounts,
    UsageEvent,
    UsageSource,
    check_metadata,
    check_user_id,
)
from llmtally.pricing import CostSource
from llmtally.providers.base import (
    CacheTTL,
    LLMAsyncStream,
    LLMProvider,
    LLMStream,
    Message,
    ProviderResponse,
    StreamItem,
)
from llmtally.providers.errors import ProviderError

if TYPE_CHECKING:
    from llmtally.providers.connection import ConnectionTestResult
    from llmtally.response_cache import CachedAnswer, ResponseCache
    from llmtally.responses import LLMUsage

logger = logging.getLogger("llmtally.providers.tracking")


@runtime_checkable
class UsageSink(Protocol):
    """What tracking needs of a publisher (`llmtally.publisher.UsagePublisher` is one)."""

    def publish(self, event: UsageEvent) -> bool: ...


def _check(value: str, pattern: str, what: str) -> str:
    if not re.match(pattern, value):
        raise ValueError(f"invalid {what} {value[:70]!r}: must match {pattern}")
    return value


class TrackedProvider:
    """Wraps an `LLMProvider`; same `generate` / `stream` / `test_connection`, plus a usage event per call.

    `user_id` and `operation_type` are fixed per wrapper (override `operation_type` per call);
    `request_id` and `metadata` are per call. Connection tests are not tracked. `response_cache`
    turns on the response cache for `generate` (the lead wires it from `enableCaching`).
    """

    def __init__(
        self,
        provider: LLMProvider,
        publisher: UsageSink,
        *,
        user_id: str,
        operation_type: str = "conversation",
        metadata: Mapping[str, MetadataValue] | None = None,
        response_cache: ResponseCache | None = None,
    ) -> None:
        self.inner = provider
        self.response_cache = response_cache
        self.publisher = publisher
        self.user_id = check_user_id(user_id)
        self.operation_type = _check(operation_type, OPERATION_TYPE_PATTERN, "operation_type")
        self.metadata: dict[str, MetadataValue] = check_metadata(dict(metadata or {}))
        self.tracking_failures = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TrackedProvider({self.inner!r}, user_id={self.user_id!r})"

    # The wrapped provider's identity, so a TrackedProvider can stand where an LLMProvider does.
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def timeout(self) -> float:
        return self.inner.timeout

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool | CacheTTL | None = None,
        operation_type: str | None = None,
        request_id: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        **extra: Any,
    ) -> ProviderResponse:
        context = self._context(operation_type, request_id, metadata)
        model_name = model or self.inner.model
        request = _request(messages, system, model, max_tokens, temperature, cache, extra)
        cache_key = self._cache_key(prompt, messages, system, model, max_tokens, temperature, cache, extra)
        if cache_key is not None and self.response_cache is not None:
            started = time.perf_counter()
            answer = self.response_cache.lookup(self.user_id, cache_key)
            if answer is not None:
                return self._serve_hit(context, answer, int((time.perf_counter() - started) * 1000))
        try:
            response = self.inner.generate(prompt, **request)
        except ProviderError as error:
            self._track_error(context, model_name, error)
            raise
        self._track(context, response, model=response.model, provider_request_id=response.request_id)
        if cache_key is not None and self.response_cache is not None:
            self.response_cache.store(self.user_id, cache_key, response)
        return response

    async def agenerate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool | CacheTTL | None = None,
        operation_type: str | None = None,
        request_id: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        **extra: Any,
    ) -> ProviderResponse:
        """`generate` on the provider's async client (see the module doc for cancellation)."""
        context = self._context(operation_type, request_id, metadata)
        model_name = model or self.inner.model
        request = _request(messages, system, model, max_tokens, temperature, cache, extra)
        cache_key = self._cache_key(prompt, messages, system, model, max_tokens, temperature, cache, extra)
        started = time.perf_counter()
        if cache_key is not None and self.response_cache is not None:
            answer = await self.response_cache.alookup(self.user_id, cache_key)
            if answer is not None:
                return self._serve_hit(context, answer, int((time.perf_counter() - started) * 1000))
        try:
            response = await self.inner.agenerate(prompt, **request)
        except ProviderError as error:
            self._track_error(context, model_name, error)
            raise
        except asyncio.CancelledError:
            self._track_interrupted(context, model_name, started, None, received=True, cancelled=True)
            raise
        self._track(context, response, model=response.model, provider_request_id=response.request_id)
        if cache_key is not None and self.response_cache is not None:
            await self.response_cache.astore(self.user_id, cache_key, response)
        return response

    def _cache_key(
        self,
        prompt: str | None,
        messages: Sequence[Message] | None,
        system: str | None,
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
        cache: bool | CacheTTL | None,
        extra: dict[str, Any],
    ) -> str | None:
        """The response cache's key for this call, or None (no cache, or not cacheable)."""
        if self.response_cache is None:
            return None
        # The key is built from the normalized call (effective model, temperature and
        # max_tokens, system turns folded), so equivalent spellings of a request share it.
        call = self.inner._call(prompt, messages, system, model, max_tokens, temperature, cache, extra)
        return self.response_cache.key_for_call(self.user_id, self.inner.name, call)

    def _serve_hit(self, context: dict[str, Any], answer: CachedAnswer, latency_ms: int) -> ProviderResponse:
        response = answer.to_response(provider=self.inner.name, latency_ms=latency_ms)
        self._publish(
            context,
            model=answer.model,
            tokens=TokenCounts(),
            latency_ms=latency_ms,
            reported_cost_usd=Decimal(0),
            cache_hit=True,
            saved_cost_usd=answer.saved_cost_usd,
        )
        return response

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool | CacheTTL | None = None,
        operation_type: str | None = None,
        request_id: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        **extra: Any,
    ) -> LLMStream:
        """Tracked when the stream ends: completed, failed, or closed early (`error_type=cancelled`)."""
        context = self._context(operation_type, request_id, metadata)
        started = time.perf_counter()
        inner = self.inner.stream(prompt, **_request(messages, system, model, max_tokens, temperature, cache, extra))
        return LLMStream(self._tracked_items(inner, context, model or self.inner.model, started), inner._state)

    def astream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool | CacheTTL | None = None,
        operation_type: str | None = None,
        request_id: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        **extra: Any,
    ) -> LLMAsyncStream:
        """`stream` for `async for`: one event when it ends, is closed (`aclose`) or its task is cancelled."""
        context = self._context(operation_type, request_id, metadata)
        started = time.perf_counter()
        inner = self.inner.astream(prompt, **_request(messages, system, model, max_tokens, temperature, cache, extra))
        items = self._atracked_items(inner, context, model or self.inner.model, started)
        return LLMAsyncStream(items, inner._state)

    def test_connection(self, model: str | None = None, *, generate: bool = False) -> ConnectionTestResult:
        return self.inner.test_connection(model, generate=generate)

    # -- events -------------------------------------------------------------------------------

    def _context(
        self, operation_type: str | None, request_id: str | None, metadata: Mapping[str, MetadataValue] | None
    ) -> dict[str, Any]:
        # Checked before the call, so a caller's mistake never costs a provider request.
        op = _check(operation_type, OPERATION_TYPE_PATTERN, "operation_type") if operation_type else self.operation_type
        if request_id is not None:
            _check(request_id, REQUEST_ID_PATTERN, "request_id")
        merged = {**self.metadata, **(metadata or {})}
        return {"operation_type": op, "request_id": request_id, "metadata": check_metadata(merged)}

    def _tracked_items(
        self, inner: LLMStream, context: dict[str, Any], model: str, started: float
    ) -> Iterator[StreamItem]:
        # Exactly one event, from this `finally`, however the stream ends.
        received = False
        failure: BaseException | None = None
        try:
            for item in inner:
                received = True
                yield item
        except BaseException as exc:  # GeneratorExit (closed early) included: recorded, then re-raised
            failure = exc
            raise
        finally:
            if inner.response is None:
                inner.close()
            self._stream_ended(inner, context, model, started, failure, received)

    async def _atracked_items(
        self, inner: LLMAsyncStream, context: dict[str, Any], model: str, started: float
    ) -> AsyncIterator[StreamItem]:
        # Exactly one event, from this `finally`: completed, failed, closed (aclose) or cancelled.
        received = False
        failure: BaseException | None = None
        try:
            async for item in inner:
                received = True
                yield item
        except BaseException as exc:  # GeneratorExit and CancelledError included: recorded, then re-raised
            failure = exc
            raise
        finally:
            if inner.response is None:
                await inner.aclose()
            self._stream_ended(inner, context, model, started, failure, received)

    def _stream_ended(
        self,
        inner: LLMStream | LLMAsyncStream,
        context: dict[str, Any],
        model: str,
        started: float,
        failure: BaseException | None,
        received: bool,
    ) -> None:
        """The one event of a stream, however it ended (shared by sync and async streams)."""
        response = inner.response
        if response is not None:
            # Completed (also when the caller stopped right after the final usage item).
            self._track(context, response, model=response.model, provider_request_id=response.request_id)
            return
        received = received or inner.partial_tokens is not None
        if isinstance(failure, ProviderError):
            self._track_error(context, model, failure, partial=inner.partial_tokens, received=received)
            return
        # Closed early (GeneratorExit: always after some output, a generator only pauses at a
        # yield), cancelled (its request may have been billed: usage missing even before any
        # output), or an unexpected exception mid-stream.
        cancelled = failure is None or isinstance(failure, GeneratorExit | asyncio.CancelledError)
        received = received or isinstance(failure, asyncio.CancelledError)
        self._track_interrupted(context, model, started, inner.partial_tokens, received=received, cancelled=cancelled)

    def _track_interrupted(
        self,
        context: dict[str, Any],
        model: str,
        started: float,
        partial: TokenCounts | None,
        *,
        received: bool,
        cancelled: bool,
    ) -> None:
        self._publish(
            context,
            model=model,
            tokens=partial or TokenCounts(),
            latency_ms=int((time.perf_counter() - started) * 1000),
            status=Status.ERROR,
            error_type="cancelled" if cancelled else "other",
            usage_source=UsageSource.MISSING if received else UsageSource.REPORTED,
        )

    def _track(
        self, context: dict[str, Any], response: ProviderResponse, *, model: str, provider_request_id: str | None
    ) -> None:
        usage, source = response.usage, response.usage_source
        self._publish(
            context,
            model=model,
            tokens=usage.tokens(),
            latency_ms=usage.latency_ms,
            reported_cost_usd=_known_cost(usage) if source is UsageSource.REPORTED else None,
            provider_request_id=provider_request_id,
            usage_source=source,
        )

    def _track_error(
        self,
        context: dict[str, Any],
        model: str,
        error: ProviderError,
        *,
        partial: TokenCounts | None = None,
        received: bool = False,
    ) -> None:
        """An error event. `received`: output had arrived before it (a stream), so its usage is missing."""
        usage = error.usage
        if usage is not None:
            tokens, source = usage.tokens(), UsageSource.REPORTED
        else:
            tokens = partial or TokenCounts()
            source = UsageSource.MISSING if received else UsageSource.REPORTED
        self._publish(
            context,
            model=usage.model if usage else (error.model or model),
            tokens=tokens,
            latency_ms=usage.latency_ms if usage else 0,
            reported_cost_usd=_known_cost(usage) if usage else None,
            status=Status.ERROR,
            error_type=error.error_type.value,
            provider_request_id=error.request_id,
            usage_source=source,
        )

    def _publish(
        self,
        context: dict[str, Any],
        *,
        model: str,
        tokens: TokenCounts,
        latency_ms: int = 0,
        reported_cost_usd: Any = None,
        status: Status = Status.OK,
        error_type: str | None = None,
        provider_request_id: str | None = None,
        cache_hit: bool = False,
        saved_cost_usd: Decimal | None = None,
        usage_source: UsageSource = UsageSource.REPORTED,
    ) -> None:
        try:
            metadata = dict(context["metadata"])
            if provider_request_id and len(metadata) < 16:
                metadata.setdefault("provider_request_id", provider_request_id[:128])
            event = UsageEvent(
                user_id=self.user_id,
                request_id=context["request_id"],
                timestamp=datetime.now(UTC),
                provider=self.inner.provider,
                model=model,
                operation_type=context["operation_type"],
                status=status,
                error_type=error_type,
                latency_ms=min(latency_ms, 3_600_000),
                reported_cost_usd=reported_cost_usd,
                metadata=metadata,
                cache_hit=cache_hit,
                saved_cost_usd=saved_cost_usd,
                usage_source=usage_source,
                tags=_attribution_tags(),
                **tokens.ledger().model_dump(exclude={"total_tokens"}),
            )
            accepted = self.publisher.publish(event)
        except Exception as exc:  # tracking must never break the caller's call
            accepted = False
            logger.warning(
                "usage event not published",
                extra={"provider": self.inner.name, "error_class": type(exc).__name__, "user_id": self.user_id},
            )
        if not accepted:
            with self._lock:
                self.tracking_failures += 1


def _request(
    messages: Sequence[Message] | None,
    system: str | None,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    cache: bool | CacheTTL | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """A call's arguments as the wrapped provider takes them (one spelling for generate and stream, sync and async)."""
    return {
        "messages": messages,
        "system": system,
        "model": model,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "cache": cache,
        **extra,
    }


def _known_cost(usage: LLMUsage) -> Decimal | None:
    """The adapter's cost, unless no price covered it (0 by convention: never report a silent $0)."""
    return usage.cost_usd if usage.cost_source is not CostSource.UNPRICED else None


def track(
    provider: LLMProvider,
    publisher: UsageSink,
    *,
    user_id: str,
    operation_type: str = "conversation",
    metadata: Mapping[str, MetadataValue] | None = None,
    response_cache: ResponseCache | None = None,
) -> TrackedProvider:
    """Shorthand for `TrackedProvider(...)`."""
    return TrackedProvider(
        provider,
        publisher,
        user_id=user_id,
        operation_type=operation_type,
        metadata=metadata,
        response_cache=response_cache,
    )


def _attribution_tags() -> dict[str, str]:
    """The tags of the `llmtally.attribution(...)` in force (a call's event carries them, so tag
    breakdowns and tag budgets see calls made through llmtally's providers). Empty when the
    attribution module was never loaded: then none can be in force, and it is not imported here."""
    import sys

    context = sys.modules.get("llmtally.instrumentation.context")
    return {} if context is None else dict(context.current_attribution().tags)

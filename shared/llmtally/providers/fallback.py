"""Provider fallbacks (the seed's future enhancement 4): try a chain on retryable failure.

Routing policies order the chain before each call:
  ordered   as given;
  cheapest  by catalog price of the expected tokens (models without a price go last);
  fastest   by observed latency (an exponentially weighted average of successful calls);
            members not yet observed come first, in the given order, so each gets measured.
Each member keeps its own retries; when it still fails with an error in `fallback_on`
(by default the retryable ones: rate limit, timeout, unavailable) the next member is tried.
With a publisher, every attempt is tracked as its own usage event (`fallback_attempt` metadata).
`agenerate` / `astream` do the same on the members' async calls (same order, same decisions).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from llmtally.errors import UnknownModelError
from llmtally.events import MetadataValue, TokenCounts
from llmtally.pricing import PriceBook
from llmtally.providers.base import (
    CacheTTL,
    LLMAsyncStream,
    LLMProvider,
    LLMStream,
    Message,
    ProviderResponse,
    StreamItem,
    _StreamState,
)
from llmtally.providers.errors import RETRYABLE, ErrorType, ProviderError
from llmtally.providers.tracking import TrackedProvider, UsageSink

#: Weight of the newest observation in the latency average.
LATENCY_EWMA_ALPHA: Final = 0.3


class RoutingPolicy(StrEnum):
    ORDERED = "ordered"
    CHEAPEST = "cheapest"
    FASTEST = "fastest"


Member = LLMProvider | TrackedProvider


class FallbackProvider:
    """Generate with the first member that succeeds, in the order the policy gives."""

    def __init__(
        self,
        providers: Sequence[LLMProvider],
        *,
        policy: RoutingPolicy | str = RoutingPolicy.ORDERED,
        fallback_on: frozenset[ErrorType] = RETRYABLE,
        expected_input_tokens: int = 1000,
        expected_output_tokens: int = 500,
        price_book: PriceBook | None = None,
        publisher: UsageSink | None = None,
        user_id: str | None = None,
        operation_type: str = "conversation",
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        if publisher is not None and user_id is None:
            raise ValueError("tracking needs a user_id")
        self.policy = RoutingPolicy(policy)
        self.fallback_on = fallback_on
        self.providers = tuple(providers)
        self.members: tuple[Member, ...] = tuple(
            TrackedProvider(p, publisher, user_id=user_id, operation_type=operation_type, metadata=metadata)
            if publisher is not None and user_id is not None
            else p
            for p in providers
        )
        self.expected = TokenCounts(input_tokens=expected_input_tokens, output_tokens=expected_output_tokens)
        self._price_book = price_book
        self._latency: dict[int, float] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "fallback"

    @property
    def model(self) -> str:
        return self.members[0].model

    # -- routing ------------------------------------------------------------------------------

    def expected_cost_usd(self, index: int) -> Decimal | None:
        """The catalog cost of the expected tokens on member `index` (None: no price known)."""
        provider = self.providers[index]
        book = self._price_book or provider.price_book
        try:
            return book.unit_prices(provider.provider, provider.model).cost_usd(self.expected)
        except UnknownModelError:
            return None

    def observed_latency_ms(self, index: int) -> float | None:
        with self._lock:
            return self._latency.get(index)

    def order(self) -> list[int]:
        """Member indexes in the order the next call will try them."""
        indexes = list(range(len(self.members)))
        if self.policy is RoutingPolicy.CHEAPEST:
            costs = {i: self.expected_cost_usd(i) for i in indexes}
            return sorted(indexes, key=lambda i: (costs[i] is None, costs[i] or Decimal(0), i))
        if self.policy is RoutingPolicy.FASTEST:
            with self._lock:
                seen = dict(self._latency)
            return sorted(indexes, key=lambda i: (i in seen, seen.get(i, 0.0), i))
        return indexes

    def _observe(self, index: int, latency_ms: int) -> None:
        with self._lock:
            previous = self._latency.get(index)
            self._latency[index] = (
                float(latency_ms)
                if previous is None
                else LATENCY_EWMA_ALPHA * latency_ms + (1 - LATENCY_EWMA_ALPHA) * previous
            )

    # -- calls --------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool | CacheTTL | None = None,
        **options: Any,
    ) -> ProviderResponse:
        """Each member uses its own model. `options` (e.g. `request_id=` when tracked) go to every member."""
        order = self.order()
        request: dict[str, Any] = {
            "messages": messages,
            "system": system,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        for attempt, index in enumerate(order, start=1):
            member = self.members[index]
            try:
                response = member.generate(
                    prompt, cache=cache, **request, **self._attempt_options(member, attempt, options)
                )
            except ProviderError as error:
                self._give_up_unless_falling_back(error, attempt, len(order))
                continue
            self._observe(index, response.usage.latency_ms)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def agenerate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool | CacheTTL | None = None,
        **options: Any,
    ) -> ProviderResponse:
        """`generate` on the members' async calls."""
        order = self.order()
        request: dict[str, Any] = {
            "messages": messages,
            "system": system,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        for attempt, index in enumerate(order, start=1):
            member = self.members[index]
            try:
                response = await member.agenerate(
                    prompt, cache=cache, **request, **self._attempt_options(member, attempt, options)
                )
            except ProviderError as error:
                self._give_up_unless_falling_back(error, attempt, len(order))
                continue
            self._observe(index, response.usage.latency_ms)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _give_up_unless_falling_back(
        self, error: ProviderError, attempt: int, attempts: int, *, started: bool = False
    ) -> None:
        """Re-raise `error` unless the next member should be tried (must be called while handling it)."""
        if started or error.error_type not in self.fallback_on or attempt == attempts:
            raise error

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool | CacheTTL | None = None,
        **options: Any,
    ) -> LLMStream:
        """Falls back only before the first chunk; a failure mid-stream is raised."""
        state = _StreamState()
        kwargs: dict[str, Any] = {
            "messages": messages,
            "system": system,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "cache": cache,
        }
        return LLMStream(self._stream_items(prompt, kwargs, options, state), state)

    def astream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool | CacheTTL | None = None,
        **options: Any,
    ) -> LLMAsyncStream:
        """`stream` for `async for`: falls back only before the first chunk."""
        state = _StreamState()
        kwargs: dict[str, Any] = {
            "messages": messages,
            "system": system,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "cache": cache,
        }
        return LLMAsyncStream(self._astream_items(prompt, kwargs, options, state), state)

    def _stream_items(
        self, prompt: str | None, kwargs: dict[str, Any], options: dict[str, Any], state: _StreamState
    ) -> Iterator[StreamItem]:
        order = self.order()
        for attempt, index in enumerate(order, start=1):
            member = self.members[index]
            stream = member.stream(prompt, **kwargs, **self._attempt_options(member, attempt, options))
            started = False
            try:
                for item in stream:
                    started = True
                    yield item
            except ProviderError as error:
                self._give_up_unless_falling_back(error, attempt, len(order), started=started)
                continue
            finally:
                stream.close()
            self._stream_done(index, stream, state)
            return

    async def _astream_items(
        self, prompt: str | None, kwargs: dict[str, Any], options: dict[str, Any], state: _StreamState
    ) -> AsyncIterator[StreamItem]:
        order = self.order()
        for attempt, index in enumerate(order, start=1):
            member = self.members[index]
            stream = member.astream(prompt, **kwargs, **self._attempt_options(member, attempt, options))
            started = False
            try:
                async for item in stream:
                    started = True
                    yield item
            except ProviderError as error:
                self._give_up_unless_falling_back(error, attempt, len(order), started=started)
                continue
            finally:
                await stream.aclose()
            self._stream_done(index, stream, state)
            return

    def _stream_done(self, index: int, stream: LLMStream | LLMAsyncStream, state: _StreamState) -> None:
        state.response = stream.response
        if stream.response is not None:
            self._observe(index, stream.response.usage.latency_ms)

    def test_connection(self, model: str | None = None, *, generate: bool = False) -> list[Any]:
        """Every member's connection test, in chain order."""
        return [m.test_connection(generate=generate) for m in self.members]

    @staticmethod
    def _attempt_options(member: Member, attempt: int, options: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(member, TrackedProvider):
            return options
        metadata = {**(options.get("metadata") or {}), "fallback_attempt": attempt}
        return {**options, "metadata": metadata}

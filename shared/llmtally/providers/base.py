"""`LLMProvider`: one interface over four SDKs — generate, stream, test the connection — with usage priced.

An adapter implements four small hooks (`_complete`, `_stream`, `_check_model`, `_map_error`) and
its usage mapping; this class does the rest the same way for every provider: request shaping,
bounded retries with backoff for retryable errors (the SDKs' own retries are switched off so
these are the only ones), latency, pricing with the price book, and the content-filter check.
No SDK is imported here: each adapter imports its SDK the first time its client is needed.

Every call has an async twin (`agenerate`, `astream`) on the SDK's async client, sharing this
class's machinery: the request shaping, the retry decision and the stream's folding
(`_StreamFold`) are one code path; only the waiting differs (`await`, `asyncio.sleep`).
Adapters describe a stream as an event source plus a `StreamReader` that turns each SDK event
into pieces, so the sync and async streams of one adapter read events the same way.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Literal, Protocol, TypedDict, TypeVar

from llmtally.events import Provider, TokenCounts, UsageSource
from llmtally.pricing import PriceBook
from llmtally.providers.errors import (
    ContentFilteredError,
    ErrorType,
    ProviderError,
    describe,
)
from llmtally.responses import LLMResponse, LLMUsage

if TYPE_CHECKING:
    import httpx2

    from llmtally.providers.connection import ConnectionTestResult

logger = logging.getLogger("llmtally.providers")

CacheTTL = Literal["5m", "1h"]
Role = Literal["user", "assistant", "system"]


class Message(TypedDict):
    """One chat turn. `system` turns are folded into the system prompt."""

    role: Role
    content: str


DEFAULT_MAX_TOKENS: Final = 1024
DEFAULT_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter; a server's retry-after wins (capped)."""

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 10:
            raise ValueError("max_attempts must be between 1 and 10")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def delay(self, attempt: int, error: ProviderError) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        if error.retry_after is not None:
            return min(error.retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


NO_RETRY: Final = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A normalized request, as every adapter receives it."""

    model: str
    messages: tuple[Message, ...]
    system: str | None
    max_tokens: int
    temperature: float | None
    cache: CacheTTL | None
    extra: Mapping[str, Any]


@dataclass(slots=True)
class RawResult:
    """What an adapter hands back: the answer, the provider's model name, and the mapped ledger."""

    text: str
    model: str
    tokens: TokenCounts
    request_id: str | None = None
    stop_reason: str | None = None
    #: The provider refused or filtered the answer (tokens are still billed).
    filtered: bool = False
    raw: dict[str, Any] = field(default_factory=dict)
    #: MISSING when a stream ended without the provider's final usage: `tokens` then holds what
    #: was seen (often zeros) and is a lower bound.
    usage_source: UsageSource = UsageSource.REPORTED


@dataclass(frozen=True, slots=True)
class ProviderResponse(LLMResponse):
    """`LLMResponse` plus the provider's request id and stop reason.

    `cache_hit` is true when llmtally's response cache answered (no provider call): `usage` then
    holds zero tokens at $0 and the lookup's latency, and `saved_cost_usd` what the answer cost when
    it was first produced (None if that call was unpriced). See docs/caching.md.

    `usage_source` is MISSING when a stream ended without the provider's final usage: the text is
    whole as far as the provider sent it, but `usage` holds only what was seen (a lower bound,
    often zeros) — tracking records it as such, never as a $0 success (docs/providers.md).
    """

    request_id: str | None = None
    stop_reason: str | None = None
    cache_hit: bool = False
    saved_cost_usd: Decimal | None = None
    usage_source: UsageSource = UsageSource.REPORTED


StreamPiece = str | TokenCounts | RawResult
StreamItem = str | LLMUsage


class _StreamView:
    """What a finished (or abandoned) stream tells: shared by `LLMStream` and `LLMAsyncStream`."""

    _state: _StreamState

    @property
    def response(self) -> ProviderResponse | None:
        return self._state.response

    @property
    def usage(self) -> LLMUsage | None:
        return self._state.response.usage if self._state.response else None

    @property
    def usage_source(self) -> UsageSource | None:
        """Where the final usage came from, once the stream is done (None before)."""
        return self._state.response.usage_source if self._state.response else None

    @property
    def partial_tokens(self) -> TokenCounts | None:
        """The last usage the provider reported mid-stream (what an abandoned stream had consumed)."""
        return self._state.partial


class LLMStream(_StreamView):
    """Iterate for text chunks; the last item is the call's `LLMUsage`. `response` is set once done.

    Closing the stream early (break, `close()`) closes the provider's connection too. A stream that
    ends without the provider's usage does not raise: its text is delivered, and `usage_source`
    (like `response.usage_source`) says `missing`.
    """

    def __init__(self, items: Iterator[StreamItem], state: _StreamState) -> None:
        self._items = items
        self._state = state

    def __iter__(self) -> LLMStream:
        return self

    def __next__(self) -> StreamItem:
        return next(self._items)

    def __enter__(self) -> LLMStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def text_chunks(self) -> Iterator[str]:
        """Only the text (the usage is still recorded on `response`)."""
        for item in self:
            if isinstance(item, str):
                yield item


class LLMAsyncStream(_StreamView):
    """`LLMStream` for `async for`: text chunks, then the call's `LLMUsage`.

    Leave it early with `async with` or `await aclose()`: that closes the provider's connection
    and finishes the call (tracked once). A task cancelled while it waits for a chunk gets its
    `CancelledError`; the stream's tracking and budget settle as for a stream closed early.
    """

    def __init__(self, items: AsyncIterator[StreamItem], state: _StreamState) -> None:
        self._items = items
        self._state = state

    def __aiter__(self) -> LLMAsyncStream:
        return self

    async def __anext__(self) -> StreamItem:
        return await self._items.__anext__()

    async def __aenter__(self) -> LLMAsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            await aclose()

    async def text_chunks(self) -> AsyncIterator[str]:
        """Only the text (the usage is still recorded on `response`)."""
        async for item in self:
            if isinstance(item, str):
                yield item


class StreamReader(Protocol):
    """An adapter's reading of one stream: each SDK event in, pieces out; then the final result."""

    def feed(self, event: Any) -> Iterable[StreamPiece]: ...

    def result(self) -> RawResult: ...


@dataclass(slots=True)
class _StreamState:
    response: ProviderResponse | None = None
    partial: TokenCounts | None = None
    model: str = ""


class LLMProvider(ABC):
    """The seed's abstract provider. Build one with `LLMProviderFactory.create(...)`."""

    provider: ClassVar[Provider]
    default_model: ClassVar[str]
    #: The SDK's top-level module (imported lazily; see tests/unit/providers/test_lazy_imports.py).
    sdk_module: ClassVar[str]

    def __init__(
        self,
        *,
        model: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        price_book: PriceBook | None = None,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        self.model = model or self.default_model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._price_book = price_book
        self._sleep = sleep
        self._asleep = asleep

    # -- public API ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.provider.value

    @property
    def price_book(self) -> PriceBook:
        if self._price_book is None:
            from llmtally.pricing import default_price_book

            self._price_book = default_price_book()
        return self._price_book

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
        **extra: Any,
    ) -> ProviderResponse:
        """One completion. `cache=True|"5m"|"1h"` asks for prompt caching where the provider offers it.

        `extra` goes to the provider's API as is (e.g. `thinking=` for Anthropic). Raises a
        `ProviderError` subclass; a filtered answer raises `ContentFilteredError` carrying its usage.
        """
        call = self._call(prompt, messages, system, model, max_tokens, temperature, cache, extra)
        started = time.perf_counter()
        result = self._with_retries(call, lambda: self._complete(call))
        return self._finish(call, result, started)

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
        **extra: Any,
    ) -> LLMStream:
        """Text chunks as they arrive, then the final `LLMUsage` (retries only before the first chunk)."""
        call = self._call(prompt, messages, system, model, max_tokens, temperature, cache, extra)
        state = _StreamState(model=call.model)
        return LLMStream(self._stream_items(call, state), state)

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
        **extra: Any,
    ) -> ProviderResponse:
        """`generate` on the SDK's async client (same request, retries, usage and errors)."""
        call = self._call(prompt, messages, system, model, max_tokens, temperature, cache, extra)
        started = time.perf_counter()
        result = await self._awith_retries(call, lambda: self._acomplete(call))
        return self._finish(call, result, started)

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
        **extra: Any,
    ) -> LLMAsyncStream:
        """`stream` for `async for` (the request is sent on the first `__anext__`)."""
        call = self._call(prompt, messages, system, model, max_tokens, temperature, cache, extra)
        state = _StreamState(model=call.model)
        return LLMAsyncStream(self._astream_items(call, state), state)

    def test_connection(self, model: str | None = None, *, generate: bool = False) -> ConnectionTestResult:
        """Check the key and that `model` is available, for free where the provider allows it.

        With `generate=True` a 1-token generation is made as well (billed by the provider).
        """
        from llmtally.providers.connection import run_connection_test

        return run_connection_test(self, model or self.model, generate=generate)

    def check_model(self, model: str | None = None) -> None:
        """Raise unless the key works and `model` is available (a free request)."""
        model = model or self.model
        try:
            self._check_model(model)
        except ProviderError:
            raise
        except Exception as exc:  # every SDK error is mapped, the rest re-raised
            raise self._mapped(exc, model) from None

    # -- adapter hooks ------------------------------------------------------------------------

    @abstractmethod
    def _complete(self, call: ChatCall) -> RawResult: ...

    @abstractmethod
    async def _acomplete(self, call: ChatCall) -> RawResult: ...

    @abstractmethod
    def _open_stream(self, call: ChatCall) -> tuple[Iterable[Any], StreamReader]:
        """Send a stream request: the SDK's event iterable and the reader of its events."""

    @abstractmethod
    async def _aopen_stream(self, call: ChatCall) -> tuple[AsyncIterator[Any], StreamReader]:
        """`_open_stream` on the async client."""

    def _stream(self, call: ChatCall) -> Iterator[StreamPiece]:
        """Yield text, optionally partial `TokenCounts`, and finally one `RawResult` (text may be empty)."""
        events, reader = self._open_stream(call)
        try:
            for event in events:
                yield from reader.feed(event)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        yield reader.result()

    async def _astream(self, call: ChatCall) -> AsyncIterator[StreamPiece]:
        events, reader = await self._aopen_stream(call)
        try:
            async for event in events:
                for piece in reader.feed(event):
                    yield piece
        finally:
            close = getattr(events, "aclose", None) or getattr(events, "close", None)
            if close is not None:
                await close()
        yield reader.result()

    @abstractmethod
    def _check_model(self, model: str) -> None:
        """A free request proving the credentials work and the model exists."""

    @abstractmethod
    def _map_error(self, exc: Exception, model: str) -> ProviderError | None:
        """The taxonomy error for an SDK/transport exception, or None if it is not one."""

    def _secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in a message (the key)."""
        return ()

    # -- machinery ----------------------------------------------------------------------------

    def _call(
        self,
        prompt: str | None,
        messages: Sequence[Message] | None,
        system: str | None,
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
        cache: bool | CacheTTL | None,
        extra: Mapping[str, Any],
    ) -> ChatCall:
        turns: list[Message] = []
        system_parts = [system] if system else []
        for message in messages or ():
            role, content = message["role"], message["content"]
            if role == "system":
                system_parts.append(content)
            elif role in ("user", "assistant"):
                turns.append(Message(role=role, content=content))
            else:
                raise ValueError(f"unknown message role {role!r}: use user, assistant or system")
        if prompt is not None:
            turns.append(Message(role="user", content=prompt))
        if not turns:
            raise ValueError("generate() needs a prompt or messages")
        ttl: CacheTTL | None = "5m" if cache is True else (cache or None)
        if ttl not in (None, "5m", "1h"):
            raise ValueError("cache must be True, '5m' or '1h'")
        tokens = max_tokens if max_tokens is not None else self.max_tokens
        if tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        return ChatCall(
            model=model or self.model,
            messages=tuple(turns),
            system="\n\n".join(system_parts) or None,
            max_tokens=tokens,
            temperature=temperature if temperature is not None else self.temperature,
            cache=ttl,
            extra=dict(extra),
        )

    def _mapped(self, exc: Exception, model: str) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        mapped = self._map_error(exc, model)
        if mapped is None:
            raise exc
        return mapped

    def _retry_delay(self, call: ChatCall, exc: Exception, attempt: int) -> float:
        """Seconds to wait before retrying after `exc`; raises the mapped error when no retry is due."""
        error = self._mapped(exc, call.model)
        if not error.retryable or attempt >= self.retry.max_attempts:
            raise error from None
        delay = self.retry.delay(attempt, error)
        logger.info(
            "retrying %s call",
            self.name,
            extra={"provider": self.name, "error_type": error.error_type.value, "attempt": attempt, "delay": delay},
        )
        return delay

    def _with_retries(self, call: ChatCall, attempt_once: Callable[[], RawResult]) -> RawResult:
        attempt = 1
        while True:
            try:
                return attempt_once()
            except Exception as exc:  # mapped or re-raised
                delay = self._retry_delay(call, exc, attempt)
            self._sleep(delay)
            attempt += 1

    async def _awith_retries(self, call: ChatCall, attempt_once: Callable[[], Awaitable[RawResult]]) -> RawResult:
        attempt = 1
        while True:
            try:
                return await attempt_once()
            except Exception as exc:  # mapped or re-raised (CancelledError is not an Exception)
                delay = self._retry_delay(call, exc, attempt)
            await self._asleep(delay)
            attempt += 1

    def _usage(self, result: RawResult, latency_ms: int) -> LLMUsage:
        return LLMUsage.priced(
            provider=self.name,
            model=result.model,
            tokens=result.tokens,
            latency_ms=latency_ms,
            price_book=self.price_book,
        )

    def _finish(self, call: ChatCall, result: RawResult, started: float) -> ProviderResponse:
        latency_ms = int((time.perf_counter() - started) * 1000)
        if not result.model:
            result.model = call.model
        usage = self._usage(result, latency_ms)
        if result.filtered:
            raise ContentFilteredError(
                describe(ErrorType.CONTENT_FILTERED, self.name, code=result.stop_reason),
                provider=self.name,
                model=result.model,
                code=result.stop_reason,
                request_id=result.request_id,
                usage=usage,
                content=result.text,
            )
        return ProviderResponse(
            content=result.text,
            usage=usage,
            model=result.model,
            provider=self.name,
            raw_response=result.raw,
            request_id=result.request_id,
            stop_reason=result.stop_reason,
            usage_source=result.usage_source,
        )

    def _stream_items(self, call: ChatCall, state: _StreamState) -> Iterator[StreamItem]:
        fold = _StreamFold(self, call, state)
        pieces: Iterator[StreamPiece] | None = None
        first: StreamPiece | None = None

        def open_stream() -> RawResult:
            nonlocal pieces, first
            pieces = iter(self._stream(call))
            first = next(pieces, None)
            return fold.placeholder

        self._with_retries(call, open_stream)
        assert pieces is not None
        try:
            piece = first
            while piece is not None:
                text = fold.take(piece)
                if text:
                    yield text
                piece = next(pieces, None)
        except ProviderError:
            raise
        except Exception as exc:  # a failure mid-stream: map it, no retry
            raise self._mapped(exc, call.model) from None
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        yield fold.finish()

    async def _astream_items(self, call: ChatCall, state: _StreamState) -> AsyncIterator[StreamItem]:
        fold = _StreamFold(self, call, state)
        pieces: AsyncIterator[StreamPiece] | None = None
        first: StreamPiece | None = None

        async def open_stream() -> RawResult:
            nonlocal pieces, first
            pieces = self._astream(call)
            first = await anext(pieces, None)
            return fold.placeholder

        await self._awith_retries(call, open_stream)
        assert pieces is not None
        try:
            piece = first
            while piece is not None:
                text = fold.take(piece)
                if text:
                    yield text
                piece = await anext(pieces, None)
        except ProviderError:
            raise
        except Exception as exc:  # a failure mid-stream: map it, no retry
            raise self._mapped(exc, call.model) from None
        finally:
            aclose = getattr(pieces, "aclose", None)
            if aclose is not None:
                await aclose()
        yield fold.finish()


class _StreamFold:
    """The pieces of one stream folded into its text, partial usage and final response (sync and async)."""

    __slots__ = ("call", "final", "provider", "started", "state", "text")

    def __init__(self, provider: LLMProvider, call: ChatCall, state: _StreamState) -> None:
        self.provider = provider
        self.call = call
        self.state = state
        self.started = time.perf_counter()
        self.text: list[str] = []
        self.final: RawResult | None = None

    @property
    def placeholder(self) -> RawResult:
        return RawResult(text="", model=self.call.model, tokens=TokenCounts())

    def take(self, piece: StreamPiece) -> str | None:
        """The text to hand on, if the piece is text; usage pieces are kept."""
        if isinstance(piece, str):
            if piece:
                self.text.append(piece)
                return piece
        elif isinstance(piece, TokenCounts):
            self.state.partial = piece
        else:
            self.final = piece
            self.state.partial = piece.tokens
        return None

    def finish(self) -> LLMUsage:
        call, state = self.call, self.state
        final = self.final
        if final is None:
            # The adapter never produced a result: whatever usage was seen is all there is.
            final = RawResult(
                text="", model=call.model, tokens=state.partial or TokenCounts(), usage_source=UsageSource.MISSING
            )
        if final.usage_source is UsageSource.MISSING:
            # Not an error for the caller (the text arrived); tracking records the call as
            # usage-missing, and this line says it happened.
            logger.warning(
                "%s stream ended without usage",
                self.provider.name,
                extra={"provider": self.provider.name, "model": final.model or call.model},
            )
        final.text = "".join(self.text)
        response = self.provider._finish(call, final, self.started)
        state.response = response
        return response.usage


ClientT = TypeVar("ClientT")


class KeyedProvider(LLMProvider, Generic[ClientT]):
    """A provider reached over HTTP with the user's API key (Anthropic, OpenAI, Gemini).

    Holds the key (never in `repr`, always among `_secrets`) and builds the SDK client on first
    use, so the SDK is imported only then. `http_client` swaps the transport (tests, proxies).
    """

    def __init__(
        self,
        api_key: str,
        *,
        http_client: httpx2.Client | None = None,
        async_http_client: httpx2.AsyncClient | None = None,
        base_url: str | None = None,
        **options: Any,
    ) -> None:
        if not api_key:
            raise ValueError(f"{type(self).__name__} needs an api_key")
        super().__init__(**options)
        self._api_key = api_key
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._base_url = base_url
        self._sdk_client: ClientT | None = None
        self._async_sdk_client: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    @property
    def client(self) -> ClientT:
        """The SDK client, built on first use (the SDK is imported then, not at module import)."""
        if self._sdk_client is None:
            self._sdk_client = self._build_client()
        return self._sdk_client

    @property
    def aclient(self) -> Any:
        """The SDK's async client, built on first use (`async_http_client` swaps its transport)."""
        if self._async_sdk_client is None:
            self._async_sdk_client = self._build_async_client()
        return self._async_sdk_client

    @abstractmethod
    def _build_client(self) -> ClientT:
        """The SDK client, with the SDK's own retries off (llmtally retries) and `self.timeout`."""

    @abstractmethod
    def _build_async_client(self) -> Any:
        """The SDK's async client, configured as `_build_client`'s."""

    def _secrets(self) -> tuple[str, ...]:
        return (self._api_key,)

"""The SDK-independent half of instrumentation: who is billed, one call's meter, the wrappers, the streams.

Each SDK module (`anthropic`, `openai`, `google`, `bedrock`) describes its entry points with a
`Spec` — the request's model, the result's usage, a stream's accumulator, the error's taxonomy
class — and this module does the rest, the same way for every SDK:

* `sync_wrapper` / `async_wrapper` are `wrapt` wrappers installed on the SDK *classes*. They find
  the call's defaults (the client's `instrument(...)` arguments, or `instrument_all`'s), run the
  SDK method with the caller's arguments, and hand the result or the exception to one `Call`.
  They differ only in `await`.
* A stream is returned inside a transparent proxy (`wrapt.ObjectProxy`: same type for
  `isinstance`, every attribute passes through) that passes every item on, feeds it to the
  accumulator, and finishes the call exactly once: on exhaustion, `close()`, context exit, an
  error, or — for a stream abandoned without closing — when the proxy is garbage-collected.
* Nothing here raises into the caller. A failure to extract usage or build the event is logged
  (never with a prompt or a key) and counted in `stats().failures`; the SDK's result or exception
  reaches the caller unchanged (the same object).
* A client may carry a `Guard` (`Defaults.guard`; `llmtally.providers.client_for_user` installs
  the user's budget as one): `before` runs before the request is sent (`abefore` for async
  clients, off the event loop), `after` once the call's outcome is known, before its event is
  built. The one exception that reaches the caller is the refusal the guard declares
  (`Guard.refusals`, e.g. `BudgetExceededError`): the request is then never sent and no event is
  published. Any other failure of a guard is logged and counted, and the call goes ahead.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Protocol

import wrapt
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmtally.events import (
    MAX_LATENCY_MS,
    OPERATION_TYPE_PATTERN,
    Provider,
    Status,
    TokenCounts,
    UsageEvent,
    UsageSource,
    UserId,
)
from llmtally.instrumentation.context import EMPTY, Attribution, _current, merge_tags
from llmtally.instrumentation.stats import STATS

if TYPE_CHECKING:
    from llmtally.providers.tracking import UsageSink

logger = logging.getLogger("llmtally.instrumentation")

#: The attribute that marks an object (an SDK client, google-genai's API client, a botocore
#: client) as instrumented; its value is that client's `Defaults`.
MARK: Final = "_llmtally_instrument"
#: What a call is recorded as when nobody said what it was for (the adapters' default too).
DEFAULT_OPERATION_TYPE: Final = "conversation"
#: error_type of a call interrupted by the caller (asyncio cancellation, KeyboardInterrupt).
CANCELLED: Final = "cancelled"
#: error_type of an exception the SDK's taxonomy mapping does not know.
OTHER: Final = "other"


class InstrumentSettings(BaseSettings):
    """Process-wide fallbacks (`LLMTALLY_DEFAULT_USER_ID`, `LLMTALLY_DEFAULT_OPERATION_TYPE`)."""

    model_config = SettingsConfigDict(env_prefix="LLMTALLY_", frozen=True, extra="ignore")

    #: The tenant of a call made with no tenant anywhere else; unset: such calls are not published.
    default_user_id: UserId | None = None
    default_operation_type: str = Field(default=DEFAULT_OPERATION_TYPE, pattern=OPERATION_TYPE_PATTERN)


@cache
def instrument_settings() -> InstrumentSettings:
    try:
        return InstrumentSettings()
    except Exception:  # a malformed environment must not break the caller's LLM calls
        logger.warning("llmtally instrument: invalid LLMTALLY_DEFAULT_USER_ID / _OPERATION_TYPE; ignored")
        STATS.add("invalid_attribution")
        return InstrumentSettings.model_construct(default_user_id=None, default_operation_type=DEFAULT_OPERATION_TYPE)


@dataclass(frozen=True, slots=True)
class Amendment:
    """What a guard adds to a call's event (e.g. the budget period its reservation is held in)."""

    metadata: Mapping[str, str | int | bool | None] = field(default_factory=dict)
    reported_cost_usd: Decimal | None = None


class Guard(Protocol):
    """A per-client check around each metered call (see the module doc)."""

    #: The exceptions `before` / `abefore` raise on purpose to refuse a call; they reach the caller.
    refusals: tuple[type[BaseException], ...]

    def before(self, provider: Provider, model: str | None, kwargs: Mapping[str, Any]) -> Any:
        """Before the request: a ticket for `after` (or None), or one of `refusals`."""
        ...

    async def abefore(self, provider: Provider, model: str | None, kwargs: Mapping[str, Any]) -> Any:
        """`before` for an async client (must not block the event loop)."""
        ...

    def after(self, ticket: Any, outcome: Outcome, model: str | None) -> Amendment | None:
        """Once the outcome is known (exactly once per admitted call; must not block an event loop)."""
        ...


@dataclass(frozen=True, slots=True)
class Defaults:
    """What `instrument(client, ...)` / `instrument_all(...)` was given: used where attribution is silent."""

    publisher: UsageSink | None = None
    attribution: Attribution = EMPTY
    guard: Guard | None = None


class _Global:
    """instrument_all()'s state: None while off."""

    defaults: Defaults | None = None


GLOBAL: Final = _Global()


def defaults_of(owner: object) -> Defaults | None:
    """The defaults a call made through `owner` is metered with, or None when it is not metered."""
    found = getattr(owner, MARK, None)
    if type(found) is Defaults:
        return found
    return GLOBAL.defaults


# -- one call's outcome and its event ----------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What a finished call produced, as far as the usage event is concerned."""

    tokens: TokenCounts
    usage_source: UsageSource = UsageSource.REPORTED
    model: str | None = None
    status: Status = Status.OK
    error_type: str | None = None
    provider_request_id: str | None = None


class Accumulator(Protocol):
    """Reads a stream's items as they pass. `observe` returns False to keep an item from the caller
    (only ever an item instrumentation itself asked for, e.g. OpenAI's usage-only chunk)."""

    def observe(self, item: Any) -> bool: ...

    def outcome(self, *, exhausted: bool) -> Outcome: ...


class Spec(Protocol):
    """One SDK entry point: how to read its request, result, stream and errors."""

    provider: Provider
    #: e.g. "openai.responses.create": names the entry point in logs.
    name: str

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """The arguments to send (usually the caller's, untouched) and any state for reading the result."""
        ...

    def model(self, kwargs: dict[str, Any]) -> str | None: ...

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool: ...

    def outcome(self, result: Any, state: Any) -> Outcome: ...

    def accumulator(self, result: Any, state: Any) -> Accumulator: ...

    def error_type(self, exc: BaseException, model: str | None) -> str: ...


def _resolve(defaults: Defaults, captured: Attribution) -> tuple[str | None, str, Mapping[str, str]]:
    settings = instrument_settings()
    own = defaults.attribution
    user_id = captured.user_id or own.user_id or settings.default_user_id
    operation_type = captured.operation_type or own.operation_type or settings.default_operation_type
    return user_id, operation_type, merge_tags(own.tags, captured.tags)


class _NoTenantWarning:
    said = False


def _publisher(defaults: Defaults) -> UsageSink:
    if defaults.publisher is not None:
        return defaults.publisher
    from llmtally.publisher import default_publisher

    return default_publisher()


class Meter:
    """One metered call: captures the attribution when the call starts, publishes exactly once."""

    __slots__ = ("_done", "attribution", "defaults", "model", "spec", "started", "ticket")

    def __init__(self, spec: Spec, defaults: Defaults, model: str | None) -> None:
        self.spec = spec
        self.defaults = defaults
        self.model = model
        self.attribution = _current.get()
        self.started = time.perf_counter()
        self.ticket: Any = None
        self._done = False

    def finish(self, outcome: Outcome) -> None:
        if self._done:
            return
        self._done = True
        amendment = None
        guard = self.defaults.guard
        if guard is not None:
            try:
                amendment = guard.after(self.ticket, outcome, outcome.model or self.model)
            except Exception:
                STATS.add("failures")
                logger.exception("llmtally instrument: the guard failed after a %s call", self.spec.name)
        try:
            self._publish(outcome, amendment)
        except Exception:
            STATS.add("failures")
            logger.exception("llmtally instrument: could not publish the usage of a %s call", self.spec.name)

    def _publish(self, outcome: Outcome, amendment: Amendment | None = None) -> None:
        user_id, operation_type, tags = _resolve(self.defaults, self.attribution)
        if user_id is None:
            STATS.add("no_tenant")
            if not _NoTenantWarning.said:
                _NoTenantWarning.said = True
                logger.warning(
                    "llmtally instrument: a %s call had no tenant (no attribution(user_id=...), no instrument(..., "
                    "user_id=...), no LLMTALLY_DEFAULT_USER_ID): not published; such calls are counted in "
                    "llmtally.instrumentation.stats().no_tenant",
                    self.spec.name,
                )
            return
        model = outcome.model or self.model
        if not model:
            raise ValueError("the call named no model")
        latency_ms = min(int((time.perf_counter() - self.started) * 1000), MAX_LATENCY_MS)
        metadata: dict[str, str | int | bool | None] = {"instrumented": self.spec.name}
        if outcome.provider_request_id:
            metadata["provider_request_id"] = outcome.provider_request_id[:128]
        if amendment is not None:
            metadata.update(amendment.metadata)
        event = UsageEvent(
            user_id=user_id,
            provider=self.spec.provider,
            model=model,
            operation_type=operation_type,
            tags=dict(tags),
            status=outcome.status,
            error_type=outcome.error_type,
            latency_ms=latency_ms,
            usage_source=outcome.usage_source,
            metadata=metadata,
            reported_cost_usd=amendment.reported_cost_usd if amendment is not None else None,
            **outcome.tokens.model_dump(include=set(TokenCounts.model_fields)),
        )
        if _publisher(self.defaults).publish(event):
            STATS.add("published")
        else:
            STATS.add("dropped")


# -- calls ---------------------------------------------------------------------------------------------


def _failed_extraction(spec: Spec, what: str) -> None:
    STATS.add("failures")
    logger.exception("llmtally instrument: %s failed for a %s call; the call itself is unaffected", what, spec.name)


def _error_outcome(spec: Spec, exc: BaseException, model: str | None, partial: Outcome | None = None) -> Outcome:
    if isinstance(exc, Exception):
        try:
            error_type = spec.error_type(exc, model)
        except Exception:
            _failed_extraction(spec, "classifying the error")
            error_type = OTHER
    else:  # CancelledError, KeyboardInterrupt, GeneratorExit: the caller stopped the call
        error_type = CANCELLED
    if partial is None:
        # No output was received: a failed request bills nothing; an interrupted one may have.
        source = UsageSource.REPORTED if isinstance(exc, Exception) else UsageSource.MISSING
        return Outcome(TokenCounts(), source, model, Status.ERROR, error_type)
    return Outcome(
        partial.tokens,
        UsageSource.MISSING,
        partial.model or model,
        Status.ERROR,
        error_type,
        partial.provider_request_id,
    )


class Call:
    """One call through a metered entry point, from its arguments to its result or exception."""

    __slots__ = ("kwargs", "meter", "spec", "state")

    def __init__(self, spec: Spec, defaults: Defaults, kwargs: dict[str, Any]) -> None:
        self.spec = spec
        self.kwargs, self.state = spec.prepare(kwargs)
        self.meter = Meter(spec, defaults, spec.model(kwargs))

    def admit(self) -> None:
        """Ask the client's guard before the request (its refusal propagates; see the module doc)."""
        guard = self.meter.defaults.guard
        if guard is None:
            return
        try:
            self.meter.ticket = guard.before(self.spec.provider, self.meter.model, self.kwargs)
        except guard.refusals:
            raise
        except Exception:
            _failed_extraction(self.spec, "the guard before the request")

    async def aadmit(self) -> None:
        """`admit` for an async client."""
        guard = self.meter.defaults.guard
        if guard is None:
            return
        try:
            self.meter.ticket = await guard.abefore(self.spec.provider, self.meter.model, self.kwargs)
        except guard.refusals:
            raise
        except Exception:
            _failed_extraction(self.spec, "the guard before the request")

    def failed(self, exc: BaseException) -> None:
        try:
            self.meter.finish(_error_outcome(self.spec, exc, self.meter.model))
        except Exception:
            _failed_extraction(self.spec, "recording the error")

    def returned(self, result: Any, *, is_async: bool) -> Any:
        """The caller's result: the SDK's object, or a stream inside a metering proxy."""
        try:
            if self.spec.is_stream(self.kwargs, result):
                accumulator = self.spec.accumulator(result, self.state)
                proxy = AsyncStreamProxy if is_async else SyncStreamProxy
                return attach_stream(result, lambda stream: proxy(stream, self.meter, self.spec, accumulator))
            outcome = self.spec.outcome(result, self.state)
        except Exception:
            _failed_extraction(self.spec, "reading the usage")
            return result
        self.meter.finish(outcome)
        return result


def attach_stream(result: Any, make: Callable[[Any], Any]) -> Any:
    """Put the metering proxy where the caller will find the stream (botocore: inside the response dict)."""
    if isinstance(result, dict):  # botocore's ConverseStream / InvokeModelWithResponseStream
        key = "stream" if "stream" in result else "body"
        result[key] = make(result[key])
        return result
    return make(result)


Lookup = Callable[[Any], "Defaults | None"]


def _start(spec: Spec, lookup: Lookup, instance: Any, kwargs: dict[str, Any]) -> Call | None:
    defaults = lookup(instance)
    if defaults is None:
        return None
    try:
        return Call(spec, defaults, kwargs)
    except Exception:
        _failed_extraction(spec, "reading the request")
        return None


def sync_wrapper(spec: Spec, lookup: Lookup) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _start(spec, lookup, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        call.admit()
        try:
            result = wrapped(*args, **call.kwargs)
        except BaseException as exc:
            call.failed(exc)
            raise
        return call.returned(result, is_async=False)

    return wrapper


def async_wrapper(spec: Spec, lookup: Lookup) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _start(spec, lookup, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        return _run_async(call, wrapped, args)

    return wrapper


async def _run_async(call: Call, wrapped: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    await call.aadmit()
    try:
        result = await wrapped(*args, **call.kwargs)
    except BaseException as exc:
        call.failed(exc)
        raise
    return call.returned(result, is_async=True)


# -- streams ---------------------------------------------------------------------------------------------


def _finish_stream(
    meter: Meter, spec: Spec, accumulator: Accumulator, exc: BaseException | None, exhausted: bool
) -> None:
    try:
        partial = accumulator.outcome(exhausted=exhausted)
    except Exception:
        _failed_extraction(spec, "reading the stream's usage")
        partial = Outcome(TokenCounts(), UsageSource.MISSING)
    meter.finish(partial if exc is None else _error_outcome(spec, exc, meter.model, partial))


def _abandoned(meter: Meter, spec: Spec, accumulator: Accumulator) -> None:
    # Runs when a proxy that never finished is collected: the caller dropped the stream mid-way.
    _finish_stream(meter, spec, accumulator, None, exhausted=False)


class _StreamProxyBase(wrapt.ObjectProxy[Any]):
    def __init__(self, wrapped: Any, meter: Meter, spec: Spec, accumulator: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_meter = meter
        self._self_spec = spec
        self._self_accumulator = accumulator
        self._self_iterator: Any = None
        self._self_finalizer = weakref.finalize(self, _abandoned, meter, spec, accumulator)
        self._self_finalizer.atexit = False

    def _self_observe(self, item: Any) -> bool:
        try:
            return self._self_accumulator.observe(item)
        except Exception:
            _failed_extraction(self._self_spec, "reading a stream item")
            return True

    def _self_end(self, exc: BaseException | None = None, *, exhausted: bool = False) -> None:
        if self._self_finalizer.detach() is None:
            return  # already finished
        _finish_stream(self._self_meter, self._self_spec, self._self_accumulator, exc, exhausted)


class SyncStreamProxy(_StreamProxyBase):
    """A sync SDK stream, metered: iteration, `with`, `close()` behave as the SDK's own."""

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        iterator = self._self_iterator
        if iterator is None:
            iterator = self._self_iterator = iter(self.__wrapped__)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                self._self_end(exhausted=True)
                raise
            except BaseException as exc:
                self._self_end(exc)
                raise
            if self._self_observe(item):
                return item

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_end()

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end()


class AsyncStreamProxy(_StreamProxyBase):
    """An async SDK stream, metered: `async for`, `async with`, `await close()` / `aclose()` as the SDK's own."""

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        iterator = self._self_iterator
        if iterator is None:
            iterator = self._self_iterator = self.__wrapped__.__aiter__()
        while True:
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                self._self_end(exhausted=True)
                raise
            except BaseException as exc:
                self._self_end(exc)
                raise
            if self._self_observe(item):
                return item

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_end()

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_end()

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_end()


# -- patching SDK classes ------------------------------------------------------------------------------


@dataclass
class Patches:
    """The class attributes an SDK module replaced, so that `remove()` puts back exactly those."""

    originals: list[tuple[type, str, Any]] = field(default_factory=list)

    def wrap(self, owner: type, name: str, wrapper: Callable[..., Any]) -> None:
        original = owner.__dict__[name]
        self.originals.append((owner, name, original))
        setattr(owner, name, wrapt.FunctionWrapper(original, wrapper))

    def remove(self) -> None:
        while self.originals:
            owner, name, original = self.originals.pop()
            setattr(owner, name, original)

    @property
    def active(self) -> bool:
        return bool(self.originals)


class RawResponseSpec:
    """A spec's non-stream entry point called through `with_raw_response` (the SDK's legacy raw
    response, `X-Stainless-Raw-Response: true`): the usage is read from `parse()`, which the SDK
    caches, so the caller's own `parse()` returns the very object read here."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.provider = spec.provider
        self.name = spec.name

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        return kwargs, None

    def model(self, kwargs: dict[str, Any]) -> str | None:
        return self.spec.model(kwargs)

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return False

    def outcome(self, result: Any, state: Any) -> Outcome:
        return self.spec.outcome(result.parse(), state)

    def accumulator(self, result: Any, state: Any) -> Accumulator:
        raise TypeError("a raw response is never a stream (is_stream is False): it is read whole")

    def error_type(self, exc: BaseException, model: str | None) -> str:
        return self.spec.error_type(exc, model)


RAW_HEADER: Final = "X-Stainless-Raw-Response"


def raw_aware(spec: Spec, lookup: Lookup, *, is_async: bool, count_unmetered: Callable[[Any], None]) -> Any:
    """The wrapper for an SDK method that its `with_raw_response` / `with_streaming_response` also call.

    A legacy raw response of a non-stream call is metered (LangChain's ChatOpenAI calls through
    it); a raw stream and `with_streaming_response` (`stream`/`raw`) pass through, counted unmetered.
    """
    make = async_wrapper if is_async else sync_wrapper
    plain, raw = make(spec, lookup), make(RawResponseSpec(spec), lookup)

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        headers = kwargs.get("extra_headers")
        mode = headers.get(RAW_HEADER) if isinstance(headers, dict) else None
        if mode is None:
            return plain(wrapped, instance, args, kwargs)
        if mode == "true" and kwargs.get("stream") is not True:
            return raw(wrapped, instance, args, kwargs)
        count_unmetered(instance)
        return wrapped(*args, **kwargs)

    return wrapper

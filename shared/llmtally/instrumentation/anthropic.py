"""Metering for the `anthropic` SDK: `messages.create` (also `stream=True`), `messages.stream(...)`, `messages.parse`.

Sync (`anthropic.Anthropic`) and async (`anthropic.AsyncAnthropic`). The ledger comes from the
provider adapter's mapping (`llmtally.providers.anthropic.ledger_from_dict`: Anthropic's
`input_tokens` excludes cache reads and writes; thinking moves to the reasoning bucket).

Streams: `message_start` carries the input and cache counts, `message_delta` the cumulative
output; the usage is final once `message_delta` has arrived. `messages.stream(...)` is metered
underneath the SDK's helper: the helper's raw event stream is the metered proxy, so
`text_stream`, `get_final_message()`, `until_done()` and the context manager all work unchanged,
and the event is published when the helper closes its stream.

Not metered (passed through, counted in `stats().unmetered`): `with_streaming_response` and raw
streams (a non-stream `with_raw_response` call is metered), `messages.count_tokens`, batches,
and the Bedrock / Vertex clients of this SDK (`AnthropicBedrock`, `AnthropicVertex`: their prices
are not Anthropic's API prices — meter Bedrock through boto3 instead).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Final

from llmtally.events import Provider, TokenCounts, UsageSource
from llmtally.instrumentation._core import (
    OTHER,
    RAW_HEADER,
    Call,
    Defaults,
    Outcome,
    Patches,
    defaults_of,
    raw_aware,
)
from llmtally.instrumentation.stats import STATS
from llmtally.providers.anthropic import ledger_from_dict

_PATCHES: Final = Patches()


@functools.cache
def _classifier() -> Any:
    from llmtally.providers.anthropic import AnthropicProvider

    # Only its error mapping is used; the key is never sent anywhere.
    return AnthropicProvider("unused-instrumentation-classifier")


def error_type(exc: BaseException, model: str | None) -> str:
    error = _classifier()._map_error(exc, model or "unknown")
    return str(error.error_type.value) if error is not None else OTHER


def _metered_client(client: Any) -> bool:
    import anthropic

    return isinstance(client, anthropic.Anthropic | anthropic.AsyncAnthropic)


def lookup(resource: Any) -> Defaults | None:
    """The defaults of the client behind a `Messages` resource (None: not metered)."""
    client = getattr(resource, "_client", None)
    defaults = defaults_of(client)
    if defaults is None:
        return None
    if not _metered_client(client):
        STATS.add("unmetered")
        return None
    return defaults


def _wants_raw(kwargs: dict[str, Any]) -> bool:
    headers = kwargs.get("extra_headers")
    return isinstance(headers, dict) and RAW_HEADER in headers


class StreamUsage:
    """Accumulates a Messages stream's usage from its raw events."""

    __slots__ = ("final", "model", "request_id", "usage")

    def __init__(self, model: str | None, request_id: str | None) -> None:
        self.usage: dict[str, Any] = {}
        self.model = model
        self.request_id = request_id
        self.final = False

    def observe(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.model = event.message.model or self.model
            self.usage = event.message.usage.model_dump(exclude_none=True)
        elif kind == "message_delta":
            self.usage.update(event.usage.model_dump(exclude_none=True))
            self.final = True
        return True

    def outcome(self, *, exhausted: bool) -> Outcome:
        tokens = ledger_from_dict(self.usage) if self.usage else TokenCounts()
        source = UsageSource.REPORTED if self.final else UsageSource.MISSING
        return Outcome(tokens, source, self.model, provider_request_id=self.request_id)


class MessagesSpec:
    """`messages.create` (and `parse`): a Message, or with `stream=True` a raw event stream."""

    provider = Provider.ANTHROPIC

    def __init__(self, name: str) -> None:
        self.name = name

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        return kwargs, None

    def model(self, kwargs: dict[str, Any]) -> str | None:
        model = kwargs.get("model")
        return model if isinstance(model, str) else None

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return kwargs.get("stream") is True

    def outcome(self, result: Any, state: Any) -> Outcome:
        return Outcome(
            ledger_from_dict(result.usage.model_dump(exclude_none=True)),
            model=result.model,
            provider_request_id=getattr(result, "_request_id", None),
        )

    def accumulator(self, result: Any, state: Any) -> StreamUsage:
        response = getattr(result, "response", None)
        request_id = response.headers.get("request-id") if response is not None else None
        return StreamUsage(None, request_id)

    def error_type(self, exc: BaseException, model: str | None) -> str:
        return error_type(exc, model)


CREATE: Final = MessagesSpec("anthropic.messages.create")
PARSE: Final = MessagesSpec("anthropic.messages.parse")
STREAM: Final = MessagesSpec("anthropic.messages.stream")


def _count_unmetered(resource: Any) -> None:
    if lookup(resource) is not None:
        STATS.add("unmetered")


def _create_wrapper(spec: MessagesSpec, *, is_async: bool) -> Any:
    return raw_aware(spec, lookup, is_async=is_async, count_unmetered=_count_unmetered)


# -- messages.stream(): meter the helper's raw stream ---------------------------------------------------


def _stream_wrapper(*, is_async: bool) -> Any:
    manager_attr = "_AsyncMessageStreamManager__api_request" if is_async else "_MessageStreamManager__api_request"

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        manager = wrapped(*args, **kwargs)
        defaults = None if _wants_raw(kwargs) else lookup(instance)
        if defaults is None:
            return manager
        try:
            call = Call(STREAM, defaults, {**kwargs, "stream": True})
            request = getattr(manager, manager_attr)
        except Exception:
            STATS.add("failures")
            return manager
        if is_async:
            setattr(manager, manager_attr, _metered_async_request(call, request))
        else:
            setattr(manager, manager_attr, functools.partial(_metered_request, call, request))
        return manager

    return wrapper


def _metered_request(call: Call, request: Any) -> Any:
    call.meter.started = _now()  # the request is made when the helper is entered
    call.admit()
    try:
        raw = request()
    except BaseException as exc:
        call.failed(exc)
        raise
    return call.returned(raw, is_async=False)


async def _metered_async_request(call: Call, request: Any) -> Any:
    call.meter.started = _now()
    await call.aadmit()
    try:
        raw = await request
    except BaseException as exc:
        call.failed(exc)
        raise
    return call.returned(raw, is_async=True)


def _now() -> float:
    return time.perf_counter()


# -- install / remove -----------------------------------------------------------------------------------


def patch() -> None:
    """Wrap the SDK's Messages classes (idempotent)."""
    if _PATCHES.active:
        return
    from anthropic.resources.messages import AsyncMessages, Messages

    _PATCHES.wrap(Messages, "create", _create_wrapper(CREATE, is_async=False))
    _PATCHES.wrap(Messages, "parse", _create_wrapper(PARSE, is_async=False))
    _PATCHES.wrap(Messages, "stream", _stream_wrapper(is_async=False))
    _PATCHES.wrap(AsyncMessages, "create", _create_wrapper(CREATE, is_async=True))
    _PATCHES.wrap(AsyncMessages, "parse", _create_wrapper(PARSE, is_async=True))
    _PATCHES.wrap(AsyncMessages, "stream", _stream_wrapper(is_async=True))


def unpatch() -> None:
    _PATCHES.remove()


def owns(client: Any) -> bool:
    return type(client).__module__.split(".")[0] == "anthropic"


def mark_target(client: Any) -> Any:
    """The object `instrument(client)` marks: the client itself."""
    return client


def supported(client: Any) -> bool:
    return _metered_client(client)

"""Meter the LLM calls a service already makes with the native SDKs — one line, no other change.

    client = llmtally.instrument(anthropic.AsyncAnthropic(), user_id="acme")   # this client
    llmtally.instrument_all(publisher=publisher)                               # every client

    with llmtally.attribution(user_id="acme", tags={"feature": "search"}):
        await client.messages.create(...)

Covered, sync and async, streaming or not: anthropic `messages.create` / `stream` / `parse`;
openai `chat.completions.create` / `parse` (and the `stream` helper) and `responses.create` /
`parse` (and the `stream` helper); google-genai `models.generate_content` /
`generate_content_stream` and `client.aio.models.…`; boto3 `bedrock-runtime` `converse`,
`converse_stream`, `invoke_model`, `invoke_model_with_response_stream` (Anthropic-format bodies).
See docs/instrumentation.md for what is not covered and why.

How it works: each SDK module (one per SDK, like OpenTelemetry's contrib instrumentations)
wraps the SDK's resource *classes* with `wrapt` the first time a client of that SDK is
instrumented, or — under `instrument_all()` — as soon as the SDK is imported (a post-import
hook: `instrument_all()` itself imports no SDK). A wrapped method meters a call when its client
is marked by `instrument(client)` or when `instrument_all()` is on; any other call passes
straight through. `uninstrument(client)` / `uninstrument_all()` undo it; the class patches are
removed once nothing needs them.

Who is billed: the innermost `attribution(...)` block, else `instrument(...)`'s arguments, else
`instrument_all(...)`'s, else the `LLMTALLY_DEFAULT_USER_ID` setting. A call with no tenant at all
is not published: it is counted in `stats().no_tenant` and logged once per process.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import weakref
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from llmtally.instrumentation.context import (
    Attribution,
    attribution,
    clean_operation_type,
    clean_tags,
    clean_user_id,
    current_attribution,
)
from llmtally.instrumentation.stats import STATS, InstrumentStats, stats

if TYPE_CHECKING:
    from llmtally.instrumentation._core import Guard
    from llmtally.providers.tracking import UsageSink

logger = logging.getLogger("llmtally.instrumentation")

C = TypeVar("C")

#: SDK key → (the instrumentation module, the module whose import triggers it under instrument_all).
_SDKS: Final = {
    "anthropic": ("llmtally.instrumentation.anthropic", "anthropic"),
    "openai": ("llmtally.instrumentation.openai", "openai"),
    "google": ("llmtally.instrumentation.google", "google.genai"),
    "bedrock": ("llmtally.instrumentation.bedrock", "botocore.client"),
}
#: Which module names a client's class comes from → SDK key (checked without importing anything).
_OWNERS: Final = {"anthropic": "anthropic", "openai": "openai", "google.genai": "google", "botocore": "bedrock"}

_lock = threading.RLock()
_marked: dict[str, weakref.WeakSet[Any]] = {sdk: weakref.WeakSet() for sdk in _SDKS}
_hooks_registered: set[str] = set()


def _module(sdk: str) -> ModuleType:
    return importlib.import_module(_SDKS[sdk][0])


def _sdk_of(client: object) -> str | None:
    module = type(client).__module__
    for prefix, sdk in _OWNERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return sdk
    return None


def _defaults(
    publisher: UsageSink | None,
    user_id: str | None,
    operation_type: str | None,
    tags: Mapping[str, Any] | None,
    guard: Guard | None = None,
) -> Any:
    from llmtally.instrumentation._core import Defaults

    return Defaults(
        publisher=publisher,
        attribution=Attribution(clean_user_id(user_id), clean_operation_type(operation_type), clean_tags(tags)),
        guard=guard,
    )


def instrument(
    client: C,
    *,
    publisher: UsageSink | None = None,
    user_id: str | None = None,
    operation_type: str | None = None,
    tags: Mapping[str, Any] | None = None,
    guard: Guard | None = None,
) -> C:
    """Meter every call made through `client`; returns the same client object.

    `client`: an `anthropic.Anthropic`/`AsyncAnthropic`, `openai.OpenAI`/`AsyncOpenAI`,
    `google.genai.Client` (its `.aio` too) or a boto3 `bedrock-runtime` client. `publisher`
    defaults to `llmtally.publisher.default_publisher()`; `user_id`, `operation_type` and `tags`
    are defaults under any `attribution(...)` block. `guard` is checked around each call (see
    `llmtally.instrumentation._core.Guard`; `client_for_user` installs the user's budget as one).
    Calling it again replaces the defaults.
    An unsupported client is returned unchanged with a warning — this never raises.
    """
    try:
        sdk = _sdk_of(client)
        module = _module(sdk) if sdk else None
        if module is None or not module.supported(client):
            STATS.add("unmetered")
            logger.warning(
                "llmtally.instrument: %s is not a supported client; it is not metered (docs/instrumentation.md)",
                type(client).__name__,
            )
            return client
        defaults = _defaults(publisher, user_id, operation_type, tags, guard)
        with _lock:
            module.patch()
            target = module.mark_target(client)
            from llmtally.instrumentation._core import MARK

            setattr(target, MARK, defaults)
            _marked[sdk].add(target)  # type: ignore[index]
    except Exception:
        STATS.add("failures")
        logger.exception("llmtally.instrument: could not instrument a %s; it is not metered", type(client).__name__)
    return client


def uninstrument(client: C) -> C:
    """Stop metering `client` (calls made under `instrument_all()` are still metered)."""
    try:
        sdk = _sdk_of(client)
        if sdk is None:
            return client
        module = _module(sdk)
        from llmtally.instrumentation._core import MARK

        with _lock:
            target = module.mark_target(client)
            if MARK in vars(target):
                delattr(target, MARK)
            _marked[sdk].discard(target)
            _unpatch_unused(sdk)
    except Exception:
        STATS.add("failures")
        logger.exception("llmtally.uninstrument: could not uninstrument a %s", type(client).__name__)
    return client


def instrument_all(
    *,
    publisher: UsageSink | None = None,
    user_id: str | None = None,
    operation_type: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> None:
    """Meter every client of every installed SDK, including clients built later or inside frameworks.

    Idempotent (a second call only replaces the defaults) and reversible (`uninstrument_all()`).
    SDKs not yet imported are patched when they are imported; nothing is imported here.
    """
    import wrapt

    from llmtally.instrumentation._core import GLOBAL

    with _lock:
        GLOBAL.defaults = _defaults(publisher, user_id, operation_type, tags)
        for sdk, (_, trigger) in _SDKS.items():
            if trigger in sys.modules:
                _on_import(sdk)(sys.modules[trigger])  # already imported: patch now
            elif sdk not in _hooks_registered:
                # A hook cannot be unregistered: it checks, when it fires, that instrument_all is on.
                _hooks_registered.add(sdk)
                wrapt.register_post_import_hook(_on_import(sdk), trigger)


def _on_import(sdk: str) -> Any:
    def hook(_: ModuleType) -> None:
        from llmtally.instrumentation._core import GLOBAL

        with _lock:
            if GLOBAL.defaults is None:
                return  # uninstrument_all() came first
            try:
                _module(sdk).patch()
            except Exception:
                STATS.add("failures")
                logger.exception("llmtally.instrument_all: could not patch the %s SDK; its calls are not metered", sdk)

    return hook


def uninstrument_all() -> None:
    """Undo `instrument_all()`: clients not instrumented one by one stop being metered."""
    from llmtally.instrumentation._core import GLOBAL

    with _lock:
        GLOBAL.defaults = None
        for sdk in _SDKS:
            _unpatch_unused(sdk)


def _unpatch_unused(sdk: str) -> None:
    from llmtally.instrumentation._core import GLOBAL

    if GLOBAL.defaults is None and not len(_marked[sdk]):
        module = sys.modules.get(_SDKS[sdk][0])
        if module is not None:
            module.unpatch()


__all__ = [
    "Attribution",
    "InstrumentStats",
    "attribution",
    "current_attribution",
    "instrument",
    "instrument_all",
    "stats",
    "uninstrument",
    "uninstrument_all",
]

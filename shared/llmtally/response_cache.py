"""The opt-in response cache: identical deterministic requests answered without calling the provider.

A request is *cacheable* only when its effective temperature is exactly 0 (None means "the
provider's default", which is not deterministic) and it is not a stream. Its key is the sha256 of
a canonical JSON document holding the user id, the provider, the effective model, the system
prompt, the messages and every generation parameter (max tokens, temperature, prompt-cache TTL,
and whatever extra parameters the caller passed). Because the user id is *inside* the hashed
document as well as the table's partition key, two users can never share an entry, even by a
hash collision.

Entries live in the response-cache table (`llmtally.repositories.response_cache`) with a TTL
(an hour by default). DynamoDB's TTL deletes lazily (up to days late; moto never), so an entry
past its `expires_at` is treated as absent by the lookup, never served.

The async forms (`alookup`, `astore`) run the same code off the event loop (`asyncio.to_thread`):
the repository is boto3's, and boto3 stays in the repositories.

A cache problem never breaks a call: lookups and stores that fail are logged (without the prompt,
the answer or any key) and counted in `CacheStats`; the call then goes to the provider as usual.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from llmtally.events import TokenCounts
from llmtally.money import nanos_to_usd
from llmtally.pricing import CostSource

if TYPE_CHECKING:
    from llmtally.providers.base import ChatCall, ProviderResponse
    from llmtally.repositories.response_cache import ResponseCacheRepository

logger = logging.getLogger("llmtally.response_cache")

DEFAULT_TTL_SECONDS: Final = 3600
MAX_TTL_SECONDS: Final = 7 * 24 * 3600
#: Bumped when the canonical document changes, so old entries simply stop matching.
KEY_VERSION: Final = 1


class UncacheableRequestError(ValueError):
    """A request whose parameters cannot be put in a canonical key (it is then just not cached)."""


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """What one entry holds: the answer and what producing it cost (the basis of the saved figure)."""

    text: str
    model: str
    tokens: TokenCounts
    cost_nanos: int
    cost_source: CostSource
    created_at: datetime
    expires_at: int
    stop_reason: str | None = None

    @property
    def saved_cost_usd(self) -> Decimal | None:
        """What a hit saves: the first call's cost, or None if that call was unpriced (unknown)."""
        if self.cost_source is CostSource.UNPRICED:
            return None
        return nanos_to_usd(self.cost_nanos)

    def to_response(self, *, provider: str, latency_ms: int) -> ProviderResponse:
        """The cached answer as a provider response: zero tokens, $0, flagged as a cache hit."""
        from llmtally.providers.base import ProviderResponse
        from llmtally.responses import LLMUsage

        usage = LLMUsage(
            input_tokens=0,
            output_tokens=0,
            cost_usd=nanos_to_usd(0),
            latency_ms=latency_ms,
            model=self.model,
            provider=provider,
            # Nothing was billed: the $0 is the producer's own figure, whatever the catalog says.
            cost_source=CostSource.REPORTED,
            cost_nanos=0,
        )
        return ProviderResponse(
            content=self.text,
            usage=usage,
            model=self.model,
            provider=provider,
            stop_reason=self.stop_reason,
            cache_hit=True,
            saved_cost_usd=self.saved_cost_usd,
        )


@dataclass(slots=True)
class CacheStats:
    """Counters of one `ResponseCache` (process-local; for logs, metrics and tests)."""

    hits: int = 0
    misses: int = 0
    expired: int = 0
    stores: int = 0
    skipped_too_large: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


def cacheable(temperature: float | None, *, stream: bool = False) -> bool:
    """Only deterministic requests: temperature exactly 0 (None = the provider's default), no stream."""
    if stream or temperature is None or isinstance(temperature, bool):
        return False
    return bool(temperature == 0)


def _canonical_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, tuple | set | frozenset):
        return sorted(value, key=repr) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(type(value).__name__)


def key_for(
    user_id: str,
    provider: str,
    model: str,
    system: str | None,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
) -> str:
    """The entry's key: sha256 (hex) of canonical JSON covering the user, the request and every parameter.

    Raises `UncacheableRequestError` when a parameter has no canonical JSON form (an object, NaN).
    """
    document = {
        "v": KEY_VERSION,
        "user_id": user_id,
        "provider": str(provider),
        "model": model,
        "system": system,
        "messages": [dict(message) for message in messages],
        "params": {str(name): value for name, value in params.items()},
    }
    try:
        text = json.dumps(
            document,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_canonical_default,
        )
    except (TypeError, ValueError) as exc:
        # The message names the type only: a parameter's value may be anything, a prompt included.
        raise UncacheableRequestError(f"a parameter has no canonical JSON form ({exc})") from None
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def call_params(call: ChatCall) -> dict[str, Any]:
    """Every generation parameter of a normalized call (temperature as a float: 0 and 0.0 are one key)."""
    return {
        "max_tokens": call.max_tokens,
        "temperature": None if call.temperature is None else float(call.temperature),
        "prompt_cache": call.cache,
        "extra": dict(call.extra),
    }


class ResponseCache:
    """Per-user cache of deterministic answers, with a TTL, over `ResponseCacheRepository`.

    `clock` is injectable so expiry is tested without waiting. Thread-safe if the repository is.
    """

    def __init__(
        self,
        repository: ResponseCacheRepository | None = None,
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if isinstance(ttl_seconds, bool) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
        self._repository = repository
        self.ttl_seconds = ttl_seconds
        self._clock = clock or (lambda: datetime.now(UTC))
        self.stats = CacheStats()

    def __repr__(self) -> str:
        return f"ResponseCache(ttl_seconds={self.ttl_seconds})"

    @property
    def repository(self) -> ResponseCacheRepository:
        if self._repository is None:
            from llmtally.repositories.response_cache import ResponseCacheRepository

            self._repository = ResponseCacheRepository()
        return self._repository

    cacheable = staticmethod(cacheable)
    key_for = staticmethod(key_for)

    def key_for_call(self, user_id: str, provider: str, call: ChatCall) -> str | None:
        """The key of a normalized call, or None when it is not cacheable."""
        if not cacheable(call.temperature):
            return None
        try:
            return key_for(user_id, provider, call.model, call.system, call.messages, call_params(call))
        except UncacheableRequestError:
            return None

    def lookup(self, user_id: str, key: str) -> CachedAnswer | None:
        """The live entry for `key`, or None (absent, expired, or the cache failed: logged and counted)."""
        try:
            answer = self.repository.get(user_id, key)
        except Exception as exc:  # a cache failure never breaks the call
            self._failed("lookup", exc, user_id)
            return None
        if answer is None:
            self.stats.count("misses")
            return None
        if answer.expires_at <= int(self._clock().timestamp()):
            # DynamoDB's TTL deletes lazily: an expired entry may still be read. Never serve it.
            self.stats.count("expired")
            self.stats.count("misses")
            return None
        self.stats.count("hits")
        return answer

    def store(self, user_id: str, key: str, response: ProviderResponse) -> bool:
        """Keep a fresh answer for `ttl_seconds`; False if it was not stored (too large, or a failure)."""
        if response.cache_hit:
            return False
        now = self._clock()
        usage = response.usage
        answer = CachedAnswer(
            text=response.content,
            model=response.model,
            tokens=usage.tokens(),
            cost_nanos=usage.cost_nanos,
            cost_source=usage.cost_source,
            created_at=now,
            expires_at=int((now + timedelta(seconds=self.ttl_seconds)).timestamp()),
            stop_reason=response.stop_reason,
        )
        try:
            stored = self.repository.put(user_id, key, answer)
        except Exception as exc:  # a cache failure never breaks the call
            self._failed("store", exc, user_id)
            return False
        self.stats.count("stores" if stored else "skipped_too_large")
        return stored

    async def alookup(self, user_id: str, key: str) -> CachedAnswer | None:
        """`lookup` off the event loop."""
        return await asyncio.to_thread(self.lookup, user_id, key)

    async def astore(self, user_id: str, key: str, response: ProviderResponse) -> bool:
        """`store` off the event loop."""
        return await asyncio.to_thread(self.store, user_id, key, response)

    def _failed(self, action: str, exc: Exception, user_id: str) -> None:
        self.stats.count("failures")
        # The class name only: an exception's text could quote a request.
        logger.warning(
            "response cache %s failed",
            action,
            extra={"error_class": type(exc).__name__, "user_id": user_id},
        )


__all__ = [
    "DEFAULT_TTL_SECONDS",
    "CacheStats",
    "CachedAnswer",
    "ResponseCache",
    "UncacheableRequestError",
    "cacheable",
    "call_params",
    "key_for",
]

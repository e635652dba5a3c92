"""A provider for a user, from their stored preferences and their key in Secrets Manager.

Preferences are the seed's `llm_preferences` item in the settings table
(`{user_id, setting_type: "llm_preferences", preferences: {defaultProvider, queryModel,
detectionModel, maxTokens, temperature, enableCaching, trackUsage}}`). The key is the secret
`{prefix}/users/{user_id}/llm/{provider}` whose SecretString is the raw key. Both are read through
the repositories (`llmtally.repositories`), the only code that touches boto3. Keys are cached
in memory for a short time (5 minutes by default) so a busy service does not call Secrets
Manager per request; they are never logged, and a failure to read one says which user and
provider, never the value.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from llmtally.events import MetadataValue, Provider
from llmtally.providers.base import LLMProvider
from llmtally.providers.errors import PROVIDER_LABELS, AuthenticationError
from llmtally.providers.factory import LLMProviderFactory
from llmtally.providers.tracking import TrackedProvider, UsageSink
from llmtally.settings import Settings

if TYPE_CHECKING:
    from llmtally.budgets import SwitchTarget
    from llmtally.providers.budget import BudgetedProvider, BudgetGuard
    from llmtally.response_cache import ResponseCache

logger = logging.getLogger("llmtally.providers.user")

DEFAULT_KEY_TTL_S: Final = 300.0


def paid_by_deployment(provider: Provider) -> bool:
    """Whether calls to `provider` run on the deployment's credentials rather than a user's key."""
    return Provider(provider) is Provider.BEDROCK


class LLMPreferences(BaseModel):
    """The seed's preferences (camelCase as stored; snake_case accepted too)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    default_provider: Provider = Field(default=Provider.BEDROCK, alias="defaultProvider")
    query_model: str | None = Field(default=None, alias="queryModel")
    detection_model: str | None = Field(default=None, alias="detectionModel")
    max_tokens: int = Field(default=2000, ge=1, le=200_000, alias="maxTokens")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    #: Opt-in: deterministic calls are answered from the response cache only when the user asks.
    enable_caching: bool = Field(default=False, alias="enableCaching")
    #: The user's opt-out of metering — for calls billed to *their own* key only (see `tracks`).
    track_usage: bool = Field(default=True, alias="trackUsage")

    def tracks(self, provider: Provider) -> bool:
        """Whether calls to `provider` are metered (and so obey the budget) for this user.

        `trackUsage: false` is the user's choice about calls on their own key (their bill, their
        privacy). Calls the deployment pays for — Bedrock, on the deployment's AWS credentials —
        are always metered and budgeted: a preference must never turn off the operator's view of
        its own spend (docs/providers.md, docs/budgets.md).
        """
        return self.track_usage or paid_by_deployment(provider)

    def model_for(self, provider: Provider, operation_type: str) -> str | None:
        """The preferred model for an operation, if it belongs to `provider` (else the provider's default)."""
        from llmtally.pricing import known_models

        wanted = self.detection_model if operation_type == "detection_rule" else self.query_model
        if not wanted:
            return None
        known = known_models(provider)
        if wanted in known:
            return wanted
        # The seed stores Anthropic names with Bedrock as the provider: find the Bedrock id for it.
        if provider is Provider.BEDROCK:
            for model in known:
                if wanted in model:
                    return model
        logger.warning(
            "preferred model is not a %s model; using the provider default", provider.value, extra={"model": wanted}
        )
        return None


class SecretKeyStore:
    """Users' provider keys (via `SecretsRepository`), each cached in memory for `ttl_seconds`."""

    def __init__(
        self,
        *,
        repository: Any = None,
        settings: Settings | None = None,
        ttl_seconds: float = DEFAULT_KEY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._settings = settings
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[tuple[str, Provider], tuple[SecretStr, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretKeyStore(cached={len(self._cache)})"

    @property
    def repository(self) -> Any:
        if self._repository is None:
            from llmtally.repositories.secrets import SecretsRepository

            self._repository = SecretsRepository(settings=self._settings)
        return self._repository

    def get(self, user_id: str, provider: Provider) -> str | None:
        """The user's key for `provider`, or None if none is stored."""
        provider = Provider(provider)
        now = self._clock()
        with self._lock:
            hit = self._cache.get((user_id, provider))
            if hit is not None and hit[1] > now:
                return hit[0].get_secret_value()
        secret: SecretStr | None = self.repository.get_key(user_id, provider)
        if secret is None or not secret.get_secret_value().strip():
            return None
        with self._lock:
            self._cache[(user_id, provider)] = (secret, now + self._ttl)
        return secret.get_secret_value().strip()

    def invalidate(self, user_id: str, provider: Provider | None = None) -> None:
        """Forget cached keys (after a key is replaced or deleted)."""
        with self._lock:
            for cached in list(self._cache):
                if cached[0] == user_id and (provider is None or cached[1] is provider):
                    del self._cache[cached]


class PreferencesStore:
    """Reads the `llm_preferences` item (via `SettingsRepository`); defaults when there is none."""

    def __init__(self, *, repository: Any = None, settings: Settings | None = None) -> None:
        self._repository = repository
        self._settings = settings

    def load(self, user_id: str) -> LLMPreferences:
        if self._repository is None:
            from llmtally.repositories.settings import SettingsRepository

            self._repository = SettingsRepository(settings=self._settings)
        stored = self._repository.get_preferences(user_id)
        return LLMPreferences.model_validate(stored or {})


@cache
def default_key_store() -> SecretKeyStore:
    """The process-wide key cache."""
    return SecretKeyStore()


def provider_for_user(
    user_id: str,
    provider: Provider | str | None = None,
    *,
    operation_type: str = "query_generation",
    preferences: LLMPreferences | Mapping[str, Any] | None = None,
    key_store: SecretKeyStore | None = None,
    preferences_store: PreferencesStore | None = None,
    publisher: UsageSink | None = None,
    metadata: Mapping[str, MetadataValue] | None = None,
    response_cache: ResponseCache | None = None,
    enforce_budget: bool = True,
    budget_guard: BudgetGuard | None = None,
    force_tracking: bool = False,
    **options: Any,
) -> LLMProvider | TrackedProvider | BudgetedProvider:
    """Build the user's provider: their preferences (loaded unless given), their stored key.

    With a `publisher`, a metered call (`LLMPreferences.tracks`: always for Bedrock, which the
    deployment pays for; for the user's own keys unless they turned `trackUsage` off — or when
    `force_tracking`) is wrapped in a `TrackedProvider` — with the response cache when the user
    turned `enableCaching` on (`response_cache`, or the process-wide DynamoDB one) — and then,
    unless `enforce_budget` is False, in a `BudgetedProvider` that obeys the user's budget
    (docs/budgets.md; a `switch` to another provider is built here, from the user's key for it, and
    is always metered: the budget must see the calls it routes). Raises `AuthenticationError` when
    no key is stored for a key-based provider.
    """
    if preferences is None:
        prefs = (preferences_store or PreferencesStore()).load(user_id)
    elif isinstance(preferences, LLMPreferences):
        prefs = preferences
    else:
        prefs = LLMPreferences.model_validate(dict(preferences))
    chosen = Provider(provider) if provider is not None else prefs.default_provider
    options.setdefault("model", prefs.model_for(chosen, operation_type))
    if options["model"] is None:
        del options["model"]
    options.setdefault("max_tokens", prefs.max_tokens)
    options.setdefault("temperature", prefs.temperature)
    api_key: str | None = None
    if chosen is not Provider.BEDROCK:
        api_key = (key_store or default_key_store()).get(user_id, chosen)
        if api_key is None:
            label = PROVIDER_LABELS[chosen.value]
            raise AuthenticationError(
                f"no {label} API key is stored for this user", provider=chosen.value, code="no_stored_key"
            )
    result = LLMProviderFactory.create(chosen, api_key=api_key, **options)
    if publisher is None or not (force_tracking or prefs.tracks(chosen)):
        return result
    cache = (response_cache or default_response_cache()) if prefs.enable_caching else None
    tracked = TrackedProvider(
        result, publisher, user_id=user_id, operation_type=operation_type, metadata=metadata, response_cache=cache
    )
    if not enforce_budget:
        return tracked
    from llmtally.providers.budget import BudgetedProvider, default_budget_guard

    def switch(target: SwitchTarget) -> TrackedProvider:
        switched = provider_for_user(
            user_id,
            target.provider,
            operation_type=operation_type,
            preferences=prefs,
            key_store=key_store,
            publisher=publisher,
            metadata=metadata,
            response_cache=response_cache,
            enforce_budget=False,
            force_tracking=True,
            **{**options, "model": target.model},
        )
        assert isinstance(switched, TrackedProvider)
        return switched

    return BudgetedProvider(tracked, guard=budget_guard or default_budget_guard(), switch=switch)


async def aprovider_for_user(
    user_id: str, provider: Provider | str | None = None, **options: Any
) -> LLMProvider | TrackedProvider | BudgetedProvider:
    """`provider_for_user` for async services: the preferences and the key are read off the event loop.

    Same arguments, same result: the returned provider has `agenerate` / `astream` (and the sync
    calls), with the same tracking, response cache and budget semantics.
    """
    return await asyncio.to_thread(provider_for_user, user_id, provider, **options)


@cache
def default_response_cache() -> ResponseCache:
    """The process-wide response cache (DynamoDB, the deployment's cache table)."""
    from llmtally.response_cache import ResponseCache

    return ResponseCache()

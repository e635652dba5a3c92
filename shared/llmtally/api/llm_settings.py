"""BYOK settings: preferences in the settings table, keys in Secrets Manager, and the connection test.

Plain functions over repositories: no event, no HTTP. Keys arrive as `SecretStr` and leave only
towards Secrets Manager or the provider layer; nothing here returns, logs or formats one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import SecretStr, ValidationError

from llmtally.api.config import ApiSettings
from llmtally.api.errors import BadRequestError, RateLimitedError
from llmtally.api.models import (
    DEFAULT_PREFERENCES,
    KEYED_PROVIDERS,
    ConnectionTestRequest,
    ConnectionTestResponse,
    HasApiKeys,
    KeyDeletedResponse,
    Preferences,
    SettingsResponse,
    SettingsUpdate,
    SettingsUpdateResponse,
)
from llmtally.api.scrub import scrub
from llmtally.events import Provider

logger = logging.getLogger("llmtally.api")

CONNECTION_TEST: str = "connection_test"

#: Runs a provider's connection test: (provider, key or None, model or None) → the seed's result dict.
ConnectionTester = Callable[[Provider, SecretStr | None, str | None], dict[str, Any]]


class PreferencesStore(Protocol):
    """What the service needs of the settings table (`llmtally.repositories.settings.SettingsRepository`)."""

    def get_preferences(self, user_id: str) -> dict[str, Any] | None: ...

    def put_preferences(self, user_id: str, preferences: Mapping[str, Any], *, updated_at: datetime) -> None: ...

    def take_rate_limit_token(
        self, user_id: str, name: str, *, window_start: int, limit: int, expires_at: int
    ) -> bool: ...


class KeyStore(Protocol):
    """What the service needs of Secrets Manager (`llmtally.repositories.secrets.SecretsRepository`)."""

    def put_key(self, user_id: str, provider: Provider, key: SecretStr) -> None: ...

    def has_keys(self, user_id: str, providers: Iterable[Provider]) -> dict[Provider, bool]: ...

    def delete_key(self, user_id: str, provider: Provider) -> bool: ...

    def get_key(self, user_id: str, provider: Provider) -> SecretStr | None: ...


@dataclass(frozen=True, slots=True)
class SettingsService:
    settings_repo: PreferencesStore
    secrets_repo: KeyStore
    config: ApiSettings

    # -- read --------------------------------------------------------------------------------

    def has_api_keys(self, user_id: str) -> HasApiKeys:
        stored = self.secrets_repo.has_keys(user_id, KEYED_PROVIDERS)
        return HasApiKeys(
            anthropic=stored[Provider.ANTHROPIC],
            openai=stored[Provider.OPENAI],
            google=stored[Provider.GOOGLE],
            bedrock=self.config.bedrock_available,
        )

    def preferences(self, user_id: str) -> Preferences:
        """The saved preferences, or the defaults for a user who never saved any."""
        stored = self.settings_repo.get_preferences(user_id)
        if stored is None:
            return DEFAULT_PREFERENCES
        try:
            return Preferences.model_validate({**DEFAULT_PREFERENCES.model_dump(), **stored})
        except ValidationError:
            # Saved under an older catalog (a model since retired): show it as saved, unchecked.
            merged = {**DEFAULT_PREFERENCES.model_dump(), **stored}
            return Preferences.model_construct(**{k: merged[k] for k in Preferences.model_fields if k in merged})

    def get(self, user_id: str) -> SettingsResponse:
        return SettingsResponse(preferences=self.preferences(user_id), hasApiKeys=self.has_api_keys(user_id))

    # -- write -------------------------------------------------------------------------------

    def update(self, user_id: str, update: SettingsUpdate, *, now: datetime | None = None) -> SettingsUpdateResponse:
        """Store the preferences (if given) and each given key. The response never carries a key."""
        keys = update.apiKeys.given()
        if update.preferences is None and not keys:
            raise BadRequestError("nothing to update: give preferences, apiKeys, or both")
        if update.preferences is not None:
            self.settings_repo.put_preferences(
                user_id, update.preferences.model_dump(mode="json"), updated_at=now or datetime.now(UTC)
            )
        for provider, key in keys.items():
            self.secrets_repo.put_key(user_id, provider, key)
        logger.info(
            "llm settings updated",
            extra={
                "tenant": user_id,
                "preferences_saved": update.preferences is not None,
                "keys_stored": sorted(p.value for p in keys),
            },
        )
        return SettingsUpdateResponse(
            message="Settings updated successfully",
            preferences=self.preferences(user_id),
            hasApiKeys=self.has_api_keys(user_id),
        )

    def delete_key(self, user_id: str, provider: Provider) -> KeyDeletedResponse:
        if provider not in KEYED_PROVIDERS:
            raise BadRequestError(f"{provider.value} has no stored key: it uses the deployment's AWS credentials")
        deleted = self.secrets_repo.delete_key(user_id, provider)
        logger.info("llm key deleted", extra={"tenant": user_id, "provider": provider.value, "deleted": deleted})
        return KeyDeletedResponse(provider=provider, deleted=deleted, hasApiKeys=self.has_api_keys(user_id))

    # -- connection test ---------------------------------------------------------------------------

    def test_connection(
        self,
        user_id: str,
        request: ConnectionTestRequest,
        tester: ConnectionTester,
        *,
        now: float | None = None,
    ) -> ConnectionTestResponse:
        """Test the key in the body, else the stored one (Bedrock: the deployment's credentials)."""
        self._take_test_token(user_id, now if now is not None else time.time())
        key = request.apiKey
        if key is None and request.provider in KEYED_PROVIDERS:
            key = self.secrets_repo.get_key(user_id, request.provider)
            if key is None:
                raise BadRequestError(f"No API key configured for {request.provider.value}")
        secrets = [key.get_secret_value()] if key is not None else []
        try:
            result = tester(request.provider, key, request.model)
        except Exception as exc:
            logger.warning(
                "connection test crashed",
                extra={"tenant": user_id, "provider": request.provider.value, "error_type": type(exc).__name__},
            )
            result = {"success": False, "provider": request.provider.value, "message": "Connection test failed"}
        success = bool(result.get("success"))
        message = scrub(
            str(result.get("message") or ("Connection successful" if success else "Connection failed")), secrets
        )
        model = result.get("model")
        latency = result.get("latency_ms")
        logger.info(
            "connection test",
            extra={"tenant": user_id, "provider": request.provider.value, "success": success, "latency_ms": latency},
        )
        return ConnectionTestResponse(
            success=success,
            provider=request.provider,
            message=message,
            model=scrub(str(model), secrets) if model is not None else None,
            latency_ms=float(latency) if isinstance(latency, int | float) and not isinstance(latency, bool) else None,
            error=None if success else message,
        )

    def _take_test_token(self, user_id: str, now: float) -> None:
        window = self.config.test_rate_window_seconds
        window_start = int(now) // window * window
        allowed = self.settings_repo.take_rate_limit_token(
            user_id,
            CONNECTION_TEST,
            window_start=window_start,
            limit=self.config.test_rate_limit,
            expires_at=window_start + 2 * window,
        )
        if not allowed:
            retry_after = window_start + window - int(now)
            raise RateLimitedError(
                f"too many connection tests: at most {self.config.test_rate_limit} per {window} s",
                retry_after_seconds=retry_after,
            )

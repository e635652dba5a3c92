"""SettingsService with in-memory stores: the rules, without AWS."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pytest
from pydantic import SecretStr

from llmtally.api.config import ApiSettings
from llmtally.api.errors import BadRequestError, RateLimitedError
from llmtally.api.llm_settings import SettingsService
from llmtally.api.models import ConnectionTestRequest, Preferences, SettingsUpdate
from llmtally.events import Provider

KEY = "sk-ant-api03-" + "Svc5ecret" * 9


class MemoryPreferences:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, tuple[int, int]] = {}

    def get_preferences(self, user_id: str) -> dict[str, Any] | None:
        return self.items.get(user_id)

    def put_preferences(self, user_id: str, preferences: Mapping[str, Any], *, updated_at: datetime) -> None:
        self.items[user_id] = dict(preferences)

    def take_rate_limit_token(self, user_id: str, name: str, *, window_start: int, limit: int, expires_at: int) -> bool:
        window, count = self.counters.get(user_id, (-1, 0))
        if window == window_start:
            if count >= limit:
                return False
            self.counters[user_id] = (window, count + 1)
            return True
        self.counters[user_id] = (window_start, 1)
        return True


class MemoryKeys:
    def __init__(self) -> None:
        self.keys: dict[tuple[str, Provider], SecretStr] = {}

    def put_key(self, user_id: str, provider: Provider, key: SecretStr) -> None:
        self.keys[(user_id, provider)] = key

    def has_keys(self, user_id: str, providers: Iterable[Provider]) -> dict[Provider, bool]:
        return {p: (user_id, p) in self.keys for p in providers}

    def delete_key(self, user_id: str, provider: Provider) -> bool:
        return self.keys.pop((user_id, provider), None) is not None

    def get_key(self, user_id: str, provider: Provider) -> SecretStr | None:
        return self.keys.get((user_id, provider))


@pytest.fixture
def service() -> SettingsService:
    return SettingsService(
        MemoryPreferences(), MemoryKeys(), ApiSettings(test_rate_limit=3, test_rate_window_seconds=60)
    )


def ok_tester(provider: Provider, key: SecretStr | None, model: str | None) -> dict[str, Any]:
    return {"success": True, "provider": provider.value, "message": "ok", "model": model or "m", "latency_ms": 12}


def test_an_empty_update_is_refused(service: SettingsService) -> None:
    with pytest.raises(BadRequestError, match="nothing to update"):
        service.update("u", SettingsUpdate())


def test_stored_preferences_from_an_older_catalog_are_still_shown(service: SettingsService) -> None:
    store: Any = service.settings_repo
    store.items["u"] = {"defaultProvider": "openai", "queryModel": "gpt-2", "detectionModel": "gpt-2"}
    prefs = service.preferences("u")
    assert prefs.queryModel == "gpt-2"
    assert prefs.maxTokens == 2000


def test_the_rate_limit_is_a_fixed_window(service: SettingsService) -> None:
    request = ConnectionTestRequest(provider=Provider.BEDROCK)
    t0 = 1_800_000_000.0  # a window boundary (divisible by 60)
    for second in (0, 10, 59):
        assert service.test_connection("u", request, ok_tester, now=t0 + second).success
    with pytest.raises(RateLimitedError) as refused:
        service.test_connection("u", request, ok_tester, now=t0 + 59.5)
    assert refused.value.headers["Retry-After"] == "1"
    # the next window starts afresh
    assert service.test_connection("u", request, ok_tester, now=t0 + 60).success
    # and users do not share a budget
    assert service.test_connection("v", request, ok_tester, now=t0 + 59.5).success


def test_a_failed_test_is_scrubbed_and_has_the_seed_error_field(service: SettingsService) -> None:
    def failing(provider: Provider, key: SecretStr | None, model: str | None) -> dict[str, Any]:
        assert key is not None
        return {"success": False, "provider": "anthropic", "message": f"rejected {key.get_secret_value()}"}

    result = service.test_connection(
        "u", ConnectionTestRequest.model_validate({"provider": "anthropic", "apiKey": KEY}), failing, now=0
    )
    assert result.success is False
    assert KEY not in result.message
    assert result.error == result.message


def test_the_stored_key_is_used_when_the_body_has_none(service: SettingsService) -> None:
    seen: list[str] = []

    def tester(provider: Provider, key: SecretStr | None, model: str | None) -> dict[str, Any]:
        seen.append(key.get_secret_value() if key else "")
        return ok_tester(provider, key, model)

    service.update("u", SettingsUpdate.model_validate({"apiKeys": {"anthropic": KEY}}))
    service.test_connection("u", ConnectionTestRequest(provider=Provider.ANTHROPIC), tester, now=0)
    assert seen == [KEY]


def test_a_weird_tester_answer_is_normalized(service: SettingsService) -> None:
    def odd(provider: Provider, key: SecretStr | None, model: str | None) -> dict[str, Any]:
        return {"success": 1, "latency_ms": True, "model": None}

    result = service.test_connection("u", ConnectionTestRequest(provider=Provider.BEDROCK), odd, now=0)
    assert result.success is True
    assert result.latency_ms is None
    assert result.message == "Connection successful"


def test_preferences_round_trip_through_the_store(service: SettingsService) -> None:
    prefs = Preferences(defaultProvider=Provider.GOOGLE, queryModel="gemini-2.5-pro", detectionModel="gemini-2.5-flash")
    service.update("u", SettingsUpdate(preferences=prefs))
    assert service.preferences("u") == prefs

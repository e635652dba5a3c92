"""SecretKeyStore caches keys briefly; LLMPreferences reads the seed's item shape."""

from __future__ import annotations

from pydantic import SecretStr

from llmtally.events import Provider
from llmtally.providers import LLMPreferences, SecretKeyStore


class FakeSecrets:
    def __init__(self) -> None:
        self.keys = {("u-1", Provider.OPENAI): SecretStr("sk-test-key-000000000000")}
        self.reads = 0

    def get_key(self, user_id: str, provider: Provider) -> SecretStr | None:
        self.reads += 1
        return self.keys.get((user_id, provider))


def test_keys_are_cached_for_the_ttl_then_read_again() -> None:
    now = [0.0]
    repo = FakeSecrets()
    store = SecretKeyStore(repository=repo, ttl_seconds=300, clock=lambda: now[0])
    assert store.get("u-1", Provider.OPENAI) == "sk-test-key-000000000000"
    now[0] = 299.0
    assert store.get("u-1", Provider.OPENAI) == "sk-test-key-000000000000"
    assert repo.reads == 1
    now[0] = 301.0
    store.get("u-1", Provider.OPENAI)
    assert repo.reads == 2
    store.invalidate("u-1", Provider.OPENAI)
    store.get("u-1", Provider.OPENAI)
    assert repo.reads == 3
    assert store.get("u-1", Provider.ANTHROPIC) is None
    assert "sk-test" not in repr(store)


def test_preferences_from_the_seed_item_and_model_choice_per_operation() -> None:
    prefs = LLMPreferences.model_validate(
        {
            "defaultProvider": "openai",
            "queryModel": "gpt-5-mini",
            "detectionModel": "gpt-5.1",
            "maxTokens": 2000,
            "temperature": 0.0,
            "enableCaching": True,
            "trackUsage": False,
        }
    )
    assert prefs.default_provider is Provider.OPENAI
    assert prefs.model_for(Provider.OPENAI, "query_generation") == "gpt-5-mini"
    assert prefs.model_for(Provider.OPENAI, "detection_rule") == "gpt-5.1"
    assert prefs.model_for(Provider.ANTHROPIC, "query_generation") is None  # not an Anthropic model
    assert LLMPreferences().default_provider is Provider.BEDROCK
    assert prefs.enable_caching is True
    assert LLMPreferences().enable_caching is False  # the response cache is opt-in

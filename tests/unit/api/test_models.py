"""Request models: what a valid preference and key look like; nothing about a key leaks from an error."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from llmtally.api.models import (
    DEFAULT_PREFERENCES,
    PATH_USER_ID_PATTERN,
    ApiKeys,
    ConnectionTestRequest,
    Preferences,
    SettingsUpdate,
)
from llmtally.events import USER_ID_PATTERN, Provider
from llmtally.pricing import known_models

KEY = "sk-proj-" + "s3cr3t" * 8


def test_the_defaults_are_valid_and_bedrock_models() -> None:
    assert Preferences.model_validate(DEFAULT_PREFERENCES.model_dump()) == DEFAULT_PREFERENCES
    assert DEFAULT_PREFERENCES.queryModel in known_models(Provider.BEDROCK)


@pytest.mark.parametrize("provider", list(Provider))
def test_every_offered_model_is_accepted(provider: Provider) -> None:
    for model in known_models(provider):
        Preferences(defaultProvider=provider, queryModel=model, detectionModel=model)


def test_keys_are_secret_from_the_moment_they_are_parsed() -> None:
    keys = ApiKeys.model_validate({"openai": KEY})
    assert isinstance(keys.openai, SecretStr)
    assert KEY not in repr(keys)
    assert KEY not in str(SettingsUpdate(apiKeys=keys))
    assert keys.given() == {Provider.OPENAI: SecretStr(KEY)}


@pytest.mark.parametrize("bad", ["", "   ", "short", "has space inside k", "tab\tinside-key", "é" * 10, "x" * 513])
def test_a_bad_key_error_never_contains_the_key(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ApiKeys.model_validate({"google": bad})
    for error in caught.value.errors(include_input=False):
        assert bad.strip() not in error["msg"] or not bad.strip()


def test_connection_request_checks_model_and_bedrock_key() -> None:
    assert ConnectionTestRequest(provider=Provider.OPENAI, model="gpt-4o").model == "gpt-4o"
    with pytest.raises(ValidationError, match="not a openai model"):
        ConnectionTestRequest(provider=Provider.OPENAI, model="gemini-2.5-pro")
    with pytest.raises(ValidationError, match="bedrock takes no API key"):
        ConnectionTestRequest.model_validate({"provider": "bedrock", "apiKey": KEY})


@pytest.mark.parametrize(
    ("user_id", "ok"),
    [
        ("alice", True),
        ("a.b", True),
        ("a.b.c", True),
        ("user@example.com", True),
        ("0b1c2d3e-aaaa-bbbb-cccc-1234567890ab", True),
        ("trailing.", True),
        ("a..b", False),
        ("..", False),
        (".a", False),
        ("a/b", False),
        ("a%2Fb", False),
        ("", False),
    ],
)
def test_the_path_user_id_pattern_refuses_dot_dot(user_id: str, ok: bool) -> None:
    import re

    assert bool(re.match(PATH_USER_ID_PATTERN, user_id)) is ok
    if ok:  # a subset of the event contract's user ids
        assert re.match(USER_ID_PATTERN, user_id)


def test_temperature_is_bounded_per_provider() -> None:
    base: dict[str, Any] = {"queryModel": "gpt-4o", "detectionModel": "gpt-4o"}
    assert Preferences(defaultProvider=Provider.OPENAI, temperature=2, **base).temperature == 2
    with pytest.raises(ValidationError):
        Preferences(defaultProvider=Provider.OPENAI, temperature=float("nan"), **base)
    with pytest.raises(ValidationError):
        Preferences(defaultProvider=Provider.OPENAI, temperature=float("inf"), **base)

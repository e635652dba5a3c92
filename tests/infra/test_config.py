"""The app's configuration: CDK context validated once, with defaults for every key."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cdk_app.app import ROOT, cdk_json_context
from cdk_app.config import CONTEXT_KEYS, AppConfig

pytestmark = pytest.mark.xdist_group("infra")


def test_defaults() -> None:
    config = AppConfig()
    assert config.prefix == "mantissa-log"
    assert config.stack_name == "mantissa-log-llmtally"
    assert config.log_retention_days == 30
    assert config.retain_data is True
    assert config.allowed_web_origins == ()


def test_cdk_json_context_is_valid_and_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDK_CONTEXT_JSON", raising=False)
    context = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    assert set(context) <= set(CONTEXT_KEYS)
    assert cdk_json_context() == context
    AppConfig.from_context(context.get)


def test_cli_strings_are_parsed() -> None:
    # `cdk deploy -c key=value` passes strings.
    config = AppConfig.from_context(
        {
            "logRetentionDays": "90",
            "retainData": "false",
            "allowedWebOrigins": "https://llm.example.com, http://localhost:5173",
            "alarmEmail": "ops@example.com",
            "alertEmail": "finance@example.com",
        }.get
    )
    assert config.alert_email == "finance@example.com"
    assert config.log_retention_days == 90
    assert config.retain_data is False
    assert config.allowed_web_origins == ("https://llm.example.com", "http://localhost:5173")


@pytest.mark.parametrize(
    "context",
    [
        {"prefix": "Bad_Prefix"},
        {"logRetentionDays": 31},
        {"allowedWebOrigins": "http://example.com"},
        {"allowedWebOrigins": "https://example.com/"},
        {"allowedWebOrigins": "http://localhost.evil.com"},
        {"allowedWebOrigins": "http://localhost:5173.evil.com"},
        {"allowedWebOrigins": "https://llm.example.com/callback"},
        {"alarmEmail": "not-an-address"},
        {"alertEmail": "finance@"},
        {"cognitoDomainPrefix": "-x"},
    ],
)
def test_invalid_context_is_refused(context: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AppConfig.from_context(context.get)

"""Reconciliation settings: validated once, from `LLMTALLY_RECONCILE_*`."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from llmtally.reconcile.job import ReconcileSettings


def test_defaults_are_the_documented_thresholds() -> None:
    thresholds = ReconcileSettings().thresholds
    assert thresholds.drift_percent == Decimal(2)
    assert thresholds.unmetered_nanos == 1_000_000_000
    assert thresholds.min_drift_nanos == 10_000_000


def test_the_environment_configures_bedrock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_RECONCILE_BEDROCK_ENABLED", "true")
    monkeypatch.setenv(
        "LLMTALLY_RECONCILE_BEDROCK_SERVICES", '["Amazon Bedrock", "Claude Sonnet 4.5 (Amazon Bedrock Edition)"]'
    )
    monkeypatch.setenv("LLMTALLY_RECONCILE_UNMETERED_USD", "0.25")
    settings = ReconcileSettings()
    assert settings.bedrock_enabled
    assert settings.bedrock_services == ("Amazon Bedrock", "Claude Sonnet 4.5 (Amazon Bedrock Edition)")
    assert settings.thresholds.unmetered_nanos == 250_000_000


@pytest.mark.parametrize(
    "url", ["http://api.openai.com", "ftp://api.openai.com", "https://api.openai.com/v1?x=1", "http://10.0.0.1:8080"]
)
def test_an_admin_key_is_never_sent_in_clear_text_off_this_machine(url: str) -> None:
    with pytest.raises(ValidationError):
        ReconcileSettings(openai_base_url=url)


@pytest.mark.parametrize("url", ["https://api.openai.com", "http://127.0.0.1:8123", "http://localhost:9"])
def test_https_or_loopback_is_accepted(url: str) -> None:
    assert ReconcileSettings(openai_base_url=url).openai_base_url == url


def test_a_bad_default_tenant_is_refused() -> None:
    with pytest.raises(ValidationError):
        ReconcileSettings(bedrock_default_user="../etc")

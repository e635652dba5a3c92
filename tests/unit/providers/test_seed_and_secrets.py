"""The seed's usage example runs as written; keys never show up in errors, results or logs."""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import pytest

from llmtally.pricing import PriceBook
from llmtally.providers import LLMProviderFactory, ProviderError, RetryPolicy
from llmtally.providers.errors import scrub
from tests.unit.providers.conftest import KEYS, MockAPI, error_reply, fixture_json, json_reply, no_sleep


def test_the_seed_usage_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    api = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))])
    http_client = api.client()

    provider = LLMProviderFactory.create("anthropic", api_key="sk-ant-...", http_client=http_client)
    response = provider.generate(prompt="...", max_tokens=1000)
    print(f"Response: {response.content}")
    print(f"Cost: ${response.usage.cost_usd:.4f}")
    print(f"Tokens: {response.usage.total_tokens}")
    print(f"Latency: {response.usage.latency_ms}ms")

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Response: SELECT * FROM logs WHERE level = 'ERROR'"
    assert out[1] == "Cost: $0.0120"
    assert out[2] == "Tokens: 2000"
    assert out[3].startswith("Latency: ")
    assert out[3].endswith("ms")


ERROR_FIXTURES = {"anthropic": "anthropic", "openai": "openai", "google": "google"}


def _make(name: str, reply: Any) -> Any:
    return LLMProviderFactory.create(
        name,
        api_key=KEYS[name],
        http_client=MockAPI([reply]).client(),
        price_book=PriceBook(),
        retry=RetryPolicy(max_attempts=2, base_delay=0, max_delay=0),
        sleep=no_sleep,
    )


def _replies(name: str) -> list[Any]:
    """Every error fixture, plus replies that echo the key back in the body and in transport errors."""
    key = KEYS[name]
    echoed = {"status": 400, "body": {"error": {"message": f"bad key {key}", "type": "invalid_request_error"}}}
    replies: list[Any] = [error_reply(spec) for spec in fixture_json(name, "errors.json").values()]
    replies += [error_reply(echoed), httpx2.ConnectError("[Errno -2] Name or service not known")]
    replies.append(httpx2.ReadTimeout("The read operation timed out"))
    return replies


@pytest.mark.parametrize("name", sorted(KEYS))
def test_the_key_is_never_in_errors_results_or_logs(
    name: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    key = KEYS[name]
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' and httpx2's included
    seen: list[str] = []
    for reply in _replies(name):
        provider = _make(name, reply)
        with pytest.raises(ProviderError) as caught:
            provider.generate(prompt="q")
        error = caught.value
        seen += [str(error), repr(error), error.message, str(error.args)]
        assert error.__cause__ is None
        result = _make(name, reply).test_connection(generate=True)
        seen += [result.message, str(result.to_dict())]
        logging.getLogger("test").exception("call failed", exc_info=error)
    seen += [caplog.text, capsys.readouterr().out, capsys.readouterr().err, repr(provider)]
    for text in seen:
        assert key not in text
        assert key[-12:] not in text


def test_scrub_removes_keys_and_key_shapes() -> None:
    text = "key sk-ant-api03-abcdef0123456789 and sk-proj-***wxyz and AIzaSyA0123456789abcdefghij and mine"
    cleaned = scrub(text, ["mine"])
    assert "sk-" not in cleaned
    assert "AIza" not in cleaned
    assert "mine" not in cleaned

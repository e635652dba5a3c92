"""POST /api/llm-settings/{userId}/test: the seed's response shape, the stored or the given key,
scrubbed failures, a per-user rate limit. The provider's HTTP transport is mocked (httpx2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from llmtally.events import Provider
from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE, Api, JsonLogs
from tests.support.apigw import request

pytestmark = pytest.mark.integration

ANTHROPIC_KEY = "sk-ant-api03-" + "K3y5ecret" * 9
OPENAI_KEY = "sk-proj-" + "0pen4iKey" * 7
MODEL = "claude-sonnet-4-5-20250929"


class FakeProviders:
    """A mocked transport per provider: records the keys it was called with; accepts only `good_keys`."""

    def __init__(self) -> None:
        self.good_keys = {ANTHROPIC_KEY, OPENAI_KEY}
        self.seen_keys: list[str] = []
        self.hosts: list[str] = []

    def _handler(self, request: httpx2.Request) -> httpx2.Response:
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        self.seen_keys.append(key)
        self.hosts.append(request.url.host)
        model = request.url.path.rsplit("/", 1)[-1]
        if key not in self.good_keys:
            # Providers echo (part of) the key they refused: the API must not pass it on.
            masked = key[:12] + "***" + key[-6:]
            body = {
                "type": "error",
                "error": {"type": "authentication_error", "message": f"invalid x-api-key {masked}"},
            }
            return httpx2.Response(401, json=body)
        if "anthropic" in request.url.host:
            return httpx2.Response(
                200,
                json={"type": "model", "id": model, "display_name": model, "created_at": "2025-09-29T00:00:00Z"},
            )
        return httpx2.Response(200, json={"id": model, "object": "model", "created": 1, "owned_by": "openai"})

    def options(self, provider: Provider) -> dict[str, Any]:
        return {"http_client": httpx2.Client(transport=httpx2.MockTransport(self._handler))}


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> FakeProviders:
    import api.connection

    fake = FakeProviders()
    monkeypatch.setattr(api.connection, "provider_options", fake.options)
    return fake


def _test(body: dict[str, Any], user: str = ALICE) -> Any:
    return request("POST", f"/api/llm-settings/{user}/test", claims={"sub": user}, body=body)


def test_the_stored_key_is_tested(stack: MotoServer, as_alice: Api, providers: FakeProviders) -> None:
    # Given a stored Anthropic key
    as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"apiKeys": {"anthropic": ANTHROPIC_KEY}})
    # When the dashboard tests the connection with the seed's body ({provider} only)
    response = _test({"provider": "anthropic", "model": MODEL})
    # Then the seed's response shape, a success, and the provider saw the stored key
    assert response.status == 200, response.text
    body = response.json()
    assert {"success", "provider", "message", "model", "latency_ms"} <= set(body)
    assert body["success"] is True
    assert body["provider"] == "anthropic"
    assert body["model"] == MODEL
    assert body["latency_ms"] >= 0
    assert providers.seen_keys == [ANTHROPIC_KEY]
    assert providers.hosts == ["api.anthropic.com"]
    assert ANTHROPIC_KEY not in response.text


def test_a_key_in_the_body_is_tested_without_being_stored(
    stack: MotoServer, as_alice: Api, providers: FakeProviders
) -> None:
    response = _test({"provider": "openai", "apiKey": OPENAI_KEY, "model": "gpt-4o"})
    assert response.status == 200, response.text
    assert response.json()["success"] is True
    assert providers.seen_keys == [OPENAI_KEY]
    assert as_alice("GET", f"/api/llm-settings/{ALICE}").json()["hasApiKeys"]["openai"] is False


def test_a_rejected_key_is_a_scrubbed_failure(stack: MotoServer, providers: FakeProviders) -> None:
    bad = "sk-ant-api03-" + "WrongKey7" * 9
    response = _test({"provider": "anthropic", "apiKey": bad})
    assert response.status == 200
    body = response.json()
    assert body["success"] is False
    assert body["error"] == body["message"]
    assert "rejected the API key" in body["message"]
    for fragment in (bad, bad[:12], bad[-6:]):
        assert fragment not in response.text


def test_no_stored_key_is_a_400(stack: MotoServer, providers: FakeProviders) -> None:
    response = _test({"provider": "google"})
    assert response.status == 400
    assert response.json()["error"] == "No API key configured for google"
    assert providers.seen_keys == []


def test_the_request_cannot_choose_a_host(stack: MotoServer, providers: FakeProviders) -> None:
    for extra in ({"base_url": "http://169.254.169.254"}, {"baseUrl": "http://evil"}, {"endpoint": "x"}):
        response = _test({"provider": "openai", "apiKey": OPENAI_KEY, **extra})
        assert response.status == 400, extra
        assert "Extra inputs are not permitted" in response.text
    assert providers.seen_keys == []


def test_a_model_the_provider_does_not_offer_is_a_400(stack: MotoServer, providers: FakeProviders) -> None:
    response = _test({"provider": "openai", "apiKey": OPENAI_KEY, "model": "claude-3-opus-20240229"})
    assert response.status == 400
    assert "is not a openai model" in response.json()["error"]


def test_bedrock_takes_no_key(stack: MotoServer, providers: FakeProviders) -> None:
    response = _test({"provider": "bedrock", "apiKey": OPENAI_KEY})
    assert response.status == 400
    assert "AWS credentials" in response.json()["error"]


def test_connection_tests_are_rate_limited_per_user(
    stack: MotoServer, providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a limit of 2 tests per hour-long window
    monkeypatch.setenv("LLMTALLY_API_TEST_RATE_LIMIT", "2")
    monkeypatch.setenv("LLMTALLY_API_TEST_RATE_WINDOW_SECONDS", "3600")
    body = {"provider": "openai", "apiKey": OPENAI_KEY}
    # When alice tests three times
    statuses = [_test(body).status for _ in range(3)]
    # Then the third is refused with Retry-After, and the provider was called twice only
    assert statuses == [200, 200, 429]
    refused = _test(body)
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert "too many connection tests" in refused.json()["error"]
    assert len(providers.seen_keys) == 2
    # And another user has their own budget
    assert _test(body, user="bob").status == 200


def test_a_crashing_provider_layer_is_a_failed_test_not_a_500(
    stack: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.connection

    def explode(provider: Provider) -> dict[str, Any]:
        raise RuntimeError(f"boom with {OPENAI_KEY}")

    monkeypatch.setattr(api.connection, "provider_options", explode)
    response = _test({"provider": "openai", "apiKey": OPENAI_KEY})
    assert response.status == 200
    assert response.json()["success"] is False
    assert OPENAI_KEY not in response.text


def _everything_said(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    records = []
    for record in caplog.records:
        records.append(record.getMessage())
        records.append(json.dumps(record.__dict__, default=str))
    captured = capsys.readouterr()
    return "\n".join([*records, captured.out, captured.err])


def test_a_full_cycle_never_shows_the_key_anywhere(
    stack: MotoServer,
    providers: FakeProviders,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    json_logs: JsonLogs,
) -> None:
    """Store → test (stored key, body key, a bad key) → read (settings and usage) → delete: every log
    line (the structured JSON the handler writes, and every record any logger emitted) and response."""
    import logging

    caplog.set_level(logging.DEBUG)
    claims = {"sub": ALICE}
    path = f"/api/llm-settings/{ALICE}"
    bad = "sk-ant-api03-" + "NotValid9" * 9
    responses: list[Callable[[], Any]] = [
        lambda: request(
            "PUT", path, claims=claims, body={"apiKeys": {"anthropic": ANTHROPIC_KEY, "openai": OPENAI_KEY}}
        ),
        lambda: request("POST", f"{path}/test", claims=claims, body={"provider": "anthropic"}),
        lambda: request("POST", f"{path}/test", claims=claims, body={"provider": "openai", "apiKey": OPENAI_KEY}),
        lambda: request("POST", f"{path}/test", claims=claims, body={"provider": "anthropic", "apiKey": bad}),
        lambda: request("PUT", path, claims=claims, body={"apiKeys": {"anthropic": ANTHROPIC_KEY, "google": " "}}),
        lambda: request("PUT", path, claims=claims, body={"apiKeys": {"anthropic": ANTHROPIC_KEY}, "x": 1}),
        lambda: request("GET", path, claims=claims),
        lambda: request("PUT", path, claims={"sub": "mallory"}, body={"apiKeys": {"anthropic": ANTHROPIC_KEY}}),
        lambda: request("GET", f"/api/llm-usage/{ALICE}/summary", claims=claims, query={"tz": "Asia/Kolkata"}),
        lambda: request("GET", f"/api/llm-usage/{ALICE}/daily", claims=claims, query={"days": "7"}),
        lambda: request("GET", f"/api/llm-usage/{ALICE}", claims=claims, query={"limit": "5"}),
        lambda: request("GET", f"/api/llm-usage/{ALICE}", claims=claims, query={"format": "csv"}),
        lambda: request("GET", f"/api/llm-usage/{ALICE}", claims=claims, query={"cursor": ANTHROPIC_KEY}),
        lambda: request("GET", f"/api/llm-usage/{ALICE}/summary", claims=claims, query={"tz": OPENAI_KEY}),
        lambda: request("DELETE", f"{path}/keys/anthropic", claims=claims),
    ]
    texts = []
    for send in responses:
        response = send()
        assert response.status < 500, response.text
        texts.append(json.dumps(response.headers) + response.text)
    assert providers.seen_keys == [ANTHROPIC_KEY, OPENAI_KEY, bad]
    said = _everything_said(caplog, capsys) + json_logs.text + "\n".join(texts)
    assert caplog.records, "the cycle logged nothing: the test would prove nothing"
    # The structured log: JSON lines, each with API Gateway's request id as the correlation id
    lines = json_logs.lines()
    assert len([line for line in lines if line["message"] == "request handled"]) == len(responses)
    assert all(line.get("correlation_id", "").startswith("req-") for line in lines)
    assert {"llmtally.api", "mantissa-log"} <= {line["name"] for line in lines}
    assert "arn:aws:secretsmanager" not in said  # nor a secret's ARN
    for secret in (ANTHROPIC_KEY, OPENAI_KEY, bad):
        for fragment in (secret, secret[:14], secret[-8:]):
            assert fragment not in said, f"key material found: {fragment[:4]}…"

"""Every bad input is a 4xx with a message: never a 500, never an echo of the input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE, Api
from tests.support.apigw import request

pytestmark = pytest.mark.integration

GOOD_PREFS = {
    "defaultProvider": "anthropic",
    "queryModel": "claude-3-5-sonnet-20241022",
    "detectionModel": "claude-3-5-sonnet-20241022",
}
SECRETISH = "sk-ant-api03-" + "Echo" * 20

BAD_PUT_BODIES: list[tuple[str, Any, str]] = [
    ("empty object", {}, "nothing to update"),
    ("array", [1, 2], "body"),
    ("string", "hello", "body"),
    ("null", None, "body"),
    ("unknown top-level field", {"preferences": GOOD_PREFS, "extra": 1}, "extra"),
    ("unknown preference", {"preferences": {**GOOD_PREFS, "colour": "red"}}, "colour"),
    ("unknown provider", {"preferences": {**GOOD_PREFS, "defaultProvider": "mistral"}}, "defaultProvider"),
    ("model of another provider", {"preferences": {**GOOD_PREFS, "queryModel": "gpt-4o"}}, "not a anthropic model"),
    ("invented model", {"preferences": {**GOOD_PREFS, "detectionModel": "claude-99"}}, "detectionModel"),
    ("missing required", {"preferences": {"defaultProvider": "anthropic"}}, "queryModel"),
    ("maxTokens zero", {"preferences": {**GOOD_PREFS, "maxTokens": 0}}, "maxTokens"),
    ("maxTokens huge", {"preferences": {**GOOD_PREFS, "maxTokens": 10**9}}, "maxTokens"),
    ("maxTokens as string", {"preferences": {**GOOD_PREFS, "maxTokens": "2000"}}, "maxTokens"),
    ("maxTokens fractional", {"preferences": {**GOOD_PREFS, "maxTokens": 2000.5}}, "maxTokens"),
    ("maxTokens bool", {"preferences": {**GOOD_PREFS, "maxTokens": True}}, "maxTokens"),
    ("temperature negative", {"preferences": {**GOOD_PREFS, "temperature": -0.1}}, "temperature"),
    ("temperature above anthropic's 1", {"preferences": {**GOOD_PREFS, "temperature": 1.2}}, "temperature"),
    ("temperature above 2", {"preferences": {**GOOD_PREFS, "temperature": 2.5}}, "temperature"),
    ("temperature string", {"preferences": {**GOOD_PREFS, "temperature": "0.5"}}, "temperature"),
    ("boolean as string", {"preferences": {**GOOD_PREFS, "enableCaching": "yes"}}, "enableCaching"),
    ("boolean as int", {"preferences": {**GOOD_PREFS, "trackUsage": 1}}, "trackUsage"),
    ("key of an unknown provider", {"apiKeys": {"mistral": SECRETISH}}, "mistral"),
    ("empty key", {"apiKeys": {"anthropic": ""}}, "anthropic"),
    ("whitespace key", {"apiKeys": {"openai": "   \t\n"}}, "empty or whitespace"),
    ("key too short", {"apiKeys": {"openai": "sk-1"}}, "at least"),
    ("key too long", {"apiKeys": {"google": "A" * 600}}, "google"),
    ("key with a space inside", {"apiKeys": {"google": "AIza abc def ghi jkl"}}, "printable ASCII"),
    ("key not a string", {"apiKeys": {"anthropic": 12345678901}}, "anthropic"),
    ("bedrock key", {"apiKeys": {"bedrock": SECRETISH}}, "bedrock takes no API key"),
    ("apiKeys not an object", {"apiKeys": [SECRETISH]}, "apiKeys"),
]


@pytest.mark.parametrize(("case", "body", "mentions"), BAD_PUT_BODIES, ids=[c for c, _, _ in BAD_PUT_BODIES])
def test_bad_settings_bodies_are_400_with_a_message(
    stack: MotoServer, as_alice: Api, case: str, body: Any, mentions: str
) -> None:
    response = as_alice("PUT", f"/api/llm-settings/{ALICE}", raw_body=__import__("json").dumps(body))
    assert response.status == 400, response.text
    message = response.json()["error"]
    assert mentions in response.text, message
    # The input is never echoed back (it may be a key)
    assert SECRETISH not in response.text
    assert all(set(detail) == {"loc", "msg"} for detail in response.json().get("details", []))


@pytest.mark.parametrize(
    "raw",
    ["{", '{"preferences": }', "not json", '{"a": 1,}', "\x00\x01", '{"apiKeys": {"openai": "sk-' + "x" * 30],
    ids=["open brace", "missing value", "text", "trailing comma", "binary", "unterminated key"],
)
def test_malformed_json_is_400(stack: MotoServer, as_alice: Api, raw: str) -> None:
    response = as_alice("PUT", f"/api/llm-settings/{ALICE}", raw_body=raw)
    assert response.status == 400
    assert response.json()["error"] == "body: the body is not valid JSON"
    assert "sk-xxx" not in response.text


def test_an_empty_body_is_400(stack: MotoServer, as_alice: Api) -> None:
    response = as_alice("PUT", f"/api/llm-settings/{ALICE}")
    assert response.status == 400
    assert "body" in response.json()["error"]


def test_a_base64_body_is_decoded(stack: MotoServer, as_alice: Api) -> None:
    response = as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"preferences": GOOD_PREFS}, base64_body=True)
    assert response.status == 200, response.text


def test_an_invalid_base64_body_is_400(stack: MotoServer) -> None:
    from tests.support.apigw import call, http_event

    event = http_event("PUT", f"/api/llm-settings/{ALICE}", claims={"sub": ALICE}, raw_body="%%%not-base64")
    event["isBase64Encoded"] = True
    response = call(event)
    assert 400 <= response.status < 500, response.text


def test_a_non_utf8_body_is_400(stack: MotoServer) -> None:
    from tests.support.apigw import call, http_event

    event = http_event("PUT", f"/api/llm-settings/{ALICE}", claims={"sub": ALICE}, raw_body=b'{"a": "\xff\xfe"}')
    event["body"] = __import__("base64").b64encode(b'{"preferences": "\xff\xfe"}').decode()
    event["isBase64Encoded"] = True
    response = call(event)
    assert 400 <= response.status < 500, response.text


def test_another_content_type_is_415(stack: MotoServer, as_alice: Api) -> None:
    response = as_alice("PUT", f"/api/llm-settings/{ALICE}", raw_body="a=b", headers={"content-type": "text/plain"})
    assert response.status == 415
    assert response.json()["error"] == "the body must be application/json"


def test_an_oversized_body_is_413_before_anything_is_parsed(stack: MotoServer, as_alice: Api) -> None:
    huge = '{"preferences": {"defaultProvider": "' + "a" * 20_000 + '"}}'
    response = as_alice("PUT", f"/api/llm-settings/{ALICE}", raw_body=huge)
    assert response.status == 413
    assert "larger than 16384 bytes" in response.json()["error"]
    # The limit counts decoded bytes: a base64 body is measured after decoding
    ok = {"preferences": GOOD_PREFS, "apiKeys": {"openai": "sk-proj-" + "k" * 40}}
    assert as_alice("PUT", f"/api/llm-settings/{ALICE}", body=ok, base64_body=True).status == 200


BAD_USER_IDS = [
    "..%2Fadmin",
    "..%2F..%2Fother%2Fllm%2Fopenai",
    "%2E%2E%2Fadmin",
    "a..b",
    "..",
    ".hidden",
    "-dash-first",
    "x" * 129,
    "alice%2Fllm%2Fopenai",
    "al%00ice",
    "al ice",
    "%C3%A9lodie",
    "a%252F..",
]
TENANT_ROUTES = [
    ("GET", "/api/llm-settings/{u}", None),
    ("PUT", "/api/llm-settings/{u}", {"apiKeys": {"openai": "sk-proj-" + "k" * 40}}),
    ("DELETE", "/api/llm-settings/{u}/keys/openai", None),
    ("POST", "/api/llm-settings/{u}/test", {"provider": "openai"}),
]


@pytest.mark.parametrize("user_id", BAD_USER_IDS)
@pytest.mark.parametrize(("method", "path", "body"), TENANT_ROUTES, ids=[f"{m} {p}" for m, p, _ in TENANT_ROUTES])
def test_an_invalid_user_id_is_400_on_every_route(
    stack: MotoServer, user_id: str, method: str, path: str, body: Any
) -> None:
    # Even an admin, who may act for anyone, cannot reach outside the tenant's secret names
    admin = {"sub": "ops", "cognito:groups": "llmtally-admin"}
    response = request(method, path.format(u=user_id), claims=admin, body=body)
    assert response.status in (400, 404), response.text
    assert response.json()["error"]
    from typing import Any as _Any

    client: _Any = stack.client("secretsmanager")
    assert client.list_secrets()["SecretList"] == []


def test_an_unknown_provider_in_the_path_is_400(stack: MotoServer, as_alice: Api) -> None:
    response = as_alice("DELETE", f"/api/llm-settings/{ALICE}/keys/mistral")
    assert response.status == 400
    assert "provider" in response.json()["error"]


def test_an_unknown_route_is_404_and_a_wrong_method_is_4xx(stack: MotoServer, as_alice: Api) -> None:
    assert as_alice("GET", "/api/nope").status == 404
    assert 400 <= as_alice("PATCH", f"/api/llm-settings/{ALICE}", body={}).status < 500


BODY_ROUTES = [
    ("PUT", f"/api/llm-settings/{ALICE}"),
    ("POST", f"/api/llm-settings/{ALICE}/test"),
    ("PUT", f"/api/llm-settings/{ALICE}/budget"),
]
#: Bodies that made Python's json raise something other than JSONDecodeError (a 500 before).
PARSER_BOMBS = [
    ("5,000-digit integer", '{"preferences": {"maxTokens": ' + "9" * 5000 + "}}", "a number longer than 64"),
    ("5,000-digit integer alone", "9" * 5000, "a number longer than 64"),
    ("5,000-digit fraction", '{"monthlyLimitUsd": 0.' + "1" * 5000 + "}", "a number longer than 64"),
    ("5,000 nested arrays", "[" * 5000 + "]" * 5000, "nested deeper than 32"),
    ("3,000 nested objects", '{"":' * 3000 + "1" + "}" * 3000, "nested deeper than 32"),
]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
@pytest.mark.parametrize(("case", "raw", "mentions"), PARSER_BOMBS, ids=[c for c, _, _ in PARSER_BOMBS])
def test_a_body_beyond_the_parser_bounds_is_400_naming_the_bound(
    stack: MotoServer, as_alice: Api, method: str, path: str, case: str, raw: str, mentions: str
) -> None:
    # Given a body within the size limit that Python's json cannot parse safely
    assert len(raw.encode()) <= 16 * 1024
    # When it is sent to a route that reads a body
    response = as_alice(method, path, raw_body=raw)
    # Then it is a 400 that says which bound, not a 500
    assert response.status == 400, response.text
    assert mentions in response.json()["error"]
    assert "9999" not in response.text


def test_ten_thousand_nested_arrays_are_400_under_a_raised_body_limit(
    stack: MotoServer, as_alice: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import deps

    # Given a deployment that accepts bodies of 64 KiB
    monkeypatch.setenv("LLMTALLY_API_MAX_BODY_BYTES", str(64 * 1024))
    deps.reset()
    # When 10,000 nested arrays (20,000 bytes) are sent
    response = as_alice("PUT", f"/api/llm-settings/{ALICE}", raw_body="[" * 10_000 + "]" * 10_000)
    # Then the depth bound refuses them before the parser recurses
    assert response.status == 400, response.text
    assert "nested deeper than 32 levels" in response.json()["error"]


def test_brackets_and_digits_inside_strings_are_not_counted(stack: MotoServer, as_alice: Api) -> None:
    # Given a valid body whose string values hold many brackets and a long digit run
    prefs = {**GOOD_PREFS}
    body = {"preferences": prefs, "apiKeys": {"openai": "sk-proj-" + "[{" * 40 + "9" * 100}}
    # When it is stored
    response = as_alice("PUT", f"/api/llm-settings/{ALICE}", body=body)
    # Then the bounds did not mistake string content for structure
    assert response.status == 200, response.text

"""The reconciliation routes: admin keys are write-only, other tenants are refused, ranges are checked."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MotoServer
from tests.integration.api.conftest import Api, JsonLogs
from tests.support.apigw import request

pytestmark = pytest.mark.integration

ADMIN_KEY = "sk-admin-ROUTE-TEST-0123456789abcdefghij"


def test_an_admin_key_is_stored_and_never_returned(stack: MotoServer, as_alice: Api, json_logs: JsonLogs) -> None:
    # Given no admin key
    assert json.loads(as_alice("GET", "/api/llm-settings/alice/billing-keys").text)["hasAdminKeys"] == {
        "openai": False,
        "anthropic": False,
    }
    # When alice stores her OpenAI admin key
    stored = as_alice("PUT", "/api/llm-settings/alice/billing-keys", body={"provider": "openai", "adminKey": ADMIN_KEY})
    # Then the answer says it is stored, without the key, and the secret is named for her billing
    assert stored.status == 200
    assert json.loads(stored.text)["hasAdminKeys"] == {"openai": True, "anthropic": False}
    names = [s["Name"] for s in stack.client("secretsmanager").list_secrets()["SecretList"]]  # type: ignore[attr-defined]
    assert names == ["mantissa-log/users/alice/billing/openai"]
    # When she deletes it, twice
    first = as_alice("DELETE", "/api/llm-settings/alice/billing-keys/openai")
    second = as_alice("DELETE", "/api/llm-settings/alice/billing-keys/openai")
    # Then the first deleted it and the second found nothing
    assert json.loads(first.text)["deleted"] is True
    assert json.loads(second.text)["deleted"] is False
    # And the key appears in no response and no log line
    for text in (stored.text, first.text, second.text, json_logs.text):
        assert ADMIN_KEY not in text


def test_a_project_key_is_refused_with_a_message(stack: MotoServer, as_alice: Api) -> None:
    project_key = "sk-proj-NOTANADMINKEY-0123456789abcdef"
    response = as_alice(
        "PUT", "/api/llm-settings/alice/billing-keys", body={"provider": "openai", "adminKey": project_key}
    )
    assert response.status == 400
    assert "sk-admin-" in json.loads(response.text)["error"]
    assert project_key not in response.text


def test_another_tenant_is_refused(stack: MotoServer) -> None:
    for method, path in (
        ("GET", "/api/llm-usage/alice/reconciliation"),
        ("GET", "/api/llm-settings/alice/billing-keys"),
        ("DELETE", "/api/llm-settings/alice/billing-keys/openai"),
    ):
        assert request(method, path, claims={"sub": "bob"}).status == 403


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"start": "2026-11-30", "end": "2026-11-01"}, "start: must not be after end"),
        ({"start": "2026-01-01", "end": "2026-12-31"}, "more than 93 days"),
        ({"start": "yesterday"}, "start: not a date"),
        ({"tz": "UTC"}, "unknown query parameter 'tz'"),
    ],
)
def test_bad_ranges_are_400s(stack: MotoServer, as_alice: Api, query: dict[str, str], message: str) -> None:
    response = as_alice("GET", "/api/llm-usage/alice/reconciliation", query=query)
    assert response.status == 400
    assert message in json.loads(response.text)["error"]


def test_an_empty_range_answers_zeros(stack: MotoServer, as_alice: Api) -> None:
    body = json.loads(as_alice("GET", "/api/llm-usage/alice/reconciliation", query={"end": "2026-11-30"}).text)
    assert body["start"] == "2026-11-01"
    assert body["rows"] == []
    assert body["totals"]["billed_cost_usd"] == 0
    assert body["totals"]["drift_percent"] is None

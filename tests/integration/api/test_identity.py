"""Tenant isolation on every {userId} route: 401 without identity, 403 for another tenant, admins allowed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import MotoServer
from tests.integration.api.conftest import ADMIN_CLAIMS, ALICE
from tests.support.apigw import request

pytestmark = pytest.mark.integration

OPENAI_KEY = "sk-proj-" + "T3nantKey" * 7

# (method, path under /api, body, query): one valid request per {userId} route.
TENANT_ROUTES: list[tuple[str, str, Any, dict[str, str] | None]] = [
    ("GET", "/api/llm-settings/{u}", None, None),
    ("PUT", "/api/llm-settings/{u}", {"apiKeys": {"openai": OPENAI_KEY}}, None),
    ("DELETE", "/api/llm-settings/{u}/keys/openai", None, None),
    ("POST", "/api/llm-settings/{u}/test", {"provider": "openai", "apiKey": OPENAI_KEY}, None),
    ("GET", "/api/llm-usage/{u}/summary", None, {"tz": "Asia/Kolkata"}),
    ("GET", "/api/llm-usage/{u}/daily", None, {"days": "7"}),
    ("GET", "/api/llm-usage/{u}", None, {"limit": "5"}),
    ("GET", "/api/llm-usage/{u}", None, {"format": "csv"}),
]
ROUTE_IDS = [f"{m} {p}{' ' + str(q) if q else ''}" for m, p, _, q in TENANT_ROUTES]


@pytest.fixture(autouse=True)
def _no_provider_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection test must not reach a provider: answer from a stub at the factory's seam."""
    import httpx2

    import api.connection

    def options(provider: object) -> dict[str, Any]:
        def handler(req: httpx2.Request) -> httpx2.Response:
            return httpx2.Response(200, json={"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "x"})

        return {"http_client": httpx2.Client(transport=httpx2.MockTransport(handler))}

    monkeypatch.setattr(api.connection, "provider_options", options)


def _send(
    route: tuple[str, str, Any, dict[str, str] | None], user: str, claims: dict[str, Any] | None, **kw: Any
) -> Any:
    method, path, body, query = route
    return request(method, path.format(u=user), claims=claims, body=body, query=query, **kw)


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=ROUTE_IDS)
def test_no_identity_is_401(stack: MotoServer, route: Any) -> None:
    response = _send(route, ALICE, None)
    assert response.status == 401
    assert response.json()["error"].startswith("authentication required")


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=ROUTE_IDS)
def test_claims_without_the_identity_claim_are_401(stack: MotoServer, route: Any) -> None:
    assert _send(route, ALICE, {"email": "alice@example.com"}).status == 401


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=ROUTE_IDS)
def test_another_tenant_is_403(stack: MotoServer, route: Any) -> None:
    response = _send(route, ALICE, {"sub": "mallory"})
    assert response.status == 403
    assert response.json() == {"error": "the caller may not access another user's data"}


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=ROUTE_IDS)
def test_the_tenant_itself_is_allowed(stack: MotoServer, route: Any) -> None:
    assert _send(route, ALICE, {"sub": ALICE}).status == 200


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=ROUTE_IDS)
def test_an_admin_may_act_for_any_tenant(stack: MotoServer, route: Any) -> None:
    assert _send(route, ALICE, ADMIN_CLAIMS).status == 200


@pytest.mark.parametrize(
    "groups",
    ["[users llmtally-admin]", '["llmtally-admin"]', "llmtally-admin,users", ["llmtally-admin"], "llmtally-admin"],
)
def test_the_admin_group_is_read_in_every_form_api_gateway_passes(stack: MotoServer, groups: Any) -> None:
    response = request("GET", f"/api/llm-settings/{ALICE}", claims={"sub": "ops", "cognito:groups": groups})
    assert response.status == 200


@pytest.mark.parametrize("groups", ["[users]", "llmtally-admins", "not-llmtally-admin", ""])
def test_other_groups_are_not_admin(stack: MotoServer, groups: str) -> None:
    response = request("GET", f"/api/llm-settings/{ALICE}", claims={"sub": "ops", "cognito:groups": groups})
    assert response.status == 403


def test_the_claim_names_are_configurable(stack: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_API_IDENTITY_CLAIM", "username")
    monkeypatch.setenv("LLMTALLY_API_ADMIN_CLAIM", "roles")
    monkeypatch.setenv("LLMTALLY_API_ADMIN_GROUP", "billing-admin")
    path = f"/api/llm-settings/{ALICE}"
    assert request("GET", path, claims={"sub": ALICE}).status == 401
    assert request("GET", path, claims={"username": ALICE}).status == 200
    assert request("GET", path, claims={"username": "ops", "roles": "[billing-admin]"}).status == 200
    assert request("GET", path, claims={"username": "ops", "cognito:groups": "llmtally-admin"}).status == 403


def test_the_local_identity_header_works_only_when_enabled_and_on_loopback(
    stack: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/api/llm-settings/{ALICE}"
    header = {"x-llmtally-local-user": ALICE}
    # Disabled (the default): the header is ignored even from loopback
    assert request("GET", path, headers=header, source_ip="127.0.0.1").status == 401
    monkeypatch.setenv("LLMTALLY_API_LOCAL_IDENTITY", "true")
    from api import deps

    deps.reset()
    # Enabled: honoured from IPv4 and IPv6 loopback only
    assert request("GET", path, headers=header, source_ip="127.0.0.1").status == 200
    assert request("GET", path, headers=header, source_ip="::1").status == 200
    assert request("GET", path, headers=header, source_ip="203.0.113.9").status == 401
    assert request("GET", path, headers=header, source_ip="10.0.0.1").status == 401
    # It names a tenant like a JWT does: another user's data is still 403
    assert request("GET", path, headers={"x-llmtally-local-user": "bob"}, source_ip="127.0.0.1").status == 403
    admin = {"x-llmtally-local-user": "ops", "x-llmtally-local-admin": "true"}
    assert request("GET", path, headers=admin, source_ip="127.0.0.1").status == 200


def test_the_model_catalog_needs_an_identity_but_no_tenant(stack: MotoServer) -> None:
    assert request("GET", "/api/llm-models").status == 401
    assert request("GET", "/api/llm-models", claims={"sub": "anyone"}).status == 200


def test_the_openapi_document_and_docs_are_public(stack: MotoServer) -> None:
    assert request("GET", "/api/openapi.json").status == 200
    assert request("GET", "/api/docs").status == 200


def test_the_local_stack_bridge_events_are_understood(stack: MotoServer) -> None:
    """The local stack's HTTP bridge injects the local user's claims; the handler reads them as on AWS."""
    from llmtally.local.http import http_api_event
    from tests.support.apigw import call

    def event(user: str, claims: dict[str, str] | None) -> dict[str, Any]:
        built: dict[str, Any] = http_api_event(
            method="GET",
            raw_path=f"/api/llm-settings/{user}",
            raw_query="",
            headers={"accept": "application/json"},
            body=b"",
            claims=claims,
        )
        return built

    assert call(event("demo-user", {"sub": "demo-user"})).status == 200
    assert call(event("someone-else", {"sub": "demo-user"})).status == 403
    assert call(event("demo-user", None)).status == 401

"""Schemathesis over the served OpenAPI document, against the handler in-process (no network).

Every generated request becomes an API Gateway v2 event (authenticated as the path's user, so the
routes' logic runs, not only the 401); the handler's answer is checked for: no 5xx, a documented
status code, a documented content type, and a body that matches its response schema. Examples are
bounded (`FUZZ_EXAMPLES`, per operation) so CI stays fast.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NOT_SET

from tests.conftest import MotoServer
from tests.support.apigw import call, http_event

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = int(os.environ.get("LLMTALLY_FUZZ_EXAMPLES", "40"))


def _document() -> dict[str, Any]:
    from api.handler import openapi_document

    return openapi_document()


schema = schemathesis.openapi.from_dict(_document())


class _BedrockControl:
    """Answers Bedrock's model lookups (the connection test) without AWS."""

    def get_foundation_model(self, **kwargs: Any) -> dict[str, Any]:
        return {"modelDetails": {"modelId": kwargs.get("modelIdentifier")}}

    def get_inference_profile(self, **kwargs: Any) -> dict[str, Any]:
        return {"inferenceProfileId": kwargs.get("inferenceProfileIdentifier")}


def _provider_options(provider: Any) -> dict[str, Any]:
    if str(provider) == "bedrock":
        return {"control_client": _BedrockControl()}

    def handler(request: httpx2.Request) -> httpx2.Response:
        model = request.url.path.rsplit("/", 1)[-1]
        return httpx2.Response(
            200,
            json={
                "id": model,
                "type": "model",
                "object": "model",
                "display_name": model,
                "created": 1,
                "created_at": "2025-01-01T00:00:00Z",
                "owned_by": "x",
                "name": f"models/{model}",
            },
        )

    return {"http_client": httpx2.Client(transport=httpx2.MockTransport(handler))}


@pytest.fixture
def fuzz_stack(stack: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    import api.connection

    monkeypatch.setattr(api.connection, "provider_options", _provider_options)
    monkeypatch.setenv("LLMTALLY_API_TEST_RATE_LIMIT", "1000")
    return stack


def _event_for(case: schemathesis.Case[Any]) -> dict[str, Any]:
    path = case.formatted_path
    user = (case.path_parameters or {}).get("userId")
    claims = {"sub": str(user)} if user is not None else {"sub": "fuzzer"}
    query = urlencode(case.query or {}, doseq=True)
    headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
    raw_body: str | None = None
    if isinstance(case.body, bytes):
        raw_body = case.body.decode("utf-8", errors="surrogateescape")
    elif case.body is not NOT_SET:
        raw_body = json.dumps(case.body)
    return http_event(case.method, path, claims=claims, query=query, raw_body=raw_body, headers=headers)


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_5xx_and_responses_match_the_document(case: schemathesis.Case[Any], fuzz_stack: MotoServer) -> None:
    event = _event_for(case)
    answer = call(event)
    # Checked here rather than with schemathesis' not_a_server_error, whose 5xx probe resends over the network.
    assert answer.status < 500, f"{case.method} {event['rawPath']}?{event['rawQueryString']} -> {answer.text}"
    url = f"https://api.example.com{event['rawPath']}" + (
        f"?{event['rawQueryString']}" if event["rawQueryString"] else ""
    )
    response = httpx2.Response(
        answer.status,
        headers=answer.headers,
        content=answer.text.encode(),
        request=httpx2.Request(case.method, url),
    )
    response.elapsed = timedelta(0)  # in-process: no wire time
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )

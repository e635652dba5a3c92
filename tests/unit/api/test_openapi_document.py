"""The served OpenAPI document: every route, 400 (not 422) for validation, one error shape."""

from __future__ import annotations

import json
from typing import Any

from tests.support.apigw import request


def _document() -> dict[str, Any]:
    response = request("GET", "/api/openapi.json")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    document: dict[str, Any] = json.loads(response.text)
    return document


def test_every_route_is_documented() -> None:
    paths = _document()["paths"]
    expected = {
        "/api/llm-settings/{userId}": {"get", "put"},
        "/api/llm-settings/{userId}/keys/{provider}": {"delete"},
        "/api/llm-settings/{userId}/test": {"post"},
        "/api/llm-models": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path


def test_validation_errors_are_documented_as_400_with_the_error_shape() -> None:
    document = _document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            assert "503" in responses
            if operation.get("parameters") or operation.get("requestBody"):
                assert responses["400"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"
                }
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "ErrorResponse" in document["components"]["schemas"]


def test_keys_are_write_only_in_the_document() -> None:
    schemas = _document()["components"]["schemas"]
    key = schemas["ApiKeys"]["properties"]["anthropic"]["anyOf"][0]
    assert key["writeOnly"] is True
    assert key["format"] == "password"


def test_money_is_a_number_in_the_document() -> None:
    pricing = _document()["components"]["schemas"]["ModelPricing"]["properties"]["input"]["anyOf"][0]
    assert pricing["type"] == "number"


def test_the_swagger_ui_works_offline() -> None:
    response = request("GET", "/api/docs")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html"
    html = response.text
    # Assets are inline: no <script src> or stylesheet link to a CDN
    assert "<script src=" not in html
    assert "rel='stylesheet'" not in html
    assert '"/api/llm-settings/{userId}"' in html

"""Response helpers: JSON with exact money (`llmtally.api.jsonout`), and the one error body shape."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from llmtally.api import jsonout

JSON = "application/json"
#: Every response: never cached by a browser or a proxy (they carry tenant data), never sniffed.
SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=JSON,
        body=jsonout.dumps(body),
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def error_body(message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return body


def error_response(
    status: int, message: str, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    return json_response(error_body(message, details), status, headers)

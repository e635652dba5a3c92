"""API Gateway HTTP API (payload v2) events for the API handler: the one helper every API test uses.

`http_event("GET", "/api/llm-settings/alice", claims={"sub": "alice"})` builds the event API
Gateway sends after its JWT authorizer accepted a token with those claims; `claims=None` is a
request with no identity. `call(...)` runs the handler and returns the status, headers and body.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode


def http_event(
    method: str,
    path: str,
    *,
    claims: dict[str, Any] | None = None,
    query: dict[str, str] | str | None = None,
    body: Any = None,
    raw_body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    source_ip: str = "203.0.113.10",
    base64_body: bool = False,
) -> dict[str, Any]:
    """The v2 event for one request. `body` is JSON-encoded; `raw_body` is sent as is."""
    raw_query = urlencode(query) if isinstance(query, dict) else query or ""
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    all_headers = {"content-type": "application/json", "user-agent": "pytest", "host": "api.example.com"}
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    text: str | None
    if raw_body is not None:
        text = raw_body.decode("utf-8", errors="surrogateescape") if isinstance(raw_body, bytes) else raw_body
    elif body is not None:
        text = json.dumps(body)
    else:
        text = None
    if base64_body and text is not None:
        text = base64.b64encode(text.encode("utf-8", errors="surrogateescape")).decode()
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "api-id",
        "domainName": "api.example.com",
        "domainPrefix": "api",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": "pytest",
        },
        "requestId": "req-" + quote(path, safe="")[:20],
        "routeKey": "$default",
        "stage": "$default",
        "time": "28/Nov/2026:12:00:00 +0000",
        "timeEpoch": 1795867200000,
    }
    if claims is not None:
        request_context["authorizer"] = {
            "jwt": {"claims": dict(claims.items()), "scopes": None},
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": request_context,
        "isBase64Encoded": base64_body,
    }
    if params:
        event["queryStringParameters"] = params
    if text is not None:
        event["body"] = text
    return event


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        from decimal import Decimal

        return json.loads(self.text, parse_float=Decimal)


@dataclass(frozen=True)
class FakeLambdaContext:
    """What Powertools reads from a Lambda context."""

    function_name: str = "llmtally-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:llmtally-api"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    log_group_name: str = "/aws/lambda/llmtally-api"
    log_stream_name: str = "2026/11/28/[$LATEST]0"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def call(event: dict[str, Any]) -> ApiResponse:
    from api.handler import lambda_handler

    raw = lambda_handler(event, FakeLambdaContext())
    body = raw.get("body") or ""
    if raw.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return ApiResponse(status=raw["statusCode"], headers=dict(raw.get("headers") or {}), text=body)


def request(method: str, path: str, **kwargs: Any) -> ApiResponse:
    return call(http_event(method, path, **kwargs))

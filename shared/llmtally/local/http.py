"""HTTP on loopback → the API handler as API Gateway HTTP API (payload v2) events; the dashboard at `/`.

Identity: API Gateway's JWT authorizer puts the token's claims in
`requestContext.authorizer.jwt.claims`. Locally there is no token: every request carries the
*local identity*'s claims (`--user`, default `demo-user`). That is safe only because the server
binds to loopback unless asked otherwise (and then it warns).
"""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from llmtally.local.lambda_events import LambdaContext

logger = logging.getLogger("llmtally.local")
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
MAX_BODY_BYTES = 1_048_576  # API Gateway HTTP APIs refuse larger payloads too (10 MB there; 1 MB is plenty)
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "image/svg+xml")


def http_api_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, str],
    body: bytes,
    claims: dict[str, str] | None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The API Gateway HTTP API v2 event for one request (what the Lambda receives on AWS)."""
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value  # v2 joins repeats with commas
    content_type = headers.get("content-type", "")
    # A compressed body (an OTLP exporter's gzip JSON) is binary whatever its media type.
    encoded = headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
    is_text = not body or (content_type.startswith(_TEXT_TYPES) and not encoded)
    now = time.time()
    context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": headers.get("host", "127.0.0.1"),
        "domainPrefix": "local",
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": not is_text,
    }
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = body.decode("utf-8", errors="replace") if is_text else base64.b64encode(body).decode()
    return event


class LocalHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        api_handler: Handler,
        *,
        claims: dict[str, str],
        web_root: Path | None,
        runtime_config: dict[str, Any],
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.api_handler = api_handler
        self.claims = claims
        self.web_root = web_root
        self.runtime_config = runtime_config
        # One invocation at a time, as in one Lambda container: Powertools keeps per-request state
        # on the module-level resolver, so concurrent calls would mix their route arguments.
        self.api_lock = threading.Lock()


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/api/") or url.path == "/api":
            self._api(url.path, url.query)
        elif url.path == "/config.json":
            self._send(HTTPStatus.OK, json.dumps(self.server.runtime_config).encode(), "application/json")
        else:
            self._static(url.path)

    def _api(self, path: str, query: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b'{"message":"Request body too large"}', "application/json")
            return
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        event = http_api_event(
            method=self.command,
            raw_path=path,
            raw_query=query,
            headers=headers,
            body=body,
            claims=self.server.claims,
            source_ip=self.client_address[0],
        )
        try:
            with self.server.api_lock:
                result = self.server.api_handler(event, LambdaContext.for_function("llmtally-api"))
        except Exception:
            # On AWS this is API Gateway's 500 for a crashed integration; the handler should never get here.
            logger.exception("api handler raised")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b'{"message":"Internal Server Error"}', "application/json")
            return
        status = int(result.get("statusCode", 200))
        raw = result.get("body") or ""
        payload = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        out_headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            out_headers[str(name)] = ",".join(str(v) for v in values)
        content_type = out_headers.pop("Content-Type", out_headers.pop("content-type", "application/json"))
        self._send(status, payload, content_type, out_headers, cookies=result.get("cookies") or [])

    def _static(self, path: str) -> None:
        root = self.server.web_root
        if root is None:
            message = (
                "<!doctype html><title>llmtally</title><h1>llmtally local stack</h1>"
                "<p>The dashboard is not built (run <code>make run</code>, which builds <code>web/</code>). "
                'The API answers at <a href="/api/openapi.json">/api/openapi.json</a>.</p>'
            )
            self._send(HTTPStatus.OK, message.encode(), "text/html; charset=utf-8")
            return
        candidate = (root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            candidate = root / "index.html"  # single-page app: unknown paths are the app's routes
        content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
        cache = "no-cache" if candidate.name == "index.html" else "public, max-age=31536000, immutable"
        self._send(HTTPStatus.OK, candidate.read_bytes(), content_type, {"Cache-Control": cache})

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        cookies: list[str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                self.send_header(name, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

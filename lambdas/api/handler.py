"""The API Lambda: Powertools' `APIGatewayHttpResolver` with validation, one `Router` per area.

`lambda_handler` is thin: refuse an oversized body, then `app.resolve(event, context)`. Logs are
Powertools' structured JSON (`llmtally.observability`) with API Gateway's request id as the
correlation id; the event itself is never logged (it may hold a key), whatever
POWERTOOLS_LOGGER_LOG_EVENT says.
The OpenAPI document is served at GET /api/openapi.json and a Swagger UI (assets bundled with
Powertools, so it works offline) at GET /api/docs. Locally they are open like every route;
deployed, the JWT authorizer guards them too (one rule, no exception: every route needs a token).
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from api import errors, openapi
from api.deps import api_settings
from api.responses import SECURITY_HEADERS, error_body, json_response
from api.routes import budgets, ingest, ingest_keys, insights, models, reconciliation, settings, usage
from llmtally import safejson
from llmtally.api import jsonout
from llmtally.api.ingest import INGEST_PATHS, OTLP_TRACES_PATH, get_ingest_settings
from llmtally.metric_names import API_SERVER_ERRORS
from llmtally.observability import logger, metrics, tracer

# Bodies are parsed with bounded depth and number length: a 5,000-digit integer or 10,000 nested
# arrays is a 400 (as bad JSON), never Python's ValueError/RecursionError and a 500.
app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=safejson.loads)

app.include_router(usage.router)
app.include_router(settings.router)
app.include_router(models.router)
app.include_router(budgets.router)
app.include_router(insights.router)
app.include_router(reconciliation.router)
app.include_router(ingest_keys.router)
app.include_router(ingest.router)
errors.register(app)


@cache
def openapi_document() -> dict[str, Any]:
    raw = app.get_openapi_json_schema(title=openapi.TITLE, version=openapi.VERSION, description=openapi.DESCRIPTION)
    document: dict[str, Any] = openapi.finish_document(json.loads(raw))
    return document


@app.get("/api/openapi.json", include_in_schema=False)
def get_openapi() -> Response[Any]:
    return json_response(openapi_document())


@app.get("/api/docs", include_in_schema=False)
def get_docs() -> Response[Any]:
    return Response(
        status_code=200,
        content_type="text/html",
        body=_swagger_html(),
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@cache
def _swagger_html() -> str:
    from pathlib import Path

    import aws_lambda_powertools.event_handler.openapi.swagger_ui as swagger_ui
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    assets = Path(swagger_ui.__file__).parent
    spec = json.dumps(openapi_document()).replace("</", "<\\/")
    js = (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (assets / "swagger-ui.min.css").read_text(encoding="utf-8")
    return generate_swagger_html(spec, js, css, "", None)


def decoded_body(event: dict[str, Any]) -> bytes | None:
    """The request body's bytes as the resolver will read them; None if it cannot be decoded."""
    body = event.get("body")
    if not body:
        return b""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    return str(body).encode("utf-8", errors="surrogatepass")


def _refuse(status: int, message: str) -> dict[str, Any]:
    """A response given before routing (same body shape as `api.errors`)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **SECURITY_HEADERS},
        "body": jsonout.dumps(error_body(message)),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = _handle(event, context)
    # One access line per request: method, path (the tenant is in it), status. Never the query
    # string, a header or the body.
    http = (event.get("requestContext") or {}).get("http") or {}
    logger.info(
        "request handled",
        extra={
            "method": http.get("method"),
            "path": str(event.get("rawPath"))[:300],
            "status": response.get("statusCode"),
        },
    )
    status = response.get("statusCode")
    if isinstance(status, int) and status >= 500:
        # A failure the function answers itself (a storage error is a 503) is a successful
        # invocation to Lambda: counted here, beside the HTTP API's own 5xx metric. Flushed at once
        # (no `log_metrics`: most requests have no metric, and an empty flush warns). A disabled
        # flush (POWERTOOLS_METRICS_DISABLED, the local stack) keeps the set: cleared either way.
        metrics.add_metric(name=API_SERVER_ERRORS, unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
        metrics.clear_metrics()
    return response


def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Refused before routing: validation would otherwise decode and parse the whole body first.
    path = str(event.get("rawPath") or "")
    # The ingest routes take batches (their own, larger bound); OTLP bodies may be protobuf or gzip.
    limit = get_ingest_settings().max_body_bytes if path in INGEST_PATHS else api_settings().max_body_bytes
    body = decoded_body(event)
    if body is None:
        return _refuse(400, "the body is not valid base64")
    if len(body) > limit:
        return _refuse(413, f"the request body is larger than {limit} bytes")
    if path == OTLP_TRACES_PATH:
        return app.resolve(event, context)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return _refuse(400, "the body is not valid UTF-8")
    if body and not is_json_content_type(event):
        # Only JSON is read: Powertools' form and multipart parsers are never reached.
        return _refuse(415, "the body must be application/json")
    return app.resolve(event, context)


def is_json_content_type(event: dict[str, Any]) -> bool:
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    media = headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))

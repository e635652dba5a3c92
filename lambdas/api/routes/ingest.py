"""POST /api/usage-events and POST /api/otel/v1/traces: ingest over HTTP, authenticated by an ingest key.

These two routes do not use the caller's JWT: the key in `Authorization: Bearer llt_…` is the
credential (checked here, on every request; see docs/ingest.md for why not a Lambda authorizer).
The body is read raw — events are validated one by one, so one bad event never fails the batch.
"""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from api.openapi import error_responses
from api.responses import SECURITY_HEADERS, json_response
from llmtally.api.ingest import (
    OTLP_TRACES_PATH,
    USAGE_EVENTS_PATH,
    IngestService,
    get_ingest_settings,
    otlp_message,
)

router = Router()  # type: ignore[no-untyped-call]  # Powertools' Router.__init__ is unannotated
TAG = ["ingest"]


@cache
def ingest_service() -> IngestService:
    def keys() -> Any:
        from llmtally.repositories.ingest_keys import IngestKeyRepository

        return IngestKeyRepository()

    def limiter() -> Any:
        from llmtally.repositories.settings import SettingsRepository

        return SettingsRepository()

    def bus() -> Any:
        from llmtally.repositories.ingest_edge import UsageBus

        return UsageBus()

    def recorded() -> Any:
        from llmtally.repositories.ingest_edge import RecordedEvents

        return RecordedEvents()

    return IngestService(keys, limiter, bus, recorded, get_ingest_settings(), on_bus_refused=_count_bus_refused)


def _count_bus_refused(count: int) -> None:
    """A handled failure Lambda never sees: counted (EMF) for the alarm, flushed at once."""
    from aws_lambda_powertools.metrics import MetricUnit

    from llmtally.metric_names import HTTP_INGEST_BUS_REFUSED
    from llmtally.observability import metrics

    metrics.add_metric(name=HTTP_INGEST_BUS_REFUSED, unit=MetricUnit.Count, value=count)
    metrics.flush_metrics()


def _event() -> APIGatewayProxyEventV2:
    event: APIGatewayProxyEventV2 = router.current_event  # type: ignore[assignment]
    return event


def _body(event: APIGatewayProxyEventV2) -> bytes:
    """The raw bytes (a protobuf body arrives base64-encoded; the handler has checked it decodes)."""
    raw = event.raw_event.get("body") or ""
    if event.raw_event.get("isBase64Encoded"):
        return base64.b64decode(raw)
    return str(raw).encode("utf-8", errors="surrogatepass")


@router.post(
    USAGE_EVENTS_PATH,
    summary="Ingest a batch of usage events (contract v1) with an ingest key",
    description='Body: `{"events": [...]}`, at most 500 events (docs/usage-event.schema.json); a key scoped to '
    "one tenant may omit `user_id`. Each event is answered `accepted` (handed to the usage bus), `duplicate` "
    "(already recorded, or repeated in this request) or `rejected` with its reason; `retryable` marks a "
    "transient refusal. Authorization: `Bearer llt_…` (an ingest key, not a JWT).",
    tags=TAG,
    responses={
        200: {"description": "Per-event results", "content": {"application/json": {"schema": {"type": "object"}}}},
        **error_responses(400, 401, 413, 415, 429),
    },
)
def post_usage_events() -> Response[Any]:
    event = _event()
    service = ingest_service()
    principal = service.authenticate(event.headers or {})
    return json_response(service.submit_events(principal, _body(event)))


@router.post(
    OTLP_TRACES_PATH,
    summary="OTLP/HTTP traces receiver: GenAI spans become usage events",
    description="OTLP `ExportTraceServiceRequest` as `application/x-protobuf` or `application/json`, optionally "
    "gzip. Spans with GenAI attributes (`gen_ai.*`, OpenInference `llm.*`) become events with id "
    "`otel:<trace id>:<span id>` (a re-exported span is a duplicate); other spans are ignored and counted. "
    "Rejected spans are reported in `partial_success`; the X-LLMtally-* headers count each outcome. "
    "Authorization: `Bearer llt_…`.",
    tags=TAG,
    responses={
        200: {
            "description": "ExportTraceServiceResponse",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **error_responses(400, 401, 413, 415, 429),
    },
)
def post_otlp_traces() -> Response[Any]:
    from llmtally.integrations.otlp import response_body

    event = _event()
    headers = {str(k).lower(): str(v) for k, v in (event.headers or {}).items()}
    service = ingest_service()
    principal = service.authenticate(headers)
    counts = service.submit_spans(principal, _body(event), headers.get("content-type"), headers.get("content-encoding"))
    body, content_type = response_body(headers.get("content-type", ""), counts.count("rejected"), otlp_message(counts))
    return Response(
        status_code=200,
        content_type=content_type,
        body=body,
        headers={
            **SECURITY_HEADERS,
            "X-LLMtally-Spans": str(counts.spans),
            "X-LLMtally-Accepted": str(counts.count("accepted")),
            "X-LLMtally-Duplicates": str(counts.count("duplicate")),
            "X-LLMtally-Rejected": str(counts.count("rejected")),
            "X-LLMtally-Ignored": str(counts.ignored),
        },
    )


def reset() -> None:
    ingest_service.cache_clear()
    get_ingest_settings.cache_clear()

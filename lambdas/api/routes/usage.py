"""/api/llm-usage/{userId}: summary and daily series (rollups only), raw entries and their CSV export."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from api.deps import UserIdPath, query_params_of, tenant_of, usage_service
from api.openapi import error_responses, ok
from api.responses import SECURITY_HEADERS, json_response
from llmtally.api.models import DailyUsageResponse, UsageEntriesResponse, UsageSummaryResponse
from llmtally.api.timeparams import MAX_RANGE_DAYS
from llmtally.api.usage import DAILY_PARAMS, ENTRIES_PARAMS, NEXT_CURSOR_HEADER, SUMMARY_PARAMS, EntryFilters
from llmtally.events import MODEL_PATTERN, OPERATION_TYPE_PATTERN, Provider, Status
from llmtally.queries import MAX_SERIES_DAYS

router = Router()  # type: ignore[no-untyped-call]  # Powertools' Router.__init__ is unannotated
TAG = ["usage"]
CSV = "text/csv; charset=utf-8"

DAY = r"^\d{4}-\d{2}-\d{2}$"
Timezone = Annotated[
    str | None,
    Query(max_length=64, description="IANA timezone of the local days (default UTC), e.g. Asia/Kolkata"),
]


@router.get(
    "/api/llm-usage/<userId>/summary",
    summary="Totals and breakdowns by provider, operation and model",
    description=f"Whole local days `start`..`end` (both inclusive, at most {MAX_RANGE_DAYS} days; default the "
    "last 30 days ending today in `tz`). Read from the rollups only: the items read are bounded by days × "
    "dimension values, never by the number of requests.",
    tags=TAG,
    responses={200: ok(UsageSummaryResponse), **error_responses(400, 401, 403)},
)
def get_summary(
    userId: UserIdPath,
    start: Annotated[str | None, Query(pattern=DAY, description="First local day, YYYY-MM-DD")] = None,
    end: Annotated[str | None, Query(pattern=DAY, description="Last local day (inclusive), YYYY-MM-DD")] = None,
    tz: Timezone = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, SUMMARY_PARAMS)
    return json_response(usage_service().summary(userId, start, end, tz))


@router.get(
    "/api/llm-usage/<userId>/daily",
    summary="One row per local day, zero-filled",
    description="The `days` local days ending today in `tz` (oldest first), each with requests, tokens and "
    "cost; a day without usage is a row of zeros. Read from the rollups only.",
    tags=TAG,
    responses={200: ok(DailyUsageResponse), **error_responses(400, 401, 403)},
)
def get_daily(
    userId: UserIdPath,
    days: Annotated[int, Query(ge=1, le=MAX_SERIES_DAYS, description="How many days, 1–366")] = 30,
    tz: Timezone = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, DAILY_PARAMS)
    return json_response(usage_service().daily(userId, days, tz))


_ENTRIES_OK: OpenAPIResponse = {
    "description": "A page of entries (JSON), or with `format=csv` the rows as CSV; the next page's cursor "
    f"is `next_cursor` (JSON) or the `{NEXT_CURSOR_HEADER}` header (CSV)",
    "content": {
        "application/json": {"model": UsageEntriesResponse},
        "text/csv": {"schema": {"type": "string"}},
    },
}


@router.get(
    "/api/llm-usage/<userId>",
    summary="Raw usage entries: filters, cursor pagination, CSV export",
    description="Newest first unless `order=oldest`. Filters combine (AND). `start`/`end` take a local day "
    "(YYYY-MM-DD; an end day is inclusive) or an ISO 8601 datetime (end exclusive). A page may hold fewer "
    "than `limit` entries and still carry a cursor: follow `next_cursor` until it is null. A cursor works "
    "only for the tenant and query it was issued for. `format=csv` returns the same rows with every ledger "
    "column (up to 10,000 per response by default; `limit` up to that).",
    tags=TAG,
    responses={200: _ENTRIES_OK, **error_responses(400, 401, 403)},
)
def list_entries(
    userId: UserIdPath,
    provider: Annotated[Provider | None, Query(description="Only this provider")] = None,
    operation: Annotated[
        str | None, Query(pattern=OPERATION_TYPE_PATTERN, max_length=64, description="Only this operation type")
    ] = None,
    model: Annotated[str | None, Query(pattern=MODEL_PATTERN, max_length=256, description="Only this model")] = None,
    status: Annotated[Status | None, Query(description="Only ok or only error calls")] = None,
    start: Annotated[str | None, Query(min_length=1, max_length=40, description="From (inclusive)")] = None,
    end: Annotated[str | None, Query(min_length=1, max_length=40, description="Until")] = None,
    tz: Timezone = None,
    order: Annotated[Literal["newest", "oldest"], Query(description="Newest (default) or oldest first")] = "newest",
    limit: Annotated[
        int | None, Query(ge=1, le=100_000, description="Page size: JSON default 100, at most 1000; CSV see above")
    ] = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=1024, description="A previous next_cursor")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, ENTRIES_PARAMS)
    filters = EntryFilters(
        provider=provider, operation=operation, model=model, status=status, start=start, end=end, tz=tz, order=order
    )
    if format == "json":
        return json_response(usage_service().entries(userId, filters, limit, cursor))
    text, next_cursor = usage_service().export_csv(userId, filters, limit, cursor)
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="llm-usage-{userId}.csv"'}
    if next_cursor:
        headers[NEXT_CURSOR_HEADER] = next_cursor
    return Response(status_code=200, content_type=CSV, body=text, headers=headers)

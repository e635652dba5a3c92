"""/api/llm-usage/{userId}: summary and daily series (rollups only), raw entries and their CSV export.

The CSV export has its own path, `/api/llm-usage/{userId}/export`, so that the deployed HTTP API
gives it its own route, with a lower throttle than the rest (`cdk_app.constructs.api`). The entries
route's `format=csv` keeps working: locally it answers the CSV itself; on AWS, where the request came
through the catch-all route (`PROXY_ROUTE_KEY`), it answers 307 to the export path with the same
query, so every CSV request meets the export's throttle (docs/api.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from api.deps import UserIdPath, query_params_of, tenant_of, usage_service
from api.openapi import error_responses, ok
from api.responses import SECURITY_HEADERS, json_response
from llmtally.api.models import (
    BreakdownResponse,
    DailyUsageResponse,
    TagKeysResponse,
    UsageEntriesResponse,
    UsageSummaryResponse,
)
from llmtally.api.timeparams import MAX_RANGE_DAYS
from llmtally.api.usage import (
    BREAKDOWN_PARAMS,
    DAILY_PARAMS,
    ENTRIES_PARAMS,
    NEXT_CURSOR_HEADER,
    SUMMARY_PARAMS,
    TAGS_PARAMS,
    EntryFilters,
)
from llmtally.events import MODEL_PATTERN, OPERATION_TYPE_PATTERN, Provider, Status
from llmtally.queries import DEFAULT_BREAKDOWN_LIMIT, MAX_BREAKDOWN_LIMIT, MAX_SERIES_DAYS

router = Router()  # type: ignore[no-untyped-call]  # Powertools' Router.__init__ is unannotated
TAG = ["usage"]
CSV = "text/csv; charset=utf-8"
#: The deployed HTTP API's catch-all route key, and the export's own route (`cdk_app.constructs.api`).
PROXY_ROUTE_KEY = "GET /api/{proxy+}"
EXPORT_ROUTE_KEY = "GET /api/llm-usage/{userId}/export"
EXPORT_PARAMS = ENTRIES_PARAMS - {"format"}

DAY = r"^\d{4}-\d{2}-\d{2}$"
Timezone = Annotated[
    str | None,
    Query(max_length=64, description="IANA timezone of the local days (default UTC), e.g. Asia/Kolkata"),
]
#: `by`: provider, model, operation or tag:<key> (a tag key as the event contract allows).
BY_PATTERN = r"^(provider|model|operation|tag:[a-z][a-z0-9_.-]{0,39})$"
Where = Annotated[
    str | None,
    Query(
        min_length=3,
        max_length=300,
        description="One filter `<dimension>:<value>`: provider:openai, model:gpt-5, operation:chat, "
        "tag:customer:acme (the value may contain ':')",
    ),
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
    where: Where = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, SUMMARY_PARAMS)
    return json_response(usage_service().summary(userId, start, end, tz, where=where))


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
    where: Where = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, DAILY_PARAMS)
    return json_response(usage_service().daily(userId, days, tz, where=where))


@router.get(
    "/api/llm-usage/<userId>/breakdown",
    summary="Cost by provider, model, operation or tag, under one optional filter",
    description=f"Whole local days `start`..`end` (both inclusive, at most {MAX_RANGE_DAYS} days; default the "
    "last 30 days ending today in `tz`), costliest first: each row has requests, the token ledger, cost, "
    "share of the total, errors, unpriced and usage-missing counts. `by=tag:<key>` rows include `(other)` "
    "(values past the tenant's monthly bound; `folded_values` says how many) and `(none)` (calls without the "
    "key). Rows past `limit` are summed in `other`. `where` filters on one dimension; a breakdown by one tag "
    "key under a filter on another is refused (400). Read from the rollups only: items read are bounded by "
    "days × values in range.",
    tags=TAG,
    responses={200: ok(BreakdownResponse), **error_responses(400, 401, 403)},
)
def get_breakdown(
    userId: UserIdPath,
    by: Annotated[str, Query(pattern=BY_PATTERN, max_length=44, description="provider, model, operation, tag:<key>")],
    where: Where = None,
    start: Annotated[str | None, Query(pattern=DAY, description="First local day, YYYY-MM-DD")] = None,
    end: Annotated[str | None, Query(pattern=DAY, description="Last local day (inclusive), YYYY-MM-DD")] = None,
    tz: Timezone = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_BREAKDOWN_LIMIT, description=f"Rows before `other` (default {DEFAULT_BREAKDOWN_LIMIT})")
    ] = DEFAULT_BREAKDOWN_LIMIT,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, BREAKDOWN_PARAMS)
    return json_response(usage_service().breakdown(userId, by, start, end, tz, where=where, limit=limit))


@router.get(
    "/api/llm-usage/<userId>/tags",
    summary="The tenant's tag keys (the breakdown's tag dimensions)",
    description="Every tag key the tenant rolls up, alphabetical, with this UTC month's count of admitted "
    "values and of values folded into `(other)`.",
    tags=TAG,
    responses={200: ok(TagKeysResponse), **error_responses(400, 401, 403)},
)
def get_tag_keys(userId: UserIdPath) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, TAGS_PARAMS)
    return json_response(usage_service().tag_keys(userId))


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
    "column (up to 10,000 per response by default; `limit` up to that). Every response is bounded: at most "
    "20,000 items examined and a 4 MiB body; when either is spent it ends early (even empty) with the cursor "
    "of the rest. Each entry carries its `tags` and `usage_source` (`missing`: the usage never arrived). `where` "
    "is the summary's filter (`tag:customer:acme`): a tag matches the value the call was rolled up under, so "
    "`tag:<key>:(other)` is the calls whose value was folded past the tenant's bound, as in the breakdown.",
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
    where: Where = None,
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
    filters = _entry_filters(provider, operation, model, status, where, start, end, tz, order)
    if format == "json":
        return json_response(usage_service().entries(userId, filters, limit, cursor))
    if router.current_event.get("routeKey") == PROXY_ROUTE_KEY:
        return _redirect_to_export(userId)
    return _csv(userId, filters, limit, cursor)


_EXPORT_OK: OpenAPIResponse = {
    "description": f"The rows as CSV; the next page's cursor is the `{NEXT_CURSOR_HEADER}` header",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}


@router.get(
    "/api/llm-usage/<userId>/export",
    summary="CSV export of the raw usage entries",
    description="The entries route's rows with every ledger column, as CSV (RFC 4180), with the same filters (`where` "
    "included), "
    f"order and cursor (from the `{NEXT_CURSOR_HEADER}` header). Throttled apart from the other routes when "
    "deployed (docs/deploy.md); `GET /api/llm-usage/{userId}?format=csv` is the same export.",
    tags=TAG,
    responses={200: _EXPORT_OK, **error_responses(400, 401, 403)},
)
def export_entries(
    userId: UserIdPath,
    provider: Annotated[Provider | None, Query(description="Only this provider")] = None,
    operation: Annotated[
        str | None, Query(pattern=OPERATION_TYPE_PATTERN, max_length=64, description="Only this operation type")
    ] = None,
    model: Annotated[str | None, Query(pattern=MODEL_PATTERN, max_length=256, description="Only this model")] = None,
    status: Annotated[Status | None, Query(description="Only ok or only error calls")] = None,
    where: Where = None,
    start: Annotated[str | None, Query(min_length=1, max_length=40, description="From (inclusive)")] = None,
    end: Annotated[str | None, Query(min_length=1, max_length=40, description="Until")] = None,
    tz: Timezone = None,
    order: Annotated[Literal["newest", "oldest"], Query(description="Newest (default) or oldest first")] = "newest",
    limit: Annotated[
        int | None, Query(ge=1, le=100_000, description="Rows per response (see the entries route)")
    ] = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=1024, description="A previous X-Next-Cursor")] = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, EXPORT_PARAMS)
    filters = _entry_filters(provider, operation, model, status, where, start, end, tz, order)
    return _csv(userId, filters, limit, cursor)


def _entry_filters(
    provider: Provider | None,
    operation: str | None,
    model: str | None,
    status: Status | None,
    where: str | None,
    start: str | None,
    end: str | None,
    tz: str | None,
    order: Literal["newest", "oldest"],
) -> EntryFilters:
    """The entries and export routes' filters, from their query parameters (in the routes' order)."""
    return EntryFilters(
        provider=provider,
        operation=operation,
        model=model,
        status=status,
        start=start,
        end=end,
        tz=tz,
        order=order,
        where=where,
    )


def _redirect_to_export(user_id: str) -> Response[Any]:
    """307 to the export path with the same query (minus `format`): the method and headers are kept."""
    raw_query = str(router.current_event.get("rawQueryString") or "")
    query = urlencode([(k, v) for k, v in parse_qsl(raw_query, keep_blank_values=True) if k != "format"])
    location = f"/api/llm-usage/{quote(user_id, safe='')}/export" + (f"?{query}" if query else "")
    return Response(status_code=307, content_type=CSV, body="", headers={**SECURITY_HEADERS, "Location": location})


def _csv(user_id: str, filters: EntryFilters, limit: int | None, cursor: str | None) -> Response[Any]:
    text, next_cursor = usage_service().export_csv(user_id, filters, limit, cursor)
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="llm-usage-{user_id}.csv"'}
    if next_cursor:
        headers[NEXT_CURSOR_HEADER] = next_cursor
    return Response(status_code=200, content_type=CSV, body=text, headers=headers)

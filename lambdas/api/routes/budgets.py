"""/api/llm-settings/{userId}/budget: the monthly budget, its status, the Slack webhook, the alerts;
/budget/tags: budgets on one tag value each (customer=c-42), with theirs.

A tag budget is addressed by `?key=&value=` rather than by path segments: tag values may hold `/`,
`#`, `:` and spaces, which a path segment would need escaped through API Gateway.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from api.deps import UserIdPath, budget_service, query_params_of, tenant_of
from api.openapi import error_responses, ok
from api.responses import json_response
from llmtally.api.budget_models import (
    BudgetAlertsResponse,
    BudgetDeletedResponse,
    BudgetResponse,
    BudgetUpdate,
    TagBudgetOut,
    TagBudgetsResponse,
    TagBudgetUpdate,
)

router = Router()  # type: ignore[no-untyped-call]  # Powertools' Router.__init__ is unannotated
TAG = ["budgets"]


@router.get(
    "/api/llm-settings/<userId>/budget",
    summary="The monthly budget and where it stands this period",
    description="`budget` is null when none is set. `status` counts the local month of the budget's timezone: "
    "`spentUsd` from the rollups, `reservedUsd` for strict reservations in flight. The Slack webhook URL is "
    "never returned: `hasSlackWebhook` says whether one is stored.",
    tags=TAG,
    responses={200: ok(BudgetResponse), **error_responses(400, 401, 403)},
)
def get_budget(userId: UserIdPath) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset())
    return json_response(budget_service().get(userId))


@router.put(
    "/api/llm-settings/<userId>/budget",
    summary="Set the monthly budget",
    description="Replaces the budget whole. Thresholds default to 50/80/100%; `action` applies at 100%: notify, "
    "block, or switch to `switchTo`. `strict` (block or switch only) makes the library reserve each call's "
    "worst-case cost before the call. `slackWebhookUrl` is stored in Secrets Manager and never echoed.",
    tags=TAG,
    responses={200: ok(BudgetResponse), **error_responses(400, 401, 403, 413)},
)
def put_budget(userId: UserIdPath, update: Annotated[BudgetUpdate, Body(embed=False)]) -> Response[Any]:
    tenant_of(router, userId)
    return json_response(budget_service().put(userId, update))


@router.delete(
    "/api/llm-settings/<userId>/budget",
    summary="Remove the budget (and its Slack webhook)",
    description="Idempotent: `deleted` is false when there was no budget. Past alerts stay listed.",
    tags=TAG,
    responses={200: ok(BudgetDeletedResponse), **error_responses(400, 401, 403)},
)
def delete_budget(userId: UserIdPath) -> Response[Any]:
    tenant_of(router, userId)
    return json_response(budget_service().delete(userId))


@router.get(
    "/api/llm-settings/<userId>/budget/alerts",
    summary="Budget alerts, newest first",
    description="One entry per threshold crossed per period (each fires exactly once).",
    tags=TAG,
    responses={200: ok(BudgetAlertsResponse), **error_responses(400, 401, 403)},
)
def list_alerts(
    userId: UserIdPath,
    limit: Annotated[int | None, Query(ge=1, le=200, description="How many (default 50, at most 200)")] = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset({"limit"}))
    return json_response(budget_service().alerts(userId, limit))


TagKeyQuery = Annotated[str, Query(min_length=1, max_length=40, description="The tag key, e.g. customer")]
TagValueQuery = Annotated[str, Query(min_length=1, max_length=128, description="The tag value, e.g. c-42")]


@router.get(
    "/api/llm-settings/<userId>/budget/tags",
    summary="Tag budgets: each with where it stands this period",
    description="Budgets on the calls tagged with one tag value (`llmtally.attribution(tags={...})`, or an "
    "event's `tags`), e.g. customer c-42 at $50 a month. Each `status` counts the local month of its "
    "timezone from the rollups' tag dimension. At most `maxTagBudgets` per tenant.",
    tags=TAG,
    responses={200: ok(TagBudgetsResponse), **error_responses(400, 401, 403)},
)
def list_tag_budgets(userId: UserIdPath) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset())
    return json_response(budget_service().tag_budgets(userId))


@router.put(
    "/api/llm-settings/<userId>/budget/tags",
    summary="Set one tag value's monthly budget",
    description="Creates or replaces the budget of `tagKey`=`tagValue` whole (same fields as the tenant's "
    "budget; `strict` reserves each call's worst case on the tag's ledger). Alerts fire once per threshold "
    "per period, like the tenant's, to the same Slack webhook and e-mail; `block`/`switch` apply to calls "
    "made under that tag.",
    tags=TAG,
    responses={200: ok(TagBudgetOut), **error_responses(400, 401, 403, 413)},
)
def put_tag_budget(userId: UserIdPath, update: Annotated[TagBudgetUpdate, Body(embed=False)]) -> Response[Any]:
    tenant_of(router, userId)
    return json_response(budget_service().put_tag_budget(userId, update))


@router.get(
    "/api/llm-settings/<userId>/budget/tag",
    summary="One tag value's budget",
    description="404 when that tag value has no budget.",
    tags=TAG,
    responses={200: ok(TagBudgetOut), **error_responses(400, 401, 403, 404)},
)
def get_tag_budget(userId: UserIdPath, key: TagKeyQuery, value: TagValueQuery) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset({"key", "value"}))
    return json_response(budget_service().get_tag_budget(userId, key, value))


@router.delete(
    "/api/llm-settings/<userId>/budget/tag",
    summary="Remove one tag value's budget",
    description="Idempotent: `deleted` is false when there was none. Past alerts stay listed.",
    tags=TAG,
    responses={200: ok(BudgetDeletedResponse), **error_responses(400, 401, 403)},
)
def delete_tag_budget(userId: UserIdPath, key: TagKeyQuery, value: TagValueQuery) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset({"key", "value"}))
    return json_response(budget_service().delete_tag_budget(userId, key, value))


@router.get(
    "/api/llm-settings/<userId>/budget/tags/alerts",
    summary="Tag budgets' alerts, newest first",
    description="One entry per threshold crossed per tag budget per period, with its `tagKey` and `tagValue`.",
    tags=TAG,
    responses={200: ok(BudgetAlertsResponse), **error_responses(400, 401, 403)},
)
def list_tag_alerts(
    userId: UserIdPath,
    limit: Annotated[int | None, Query(ge=1, le=200, description="How many (default 50, at most 200)")] = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset({"limit"}))
    return json_response(budget_service().alerts(userId, limit, tags=True))

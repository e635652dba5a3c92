"""/api/llm-settings/{userId}/budget: the monthly budget, its status, the Slack webhook, the alerts."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from api.deps import UserIdPath, budget_service, query_params_of, tenant_of
from api.openapi import error_responses, ok
from api.responses import json_response
from llmtally.api.budget_models import BudgetAlertsResponse, BudgetDeletedResponse, BudgetResponse, BudgetUpdate

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

"""/api/llm-usage/{userId}/reconciliation and /api/llm-settings/{userId}/billing-keys: metered against billed."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from api.deps import UserIdPath, query_params_of, tenant_of
from api.openapi import error_responses, ok
from api.responses import json_response
from llmtally.api.reconciliation import (
    RECONCILIATION_PARAMS,
    BillingKeyDeletedResponse,
    BillingKeysResponse,
    BillingKeyUpdate,
    ReconciliationResponse,
    ReconciliationService,
)

router = Router()  # type: ignore[no-untyped-call]  # Powertools' Router.__init__ is unannotated
TAG = ["reconciliation"]

Day = Annotated[str | None, Query(max_length=10, description="A UTC day, YYYY-MM-DD (inclusive)")]


@cache
def reconciliation_service() -> ReconciliationService:
    """Repositories are built per request (their clients are cached by `llmtally.aws`)."""

    def store() -> Any:
        from llmtally.repositories.reconciliation import ReconciliationRepository

        return ReconciliationRepository()

    def credentials() -> Any:
        from llmtally.repositories.billing_credentials import BillingCredentialsRepository

        return BillingCredentialsRepository()

    return ReconciliationService(store, credentials)


@router.get(
    "/api/llm-usage/<userId>/reconciliation",
    summary="Metered against billed, per UTC day and model",
    description="What the providers billed (their usage and cost reports, read daily with the stored admin keys; "
    "Bedrock from the deployment's Cost Explorer) against what llmtally metered: tokens by kind, cost, the drift "
    "(absolute and %), unmetered spend (billed cost no usage event explains), the cause (tokens or price) and, "
    "where tokens match but the cost differs, the billed unit price with a suggested price override. Days "
    "`provisional` may still change at the provider. Default range: the last 30 days; at most 93.",
    tags=TAG,
    responses={200: ok(ReconciliationResponse), **error_responses(400, 401, 403)},
)
def get_reconciliation(
    userId: UserIdPath,
    start: Day = None,
    end: Day = None,
    where: Annotated[
        str | None,
        Query(
            min_length=3,
            max_length=300,
            description="The summary's filter: `provider:<p>` narrows to p's bill; any other (a tag, model or "
            "operation) answers the account's reconciliation with `scope: account` and a `note` (invoices carry "
            "no tags or operations)",
        ),
    ] = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, RECONCILIATION_PARAMS)
    return json_response(reconciliation_service().report(userId, start, end, where=where))


@router.get(
    "/api/llm-settings/<userId>/billing-keys",
    summary="Which provider admin keys are stored (for reconciliation)",
    description="Booleans only: an admin key is never returned.",
    tags=TAG,
    responses={200: ok(BillingKeysResponse), **error_responses(400, 401, 403)},
)
def get_billing_keys(userId: UserIdPath) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset())
    return json_response(reconciliation_service().keys(userId))


@router.put(
    "/api/llm-settings/<userId>/billing-keys",
    summary="Store a provider admin key (write-only)",
    description="An OpenAI admin key (`sk-admin-…`) or an Anthropic Admin API key (`sk-ant-admin…`), used only by "
    "the daily reconciliation to read the organization's usage and cost reports. Stored in Secrets Manager, "
    "never echoed.",
    tags=TAG,
    responses={200: ok(BillingKeysResponse), **error_responses(400, 401, 403, 413)},
)
def put_billing_key(userId: UserIdPath, update: Annotated[BillingKeyUpdate, Body(embed=False)]) -> Response[Any]:
    tenant_of(router, userId)
    return json_response(reconciliation_service().put_key(userId, update))


@router.delete(
    "/api/llm-settings/<userId>/billing-keys/<provider>",
    summary="Delete a provider admin key",
    description="Idempotent: `deleted` is false when there was none. Stored reconciliation rows are kept.",
    tags=TAG,
    responses={200: ok(BillingKeyDeletedResponse), **error_responses(400, 401, 403)},
)
def delete_billing_key(
    userId: UserIdPath,
    provider: Annotated[str, Path(pattern=r"^(openai|anthropic)$", description="openai or anthropic")],
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset())
    return json_response(reconciliation_service().delete_key(userId, provider))


def reset() -> None:
    reconciliation_service.cache_clear()

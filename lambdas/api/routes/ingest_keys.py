"""/api/llm-settings/{userId}/ingest-keys: create (shown once), list (with last use), revoke."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from api.deps import UserIdPath, query_params_of, tenant_of
from api.openapi import error_responses, ok
from api.responses import json_response
from llmtally.api.ingest_keys import (
    IngestKeyCreate,
    IngestKeyCreated,
    IngestKeyRevoked,
    IngestKeyService,
    IngestKeysResponse,
)
from llmtally.ingest_keys import KEY_ID_PATTERN

router = Router()  # type: ignore[no-untyped-call]  # Powertools' Router.__init__ is unannotated
TAG = ["ingest"]


@cache
def ingest_key_service() -> IngestKeyService:
    def store() -> Any:
        from llmtally.repositories.ingest_keys import IngestKeyRepository

        return IngestKeyRepository()

    return IngestKeyService(store)


@router.get(
    "/api/llm-settings/<userId>/ingest-keys",
    summary="The tenant's ingest keys (never the keys themselves)",
    description="Each key's id, name, hint, creator, creation time and when it last authenticated a request.",
    tags=TAG,
    responses={200: ok(IngestKeysResponse), **error_responses(400, 401, 403)},
)
def list_ingest_keys(userId: UserIdPath) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset())
    return json_response(ingest_key_service().list(userId))


@router.post(
    "/api/llm-settings/<userId>/ingest-keys",
    summary="Create an ingest key (shown once)",
    description="For `POST /api/usage-events` and `POST /api/otel/v1/traces` (`Authorization: Bearer llt_…`). "
    "The response holds the key; it is stored only as a SHA-256 hash and cannot be shown again. "
    "`all_tenants` (admins only) makes a key that may write any tenant's events.",
    tags=TAG,
    responses={201: ok(IngestKeyCreated, "Created"), **error_responses(400, 401, 403, 413)},
)
def create_ingest_key(userId: UserIdPath, request: Annotated[IngestKeyCreate, Body(embed=False)]) -> Response[Any]:
    caller = tenant_of(router, userId)
    return json_response(ingest_key_service().create(caller, userId, request), status=201)


@router.delete(
    "/api/llm-settings/<userId>/ingest-keys/<keyId>",
    summary="Revoke an ingest key",
    description="Immediate: the key's next request is refused (401). 404 if the tenant holds no such key.",
    tags=TAG,
    responses={200: ok(IngestKeyRevoked), **error_responses(400, 401, 403, 404)},
)
def revoke_ingest_key(
    userId: UserIdPath, keyId: Annotated[str, Path(pattern=KEY_ID_PATTERN, description="The key's id")]
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, frozenset())
    return json_response(ingest_key_service().revoke(userId, keyId))


def reset() -> None:
    ingest_key_service.cache_clear()

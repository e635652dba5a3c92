"""/api/llm-settings/{userId}: preferences, keys (BYOK), connection test."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from api.deps import UserIdPath, settings_service, tenant_of
from api.openapi import error_responses, ok
from api.responses import json_response
from llmtally.api.models import (
    ConnectionTestRequest,
    ConnectionTestResponse,
    KeyDeletedResponse,
    SettingsResponse,
    SettingsUpdate,
    SettingsUpdateResponse,
)
from llmtally.events import Provider

router = Router()  # type: ignore[no-untyped-call]  # Powertools' Router.__init__ is unannotated
TAG = ["settings"]


@router.get(
    "/api/llm-settings/<userId>",
    summary="A user's LLM preferences and which keys are stored",
    description="Keys are never returned: `hasApiKeys` says only whether one is stored (Bedrock: whether "
    "the deployment can call it). A user who never saved preferences gets the defaults.",
    tags=TAG,
    responses={200: ok(SettingsResponse), **error_responses(400, 401, 403)},
)
def get_settings(userId: UserIdPath) -> Response[Any]:
    tenant_of(router, userId)
    return json_response(settings_service().get(userId))


@router.put(
    "/api/llm-settings/<userId>",
    summary="Save preferences and/or store API keys",
    description="`preferences` replaces the saved preferences whole; each key in `apiKeys` is stored in "
    "Secrets Manager (a new version if one exists). The response never contains a key.",
    tags=TAG,
    responses={200: ok(SettingsUpdateResponse), **error_responses(400, 401, 403, 413)},
)
def put_settings(
    userId: UserIdPath,
    update: Annotated[SettingsUpdate, Body(embed=False)],
) -> Response[Any]:
    tenant_of(router, userId)
    return json_response(settings_service().update(userId, update))


@router.delete(
    "/api/llm-settings/<userId>/keys/<provider>",
    summary="Delete a stored API key",
    description="Deletes the secret immediately (no recovery window). Idempotent: `deleted` is false when "
    "there was no key.",
    tags=TAG,
    responses={200: ok(KeyDeletedResponse), **error_responses(400, 401, 403)},
)
def delete_key(
    userId: UserIdPath,
    provider: Annotated[Provider, Path(description="anthropic, openai or google")],
) -> Response[Any]:
    tenant_of(router, userId)
    return json_response(settings_service().delete_key(userId, provider))


@router.post(
    "/api/llm-settings/<userId>/test",
    summary="Test the connection to a provider",
    description="Uses `apiKey` from the body, else the stored key (Bedrock: the deployment's AWS "
    "credentials). Costs nothing: it retrieves the model through the provider's models API. Rate limited "
    "per user; a failed test is a 200 with `success: false` and a scrubbed `message`/`error`.",
    tags=TAG,
    responses={200: ok(ConnectionTestResponse), **error_responses(400, 401, 403, 413, 429)},
)
def test_connection(
    userId: UserIdPath,
    request: Annotated[ConnectionTestRequest, Body(embed=False)],
) -> Response[Any]:
    tenant_of(router, userId)
    from api.connection import provider_connection_test

    return json_response(settings_service().test_connection(userId, request, provider_connection_test))

"""/api/llm-models: the model catalog for the dashboard's dropdowns and cost preview."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from api.deps import caller_of
from api.openapi import error_responses, ok
from api.responses import json_response
from llmtally.api.catalog import model_catalog
from llmtally.api.models import ModelsResponse
from llmtally.events import Provider
from llmtally.pricing import default_price_book

router = Router()  # type: ignore[no-untyped-call]  # Powertools' Router.__init__ is unannotated


@router.get(
    "/api/llm-models",
    summary="Providers, models and prices per 1M tokens",
    description="Prices come from the price book (genai-prices snapshot plus the deployment's overrides), "
    "never from the client. `costPreviewUsd` is what 1M input + 1M output tokens cost.",
    tags=["models"],
    responses={200: ok(ModelsResponse), **error_responses(400, 401)},
)
def list_models(
    provider: Annotated[Provider | None, Query(description="Only this provider's models")] = None,
) -> Response[Any]:
    caller_of(router)
    providers = (provider,) if provider is not None else tuple(Provider)
    return json_response(model_catalog(default_price_book(), providers))

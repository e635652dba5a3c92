"""/api/llm-usage/{userId}/forecast, /anomalies, /recommendations: cost insights from the rollups only."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from api.deps import UserIdPath, insights_service, query_params_of, tenant_of
from api.openapi import error_responses, ok
from api.responses import json_response
from llmtally.api.insights import (
    ANOMALIES_PARAMS,
    ANOMALY_DAYS,
    DEFAULT_ANOMALY_DAYS,
    DEFAULT_RECOMMENDATION_DAYS,
    FORECAST_PARAMS,
    RECOMMENDATION_DAYS,
    RECOMMENDATIONS_PARAMS,
)
from llmtally.api.models import AnomaliesResponse, ForecastResponse, RecommendationsResponse

router = Router()  # type: ignore[no-untyped-call]  # Powertools' Router.__init__ is unannotated
TAG = ["insights"]

Timezone = Annotated[
    str | None,
    Query(max_length=64, description="IANA timezone of the local days (default UTC), e.g. Europe/Paris"),
]
Where = Annotated[
    str | None,
    Query(
        min_length=3,
        max_length=300,
        description="The summary's filter `<dimension>:<value>` (provider:openai, model:gpt-5, operation:chat, "
        "tag:customer:acme): the insight is computed from that filter's rollups only",
    ),
]
UNDER_WHERE = (
    " Under `where`, from the filtered rollups; the answer echoes `where`, and under a tag value lists the "
    "months it was past the tag's bound (`folded_months`, its calls then in (other)) with a `note`."
)


@router.get(
    "/api/llm-usage/<userId>/forecast",
    summary="Month-end spend forecast with an ~80% range",
    description="The current calendar month in `tz` (it starts at local midnight of the 1st): spend so far and "
    "the forecast month-end total, from a robust run rate with weekday rhythm and trend over the last 8 weeks "
    "of completed days. Short histories fall back to a plain run rate with a wide range; `method` says which. "
    "Read from the rollups only." + UNDER_WHERE,
    tags=TAG,
    responses={200: ok(ForecastResponse), **error_responses(400, 401, 403)},
)
def get_forecast(userId: UserIdPath, tz: Timezone = None, where: Where = None) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, FORECAST_PARAMS)
    return json_response(insights_service().forecast(userId, tz, where=where))


@router.get(
    "/api/llm-usage/<userId>/anomalies",
    summary="Days whose cost is unusual for this user",
    description="Among the `days` local days ending today in `tz`: days whose cost is far from what the previous "
    "weeks predict (trend × weekday rhythm), by a robust score. Today, still in progress, can only be flagged "
    "high. Read from the rollups only." + UNDER_WHERE + " Days of a folded month are not judged.",
    tags=TAG,
    responses={200: ok(AnomaliesResponse), **error_responses(400, 401, 403)},
)
def get_anomalies(
    userId: UserIdPath,
    days: Annotated[
        int,
        Query(
            ge=ANOMALY_DAYS[0], le=ANOMALY_DAYS[1], description=f"How many days, {ANOMALY_DAYS[0]}–{ANOMALY_DAYS[1]}"
        ),
    ] = DEFAULT_ANOMALY_DAYS,
    tz: Timezone = None,
    where: Where = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, ANOMALIES_PARAMS)
    return json_response(insights_service().anomalies(userId, days, tz, where=where))


@router.get(
    "/api/llm-usage/<userId>/recommendations",
    summary="Cheaper models per operation type",
    description="For each operation type, the last `days` UTC days' token mix (input, cache reads and writes, "
    "output, reasoning) re-priced on each current model of the catalog; up to 5 candidates cheaper than what "
    "was paid, cheapest first. Linear per-token prices (no long-context tiers); quality is not judged. Read "
    "from the rollups only." + UNDER_WHERE,
    tags=TAG,
    responses={200: ok(RecommendationsResponse), **error_responses(400, 401, 403)},
)
def get_recommendations(
    userId: UserIdPath,
    days: Annotated[
        int,
        Query(
            ge=RECOMMENDATION_DAYS[0],
            le=RECOMMENDATION_DAYS[1],
            description=f"How many days, {RECOMMENDATION_DAYS[0]}–{RECOMMENDATION_DAYS[1]}",
        ),
    ] = DEFAULT_RECOMMENDATION_DAYS,
    where: Where = None,
) -> Response[Any]:
    tenant_of(router, userId)
    query_params_of(router, RECOMMENDATIONS_PARAMS)
    return json_response(insights_service().recommendations(userId, days, where=where))

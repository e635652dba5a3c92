"""What the routes share: the caller's identity, and services built lazily once per container.

No boto3 client exists at import: repositories (and their clients) are built on first use and
cached; `reset()` forgets them (tests that change the environment).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from llmtally.api.config import ApiSettings, get_api_settings
from llmtally.api.identity import Caller, authorize, resolve_caller
from llmtally.api.llm_settings import SettingsService
from llmtally.api.models import PATH_USER_ID_MAX, PATH_USER_ID_PATTERN
from llmtally.api.usage import UsageService, check_params

if TYPE_CHECKING:
    from llmtally.api.budgets import BudgetService
    from llmtally.api.insights import InsightsService

UserIdPath = Annotated[
    str,
    Path(
        pattern=PATH_USER_ID_PATTERN,
        max_length=PATH_USER_ID_MAX,
        description="The tenant: must be the caller's own id unless the caller is an admin.",
    ),
]


def caller_of(router: Router) -> Caller:
    """The authenticated caller of the current request (401 if none)."""
    event: APIGatewayProxyEventV2 = router.current_event  # type: ignore[assignment]
    context: dict[str, Any] = event.raw_event.get("requestContext") or {}
    claims: dict[str, Any] | None = None
    authorizer = context.get("authorizer")
    jwt = authorizer.get("jwt") if isinstance(authorizer, dict) else None
    if isinstance(jwt, dict) and isinstance(jwt.get("claims"), dict):
        claims = jwt["claims"]
    http = context.get("http")
    source_ip = http.get("sourceIp") if isinstance(http, dict) else None
    return resolve_caller(claims, event.headers or {}, source_ip, api_settings())


def tenant_of(router: Router, user_id: str) -> Caller:
    """The caller, checked to act for `user_id` (401 without identity, 403 for another tenant)."""
    caller = caller_of(router)
    authorize(caller, user_id)
    return caller


@cache
def api_settings() -> ApiSettings:
    return get_api_settings()


@cache
def settings_service() -> SettingsService:
    from llmtally.repositories.secrets import SecretsRepository
    from llmtally.repositories.settings import SettingsRepository

    return SettingsService(SettingsRepository(), SecretsRepository(), api_settings())


def query_params_of(router: Router, allowed: frozenset[str]) -> None:
    """400 for a query parameter the current route does not know."""
    event: APIGatewayProxyEventV2 = router.current_event  # type: ignore[assignment]
    check_params(event.query_string_parameters, allowed)


@cache
def usage_service() -> UsageService:
    from llmtally.repositories.rollups import RollupRepository
    from llmtally.repositories.usage import UsageRepository

    settings = api_settings()
    cursor_key = settings.cursor_secret.get_secret_value().encode() if settings.cursor_secret else None
    # Repositories are built per request: cheap (clients are cached by `llmtally.aws`), and always
    # on the current settings' endpoint.
    return UsageService(RollupRepository, lambda: UsageRepository(cursor_key=cursor_key), settings)


@cache
def budget_service() -> BudgetService:
    from llmtally.api.budgets import BudgetService
    from llmtally.repositories.budgets import BudgetRepository
    from llmtally.repositories.rollups import RollupRepository
    from llmtally.repositories.secrets import SecretsRepository
    from llmtally.settings import get_settings

    emails = None
    if get_settings().user_alerts_topic_arn:
        from llmtally.repositories.alert_email import AlertEmailRepository

        emails = AlertEmailRepository()
    return BudgetService(BudgetRepository(), SecretsRepository(), RollupRepository, emails=emails)


@cache
def insights_service() -> InsightsService:
    from llmtally.api.insights import InsightsService
    from llmtally.pricing import default_price_book
    from llmtally.repositories.rollups import RollupRepository

    return InsightsService(RollupRepository, default_price_book)


def reset() -> None:
    """Forget settings and services (tests, and a local stack started again in one process)."""
    get_api_settings.cache_clear()
    api_settings.cache_clear()
    settings_service.cache_clear()
    usage_service.cache_clear()
    insights_service.cache_clear()
    budget_service.cache_clear()

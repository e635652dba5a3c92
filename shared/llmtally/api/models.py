"""Request and response models of the HTTP API (the seed's field names, camelCase where it had them).

Requests are strict (`extra="forbid"`): an unknown field is a 400, never silently dropped. Keys are
`SecretStr` from the moment they are parsed, so a repr, a log line or a validation error never
shows one. Response models describe the JSON for the OpenAPI document; money is a JSON number
written from the exact Decimal (see `llmtally.api.jsonout`).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from llmtally.events import MODEL_PATTERN, Provider
from llmtally.pricing import known_models

#: `{userId}` in every path: the event contract's user id, minus `..` (it would reach into secret names).
PATH_USER_ID_PATTERN: Final = r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_@-])*\.?$"
PATH_USER_ID_MAX: Final = 128

#: Providers whose key the user brings; Bedrock uses the deployment's AWS credentials.
KEYED_PROVIDERS: Final = (Provider.ANTHROPIC, Provider.OPENAI, Provider.GOOGLE)
MAX_KEY_CHARS: Final = 512
MIN_KEY_CHARS: Final = 8
MAX_TOKENS_LIMIT: Final = 128_000
#: Anthropic's API (and Claude on Bedrock) accepts 0–1; OpenAI and Gemini accept 0–2.
MAX_TEMPERATURE: Final[dict[Provider, float]] = {
    Provider.ANTHROPIC: 1.0,
    Provider.BEDROCK: 1.0,
    Provider.OPENAI: 2.0,
    Provider.GOOGLE: 2.0,
}

UsdAmount = Annotated[Decimal, WithJsonSchema({"type": "number", "minimum": 0})]
ModelId = Annotated[str, Field(min_length=1, max_length=256, pattern=MODEL_PATTERN)]


def _check_key(value: SecretStr) -> SecretStr:
    # Messages never include the value: only what is wrong with it.
    text = value.get_secret_value().strip()
    if not text:
        raise ValueError("an API key must not be empty or whitespace")
    if len(text) < MIN_KEY_CHARS:
        raise ValueError(f"an API key has at least {MIN_KEY_CHARS} characters")
    if any(not ("\x21" <= ch <= "\x7e") for ch in text):
        raise ValueError("an API key is printable ASCII without spaces")
    return SecretStr(text)


ApiKey = Annotated[
    SecretStr,
    Field(max_length=MAX_KEY_CHARS, json_schema_extra={"minLength": 1}),
    AfterValidator(_check_key),
]


class Preferences(BaseModel):
    """A user's LLM preferences: the seed's item shape (`preferences` map in the settings table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defaultProvider: Provider
    queryModel: ModelId
    detectionModel: ModelId
    maxTokens: Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS_LIMIT)] = 2000
    temperature: Annotated[StrictFloat | StrictInt, Field(ge=0, le=2, allow_inf_nan=False)] = 0.0
    #: The response cache is opt-in (docs/caching.md).
    enableCaching: StrictBool = False
    trackUsage: StrictBool = True

    @model_validator(mode="after")
    def _models_offered_and_temperature_in_range(self) -> Preferences:
        offered = known_models(self.defaultProvider)
        for name in ("queryModel", "detectionModel"):
            model = getattr(self, name)
            if model not in offered:
                raise ValueError(
                    f"{name} {model!r} is not a {self.defaultProvider.value} model; see GET /api/llm-models"
                )
        limit = MAX_TEMPERATURE[self.defaultProvider]
        if self.temperature > limit:
            raise ValueError(f"temperature for {self.defaultProvider.value} is between 0 and {limit}")
        return self


#: For a new user: Bedrock (no key to bring) with Claude Sonnet 4.5. The seed's default named the
#: Anthropic API's id under Bedrock, which Bedrock does not accept; the rest is the seed's.
DEFAULT_PREFERENCES: Final = Preferences(
    defaultProvider=Provider.BEDROCK,
    queryModel="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    detectionModel="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    maxTokens=2000,
    temperature=0.0,
    enableCaching=False,
    trackUsage=True,
)


class ApiKeys(BaseModel):
    """Keys to store, by provider. Only the providers whose key a user brings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    anthropic: ApiKey | None = None
    openai: ApiKey | None = None
    google: ApiKey | None = None
    bedrock: Annotated[
        None,
        Field(description="Always absent: Bedrock uses the deployment's AWS credentials, no key is stored."),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _no_bedrock_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("bedrock") is not None:
            raise ValueError("bedrock takes no API key: it uses the deployment's AWS credentials")
        return data

    def given(self) -> dict[Provider, SecretStr]:
        return {p: key for p in KEYED_PROVIDERS if (key := getattr(self, p.value)) is not None}


class SettingsUpdate(BaseModel):
    """PUT /api/llm-settings/{userId}: preferences (replaced whole) and/or keys to store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preferences: Preferences | None = None
    apiKeys: ApiKeys = Field(default_factory=ApiKeys)


class ConnectionTestRequest(BaseModel):
    """POST /api/llm-settings/{userId}/test: the provider, and optionally a key to try before saving it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider
    apiKey: ApiKey | None = None
    model: ModelId | None = None

    @model_validator(mode="after")
    def _model_offered(self) -> ConnectionTestRequest:
        if self.model is not None and self.model not in known_models(self.provider):
            raise ValueError(f"model {self.model!r} is not a {self.provider.value} model; see GET /api/llm-models")
        if self.apiKey is not None and self.provider is Provider.BEDROCK:
            raise ValueError("bedrock takes no API key: it uses the deployment's AWS credentials")
        return self


# -- responses --------------------------------------------------------------------------------


class HasApiKeys(BaseModel):
    anthropic: bool
    openai: bool
    google: bool
    bedrock: bool = Field(description="Bedrock needs no key: whether this deployment can call Bedrock.")


class SettingsResponse(BaseModel):
    preferences: Preferences
    hasApiKeys: HasApiKeys


class SettingsUpdateResponse(SettingsResponse):
    message: str


class KeyDeletedResponse(BaseModel):
    provider: Provider
    deleted: bool = Field(description="False when there was no key to delete (deleting is idempotent).")
    hasApiKeys: HasApiKeys


class ConnectionTestResponse(BaseModel):
    success: bool
    provider: Provider
    message: str
    model: str | None = None
    latency_ms: float | None = None
    error: str | None = Field(default=None, description="On failure: the scrubbed reason (the seed's field).")


class ModelPricing(BaseModel):
    input: UsdAmount | None = Field(description="USD per 1M input tokens")
    output: UsdAmount | None = Field(description="USD per 1M output tokens")
    cacheRead: UsdAmount | None = Field(default=None, description="USD per 1M cache-read tokens")
    cacheWrite: UsdAmount | None = Field(default=None, description="USD per 1M cache-write tokens")


class CatalogModelOut(BaseModel):
    id: str
    name: str
    status: Literal["current", "legacy"]
    pricing: ModelPricing
    costPreviewUsd: UsdAmount | None = Field(description="What 1M input + 1M output tokens cost; null if unpriced")
    priceSource: Literal["catalog", "override", "unpriced"]


class CatalogProviderOut(BaseModel):
    id: Provider
    name: str
    requiresKey: bool
    models: list[CatalogModelOut]


class ModelsResponse(BaseModel):
    providers: list[CatalogProviderOut]


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorResponse(BaseModel):
    error: str
    details: list[ErrorDetail] | None = None


# -- usage ------------------------------------------------------------------------------------

USAGE_MISSING_DESCRIPTION: Final = (
    "Requests whose provider never reported usage (a stream closed early or ended without it, an error "
    "after partial output): counted, never a silent $0; their tokens and cost are lower bounds"
)


class WhereOut(BaseModel):
    """The one `where` filter of a breakdown, summary or daily answer."""

    dimension: str = Field(description="provider, model, operation or tag:<key>")
    value: str


class UsageBreakdownOut(BaseModel):
    """One provider, operation or model: the seed's `requests`, `tokens`, `cost_usd`, and more."""

    requests: int
    tokens: int
    cost_usd: UsdAmount
    billed_cost_usd: UsdAmount = Field(description="What was billed at ingest (differs after a re-rating)")
    errors: int
    unpriced_requests: int
    usage_missing: int = Field(description=USAGE_MISSING_DESCRIPTION)
    provider: str | None = Field(default=None, description="by_model only: the model's provider")


class UsageSummaryResponse(BaseModel):
    """GET /api/llm-usage/{userId}/summary: the seed's shape plus averages, the ledger, errors, unpriced."""

    user_id: str
    timezone: str
    start: datetime = Field(description="Start of the range (local midnight of `start`), inclusive")
    end: datetime = Field(description="End of the range (local midnight after `end`), exclusive")
    total_requests: int
    total_tokens: int
    total_cost_usd: UsdAmount
    billed_cost_usd: UsdAmount
    avg_cost_per_request_usd: UsdAmount
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    errors: int
    unpriced_requests: int = Field(description="Requests no price covers: counted, never a silent $0")
    usage_missing: int = Field(description=USAGE_MISSING_DESCRIPTION)
    avg_latency_ms: Annotated[Decimal, WithJsonSchema({"type": "number", "minimum": 0})]
    cache_hits: int = Field(description="Requests answered from the response cache (in total_requests, at $0)")
    saved_cost_usd: UsdAmount = Field(description="What the cache hits' answers cost when first produced")
    by_provider: dict[str, UsageBreakdownOut]
    by_operation: dict[str, UsageBreakdownOut]
    by_model: dict[str, UsageBreakdownOut]
    where: WhereOut | None = Field(default=None, description="The `where` filter the figures are under, if any")
    items_read: int = Field(description="Rollup items this answer read (bounded by days × dimensions)")
    queries: int = Field(description="DynamoDB Queries this answer made")


class BreakdownRowOut(BaseModel):
    """One value of the breakdown's dimension (or the `(rest)` / `(total)` row): the whole ledger."""

    value: str = Field(description="The dimension's value; '(other)' holds folded values, '(rest)' rows past limit")
    provider: str | None = Field(default=None, description="by=model only: the model's provider")
    requests: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: UsdAmount
    billed_cost_usd: UsdAmount = Field(description="What was billed at ingest (differs after a re-rating)")
    share_percent: Annotated[Decimal, WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100})] = Field(
        description="cost_usd over the total's cost_usd, in percent, two places (0 when the total is $0)"
    )
    errors: int
    unpriced_requests: int
    usage_missing: int = Field(description=USAGE_MISSING_DESCRIPTION)


class BreakdownResponse(BaseModel):
    """GET /api/llm-usage/{userId}/breakdown: cost by one dimension, optionally under one `where` filter."""

    user_id: str
    timezone: str
    start: datetime = Field(description="Start of the range (local midnight of `start`), inclusive")
    end: datetime = Field(description="End of the range (local midnight after `end`), exclusive")
    by: str = Field(description="provider, model, operation or tag:<key>")
    where: WhereOut | None
    rows: list[BreakdownRowOut] = Field(description="Costliest first (then most requests, then value), at most `limit`")
    other: BreakdownRowOut | None = Field(description="The rows past `limit`, summed (value '(rest)'); null if none")
    folded_values: int = Field(
        description="For a tag dimension: distinct values folded into '(other)' in the range's months (else 0)"
    )
    total: BreakdownRowOut = Field(description="Everything the filter selects (value '(total)')")
    items_read: int = Field(description="Rollup items this answer read (bounded by days × values in range)")
    queries: int = Field(description="DynamoDB Queries this answer made")


class TagKeyOut(BaseModel):
    key: str
    values: int = Field(description="Distinct values admitted this month (past the bound they fold into '(other)')")
    folded_values: int = Field(description="Distinct values folded into '(other)' this month")


class TagKeysResponse(BaseModel):
    """GET /api/llm-usage/{userId}/tags: the tenant's tag keys, for a "Breakdown by" selector."""

    user_id: str
    period: str = Field(description="The month the counts are for, YYYY-MM (UTC)")
    keys: list[TagKeyOut] = Field(description="Alphabetical")


class DailyUsageOut(BaseModel):
    date: date
    requests: int
    tokens: int
    cost_usd: UsdAmount
    billed_cost_usd: UsdAmount
    errors: int
    unpriced_requests: int
    usage_missing: int = Field(description=USAGE_MISSING_DESCRIPTION)


class DailyUsageResponse(BaseModel):
    """GET /api/llm-usage/{userId}/daily: the seed's `{daily_usage, days}`, one row per local day."""

    user_id: str
    timezone: str
    days: int
    daily_usage: list[DailyUsageOut] = Field(description="Oldest first, ending today in `timezone`, zero-filled")
    where: WhereOut | None = Field(default=None, description="The `where` filter the figures are under, if any")
    items_read: int
    queries: int


class UsageEntryOut(BaseModel):
    """One raw entry: identity, what, the whole token ledger, latency, money (decimal USD), provenance."""

    timestamp: datetime
    event_id: str
    request_id: str | None
    user_id: str
    provider: Provider
    model: str
    operation_type: str
    original_operation_type: str | None = Field(description="What the producer sent, when it was folded")
    status: Literal["ok", "error"]
    error_type: str | None
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_5m_tokens: int | None
    cache_write_1h_tokens: int | None
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int
    latency_ms: int
    cost_usd: UsdAmount
    cost_source: Literal["catalog", "override", "reported", "unpriced"]
    price_version: str
    reported_cost_usd: UsdAmount | None = Field(description="What the producer computed, if it said")
    metadata: dict[str, str | int | bool | None]
    tags: dict[str, str] = Field(description="Attribution dimensions the producer sent ({} when none)")
    usage_source: Literal["reported", "missing"] = Field(
        description="'missing' when the provider never reported the call's usage (a stream closed early or "
        "ended without it, an error after partial output): its tokens and cost are lower bounds"
    )
    cache_hit: bool = Field(description="Answered from the response cache: no provider call, $0")
    saved_cost_usd: UsdAmount | None = Field(description="For a cache hit: what the answer cost when first produced")


class UsageEntriesResponse(BaseModel):
    """GET /api/llm-usage/{userId}: the seed's `{entries, count}` and the cursor of the next page."""

    entries: list[UsageEntryOut]
    count: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


# -- insights: forecast, anomalies, recommendations ---------------------------------------------


class InsightScope(BaseModel):
    """What an insight answer's figures are under: its `where` filter, and what that filter leaves out."""

    where: WhereOut | None = Field(default=None, description="The `where` filter the figures are under, if any")
    folded_months: list[str] = Field(
        default_factory=list,
        description="Under `where=tag:<key>:<value>`: the UTC months (YYYY-MM) of the window in which the value "
        "was past the tag's monthly bound; its calls then are counted in (other), not in these figures",
    )
    note: str | None = Field(
        default=None, description="Why a figure under `where` is partial or means something else (null: none)"
    )


class ForecastResponse(InsightScope):
    """GET /api/llm-usage/{userId}/forecast: the current local month's spend so far and at month end."""

    user_id: str
    timezone: str
    period: str = Field(description="The local calendar month, YYYY-MM")
    period_start: datetime = Field(description="Local midnight of the 1st (inclusive)")
    period_end: datetime = Field(description="Local midnight of the next month's 1st (exclusive)")
    days_elapsed: int = Field(description="Local days of the month so far, today included")
    days_in_period: int
    month_to_date_usd: UsdAmount = Field(description="Spend from the 1st through now (today so far included)")
    forecast_usd: UsdAmount = Field(description="Forecast month-end total; never below month_to_date_usd")
    low_usd: UsdAmount = Field(description="Low end of an ~80% range (never below month_to_date_usd)")
    high_usd: UsdAmount = Field(description="High end of an ~80% range")
    method: Literal["seasonal_trend", "trend", "intermittent", "run_rate", "first_day", "none"] = Field(
        description="seasonal_trend/trend with ≥ 21/14 days of history; run_rate (wide range) before; "
        "first_day on the first day of use; none without usage (see docs/insights.md)"
    )


class AnomalyOut(BaseModel):
    date: date
    cost_usd: UsdAmount
    expected_usd: UsdAmount
    score: Annotated[Decimal, WithJsonSchema({"type": "number"})] = Field(
        description="(cost − expected) / robust scale, two places; ≥ 3.5 in absolute value"
    )
    direction: Literal["high", "low"]


class AnomaliesResponse(InsightScope):
    """GET /api/llm-usage/{userId}/anomalies: unusual local days of the last `days` days."""

    user_id: str
    timezone: str
    days: int
    method: str
    anomalies: list[AnomalyOut] = Field(description="Oldest first")


class CandidateOut(BaseModel):
    provider: Provider
    model: str
    cost_usd: UsdAmount = Field(description="The operation's token mix of the period at this model's prices")
    saving_usd: UsdAmount = Field(description="Actual cost − cost_usd (only cheaper candidates are listed)")
    saving_percent: Annotated[Decimal, WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100})]


class OperationRecommendationOut(BaseModel):
    operation_type: str
    requests: int
    cost_usd: UsdAmount = Field(description="What the period's calls of this operation cost")
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cache_hit_rate: Annotated[Decimal, WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1})] = Field(
        description="Cache-read tokens over all input tokens (uncached + cache reads + cache writes)"
    )
    candidates: list[CandidateOut] = Field(description="Up to 5 current models cheaper than cost_usd, cheapest first")


class RecommendationsResponse(InsightScope):
    """GET /api/llm-usage/{userId}/recommendations: cheaper models per operation type."""

    user_id: str
    days: int
    operations: list[OperationRecommendationOut] = Field(description="Costliest operation first")

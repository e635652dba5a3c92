"""The app's configuration: CDK context (`cdk.json`, or `cdk deploy -c key=value`), validated once.

Every key has a default, so `cdk deploy` needs none; names come from `llmtally.resources` with the
prefix given here, exactly as the local stack builds them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final

from aws_cdk import RemovalPolicy
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from llmtally.api.config import web_origin
from llmtally.resources import DEFAULT_PREFIX, ResourceNames
from llmtally.settings import NAME_PREFIX_PATTERN

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
#: The Powertools metrics namespace every function reports to (`llmtally.observability.METRICS_NAMESPACE`).
METRICS_NAMESPACE: Final = "llmtally"
#: CloudWatch Logs' accepted retention periods (days).
LOG_RETENTION_DAYS: Final = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

#: Lambda keeps this much of the account's concurrency unreserved, for every function without a
#: reservation: "You can reserve up to the Unreserved account concurrency value minus 100" (the
#: Lambda developer guide, "Configuring reserved concurrency"); an account whose quota is below
#: 100 cannot reserve any.
UNRESERVED_CONCURRENCY_MINIMUM: Final = 100


def unreserved_minimum(account_limit: int) -> int:
    return min(UNRESERVED_CONCURRENCY_MINIMUM, account_limit)


class AppConfig(BaseModel):
    """The context keys (camelCase in `cdk.json`; see `CONTEXT_KEYS`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    #: Resource name prefix: tables, bus, queues, secrets (`{prefix}/users/…`), stack name.
    prefix: str = Field(default=DEFAULT_PREFIX, pattern=NAME_PREFIX_PATTERN)
    #: A label for the deployment (tags, the Cognito domain); not part of resource names.
    stage: str = Field(default="prod", pattern=r"^[a-z][a-z0-9-]{0,15}$")
    #: Retention of every function's log group and of the API's access logs.
    log_retention_days: int = 30
    #: Where alarm notifications go (an SNS e-mail subscription to confirm); none: topic only.
    alarm_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    #: Where budget alerts go by e-mail (an SNS subscription to confirm; every user's alerts, for the
    #: operators); none: the alert topic only. Users' own Slack webhooks are set in the dashboard.
    alert_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    #: Extra origins allowed by the API's CORS and the sign-in callbacks (the dashboard's own
    #: CloudFront origin is always allowed), e.g. `http://localhost:5173` while developing the UI.
    allowed_web_origins: tuple[str, ...] = ()
    #: The built dashboard (`make web`), relative to the repository root.
    web_dist_dir: str = "web/dist"
    #: The Cognito hosted UI's domain prefix (globally unique per region); default
    #: `{prefix}-{stage}-{account id}`.
    cognito_domain_prefix: str | None = Field(default=None, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
    #: HTTP API throttling for the whole stage (requests per second, burst).
    api_throttle_rate: int = Field(default=50, ge=1, le=10_000)
    api_throttle_burst: int = Field(default=100, ge=1, le=5_000)
    #: Days the event bus archive keeps usage events for replay (0: forever).
    archive_retention_days: int = Field(default=30, ge=0, le=3650)
    #: Whether the connection test may call Bedrock with the deployment's own credentials.
    bedrock_enabled: bool = True
    #: Roles of producers that build users' providers (`provider_for_user`): the users' key policy
    #: names them (and they attach `ProviderKeysPolicyArn`); no other producer may decrypt a key.
    producer_role_arns: tuple[
        Annotated[
            str, StringConstraints(pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", max_length=600)
        ],
        ...,
    ] = ()
    #: Keep tables, the user pool, the keys and the dashboard bucket on `cdk destroy` (data survives).
    retain_data: bool = True
    #: Aggregation freshness alarm: the stream's iterator age (seconds) above which it fires.
    iterator_age_alarm_seconds: int = Field(default=300, ge=10)
    #: The API 5xx alarm: the share of requests (percent) answered 5xx in 5 minutes above which it
    #: fires, counted only when at least `api_error_rate_min_requests` requests came in.
    api_error_rate_alarm_percent: int = Field(default=5, ge=1, le=100)
    api_error_rate_min_requests: int = Field(default=20, ge=1, le=100_000)

    #: X-Ray: active tracing of every function and Powertools' Tracer (a subsegment per AWS call).
    #: Off: no X-Ray at all, and no function imports the X-Ray SDK (a shorter cold start).
    tracing: bool = True

    #: Per-route throttles, below the stage's (requests per second, burst; shared by all callers):
    #: the CSV export (`GET /api/llm-usage/{userId}/export`) and the connection test.
    export_throttle_rate: int = Field(default=1, ge=1, le=10_000)
    export_throttle_burst: int = Field(default=5, ge=1, le=5_000)
    connection_test_throttle_rate: int = Field(default=1, ge=1, le=10_000)
    connection_test_throttle_burst: int = Field(default=5, ge=1, le=5_000)
    #: The HTTP ingest routes (`POST /api/usage-events`, `POST /api/otel/v1/traces`), each: up to 500
    #: events or 5,000 spans per request, authenticated by ingest keys (docs/ingest.md).
    ingest_throttle_rate: int = Field(default=20, ge=1, le=10_000)
    ingest_throttle_burst: int = Field(default=40, ge=1, le=5_000)

    #: Reserved concurrency per function (0: none, the function shares the account's unreserved
    #: pool — never Lambda's "reserved 0", which stops a function). A reservation is both a floor
    #: (the pipeline always has room, whatever the API does) and a ceiling (the API cannot take more).
    ingest_reserved_concurrency: int = Field(default=10, ge=0, le=1000)
    aggregate_reserved_concurrency: int = Field(default=10, ge=0, le=1000)
    api_reserved_concurrency: int = Field(default=50, ge=0, le=1000)
    connection_test_reserved_concurrency: int = Field(default=10, ge=0, le=1000)
    notify_reserved_concurrency: int = Field(default=0, ge=0, le=1000)
    #: The account's Lambda concurrency quota in the region (Service Quotas: "Concurrent
    #: executions"; 1,000 by default, as low as 10 on a new account). Only checked against.
    account_concurrency_limit: int = Field(default=1000, ge=10)

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"logRetentionDays must be one of {LOG_RETENTION_DAYS}")
        return value

    @field_validator("allowed_web_origins", "producer_role_arns", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        # `-c allowedWebOrigins=a,b` arrives as one string; cdk.json may hold a list.
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                return tuple(json.loads(stripped))
            return tuple(part.strip() for part in stripped.split(",") if part.strip())
        return value

    @field_validator("allowed_web_origins")
    @classmethod
    def _https_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # The host is matched whole: `http://localhost.evil.com` is not this machine (llmtally.api.config).
        return tuple(web_origin(origin) for origin in value)

    @property
    def names(self) -> ResourceNames:
        return ResourceNames(self.prefix)

    @property
    def data_removal_policy(self) -> RemovalPolicy:
        """What `cdk destroy` does to what holds data (tables, user pool, keys, buckets)."""
        return RemovalPolicy.RETAIN if self.retain_data else RemovalPolicy.DESTROY

    @field_validator("ingest_reserved_concurrency")
    @classmethod
    def _ingest_reservation(cls, value: int) -> int:
        # The queue's event source then polls with at most this many concurrent batches (its
        # floor is 2); without that cap, messages polled beyond the reservation are throttled back
        # to the queue and count as receives towards the DLQ.
        if value == 1:
            raise ValueError("ingestReservedConcurrency is 0 (none) or at least 2")
        return value

    @model_validator(mode="after")
    def _consistent_limits(self) -> AppConfig:
        reservable = self.account_concurrency_limit - unreserved_minimum(self.account_concurrency_limit)
        if self.reserved_concurrency_total > reservable:
            raise ValueError(
                f"the reserved concurrency of the functions ({self.reserved_concurrency_total}) leaves less than "
                f"{unreserved_minimum(self.account_concurrency_limit)} of the account's "
                f"{self.account_concurrency_limit} unreserved: lower the *ReservedConcurrency values (0: none) "
                "or raise the quota and set accountConcurrencyLimit"
            )
        for route, rate, burst in (
            ("export", self.export_throttle_rate, self.export_throttle_burst),
            ("connectionTest", self.connection_test_throttle_rate, self.connection_test_throttle_burst),
            ("ingest", self.ingest_throttle_rate, self.ingest_throttle_burst),
        ):
            if rate > self.api_throttle_rate or burst > self.api_throttle_burst:
                raise ValueError(f"{route}Throttle* is a route's limit: at most the stage's apiThrottle*")
        return self

    @property
    def reserved_concurrency(self) -> dict[str, int]:
        """Each function's reservation, by the function's short name (0: none)."""
        return {
            "ingest": self.ingest_reserved_concurrency,
            "aggregate": self.aggregate_reserved_concurrency,
            "api": self.api_reserved_concurrency,
            "connection-test": self.connection_test_reserved_concurrency,
            "notify": self.notify_reserved_concurrency,
        }

    @property
    def reserved_concurrency_total(self) -> int:
        return sum(self.reserved_concurrency.values())

    @property
    def stack_name(self) -> str:
        return f"{self.prefix}-llmtally"

    @property
    def web_dist_path(self) -> Path:
        path = Path(self.web_dist_dir)
        return path if path.is_absolute() else REPO_ROOT / path

    @classmethod
    def from_context(cls, get: Any) -> AppConfig:
        """Read every key with `get(key)` (e.g. `app.node.try_get_context`); absent keys keep defaults."""
        values = {key: get(key) for key in CONTEXT_KEYS}
        return cls.model_validate({key: value for key, value in values.items() if value is not None})


#: The context keys, as written in cdk.json or `-c key=value`.
CONTEXT_KEYS: Final = tuple(field.alias or name for name, field in AppConfig.model_fields.items())

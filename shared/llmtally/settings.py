"""Settings, validated once from the environment (`LLMTALLY_*`); code never reads os.environ itself."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmtally.resources import ResourceNames

NAME_PREFIX_PATTERN = r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$"


class Settings(BaseSettings):
    """Where llmtally's resources are and how they behave. Same code on AWS, the local stack, tests."""

    model_config = SettingsConfigDict(env_prefix="LLMTALLY_", frozen=True, extra="ignore")

    prefix: str = Field(default="mantissa-log", pattern=NAME_PREFIX_PATTERN)
    region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("LLMTALLY_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    #: An AWS endpoint override (the local emulator); None on AWS.
    endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("LLMTALLY_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    #: Negotiated prices and private models (JSON, see docs/pricing.md).
    price_overrides_file: Path | None = None
    #: Raw usage entries expire after this many days (DynamoDB TTL).
    raw_ttl_days: int = Field(default=90, ge=1, le=3650)
    #: Rollups outlive raw entries (13 months by default).
    rollup_ttl_days: int = Field(default=396, ge=1, le=3650)
    #: Per-tenant cardinality bounds (`llmtally.repositories.cardinality`): distinct operation types
    #: and distinct models (`{provider}#{model}`) a tenant may roll up; beyond them events are stored
    #: under `other` / `(other)` with the sent value kept on the raw entry — counted, never dropped.
    #: Lowering a bound never un-admits what is already registered.
    max_operation_types_per_tenant: int = Field(default=64, ge=1, le=1000)
    max_models_per_tenant: int = Field(default=100, ge=1, le=1000)
    #: Tag keys a tenant may roll up (a key beyond it stays on the raw entry, not a dimension), and
    #: distinct values per (tenant, key) per UTC month (beyond it a value rolls up as `(other)`).
    max_tag_keys_per_tenant: int = Field(default=16, ge=1, le=64)
    max_tag_values_per_key: int = Field(default=1000, ge=1, le=2000)  # a month's set fits one 400 KB item
    #: The SNS topic users' own alert e-mails go through (one filtered e-mail subscription per user,
    #: `llmtally.repositories.alert_email`); None: users cannot give an alert address.
    user_alerts_topic_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"
    )
    #: KMS key for users' provider secrets (None: the account's default key).
    secrets_kms_key_id: str | None = None
    #: What a Slack webhook URL must start with, checked when it is stored and again before each
    #: post (a stored URL can never point the notifier elsewhere). Tests point it at a loopback server.
    slack_webhook_allowed_prefix: str = Field(
        default="https://hooks.slack.com/services/", pattern=r"^https?://[A-Za-z0-9.:\[\]-]+/([A-Za-z0-9._-]+/)*$"
    )

    @property
    def names(self) -> ResourceNames:
        return ResourceNames(self.prefix)


@cache
def get_settings() -> Settings:
    return Settings()

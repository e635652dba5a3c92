"""The usage event, contract v1: what every producer publishes and the ingest handler accepts.

One pydantic model, strict, versioned. The token counts form a *ledger* of non-overlapping
buckets, so adding them never counts a token twice:

    input_tokens        uncached input
    cache_read_tokens   input served from the prompt cache
    cache_write_tokens  input written to the prompt cache (split 5m / 1h where the provider says)
    output_tokens       visible output
    reasoning_tokens    hidden reasoning/thinking output (billed as output, reported apart)

`total_tokens` is derived, never sent.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeGuard

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    computed_field,
    field_serializer,
    field_validator,
    model_validator,
)

SCHEMA_VERSION: Final = 1
EVENT_SOURCE: Final = "llmtally"
EVENT_DETAIL_TYPE: Final = "LLMUsage"

#: The seed's operation types; any other value matching OPERATION_TYPE_PATTERN is accepted too.
SEED_OPERATION_TYPES: Final = ("query_generation", "detection_rule", "conversation", "rule_enrichment")

#: A tenant id: letters, digits, `._@-`, starting with a letter or digit, never two dots in a row
#: (ids become one segment of secret names, `{prefix}/users/{user_id}/…`, and the API's `{userId}`:
#: the API refuses `..`, so the contract does too). The pattern bounds the shape and, loosely, the
#: length (≤ 256); `USER_ID_MAX_CHARS` is the length every model checks beside it. No look-ahead:
#: pydantic's regex engine has none.
USER_ID_PATTERN: Final = r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_@-]){0,127}\.?$"
USER_ID_MAX_CHARS: Final = 128
_USER_ID: Final = re.compile(USER_ID_PATTERN)


def is_valid_user_id(value: object) -> TypeGuard[str]:
    """Whether `value` is a tenant id: the pattern *and* the length (the pattern alone lets 256 by)."""
    return isinstance(value, str) and len(value) <= USER_ID_MAX_CHARS and _USER_ID.match(value) is not None


def check_user_id(value: str, what: str = "user_id") -> str:
    """`value` if it is a tenant id, else ValueError (showing at most 70 characters of it)."""
    if not is_valid_user_id(value):
        raise ValueError(
            f"invalid {what} {str(value)[:70]!r}: 1-{USER_ID_MAX_CHARS} of letters, digits and ._@-, "
            "starting with a letter or digit, no '..'"
        )
    return value


#: A tenant id as a pydantic field: the pattern and the length together.
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, max_length=USER_ID_MAX_CHARS)]
EVENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$"
OPERATION_TYPE_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
# Model ids as providers name them: "gpt-4o", "models/gemini-2.5-pro", Bedrock ids and ARNs.
MODEL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$"
REQUEST_ID_PATTERN: Final = r"^[\x21-\x7e]{1,128}$"  # printable ASCII, no spaces
METADATA_KEY_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}$"
#: Tag keys become rollup dimensions and query syntax (`by=tag:<key>`, `where=tag:<key>:<value>`):
#: lower case, no colon, short.
TAG_KEY_PATTERN: Final = r"^[a-z][a-z0-9_.-]{0,39}$"
#: Tag values: printable, no leading/trailing space, no parentheses (`(other)` is the reserved fold).
TAG_VALUE_PATTERN: Final = r"^[A-Za-z0-9_.:@/+=#-](?:[A-Za-z0-9 _.:@/+=#-]{0,126}[A-Za-z0-9_.:@/+=#-])?$"

#: The largest count any one bucket may hold for one call; keeps sums far from any overflow.
MAX_TOKENS_PER_BUCKET: Final = 1_000_000_000
MAX_LATENCY_MS: Final = 3_600_000
MAX_REPORTED_COST_USD: Final = Decimal(1_000_000)
MAX_METADATA_KEYS: Final = 16
MAX_METADATA_VALUE_CHARS: Final = 256
MAX_METADATA_BYTES: Final = 2048
MAX_TAGS: Final = 8
#: The value every tag value past a tenant's cardinality bound folds into (never sent by producers).
OTHER_TAG_VALUE: Final = "(other)"
#: How far in the future a timestamp may be (producer clock skew).
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
#: How old an event may be when validated (the raw-entry retention; older would be born expired).
MAX_EVENT_AGE: Final = timedelta(days=90)

SECRET_KEY_NAME = re.compile(r"(api[_-]?key|secret|passw(or)?d|token|authorization|credential)", re.I)
# Shapes of provider keys: a value that looks like one is refused rather than stored.
SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{30,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|xox[abp]-[A-Za-z0-9-]{10,})"
)


class Provider(StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GOOGLE = "google"
    BEDROCK = "bedrock"


class Status(StrEnum):
    OK = "ok"
    ERROR = "error"


class UsageSource(StrEnum):
    """Where an event's token ledger came from."""

    #: The provider reported the usage (the default; also a cache hit's zero ledger).
    REPORTED = "reported"
    #: The usage never arrived: a stream closed early, the provider omitted it, or an error came
    #: after partial output. The ledger holds what is known (often zeros); the call is counted
    #: as `usage_missing`, never as a silent $0 success.
    MISSING = "missing"


TokenCount = Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS_PER_BUCKET)]
MetadataValue = str | StrictInt | bool | None


class TokenCounts(BaseModel):
    """The canonical token ledger: non-overlapping buckets; `total_tokens` is their sum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: TokenCount = Field(default=0, description="Uncached input tokens.")
    cache_read_tokens: TokenCount = Field(default=0, description="Input tokens read from the prompt cache.")
    cache_write_tokens: TokenCount = Field(
        default=0, description="Input tokens written to the prompt cache (all TTLs)."
    )
    cache_write_5m_tokens: TokenCount | None = Field(
        default=None, description="Of cache_write_tokens, those written with a 5-minute TTL, if reported."
    )
    cache_write_1h_tokens: TokenCount | None = Field(
        default=None, description="Of cache_write_tokens, those written with a 1-hour TTL, if reported."
    )
    output_tokens: TokenCount = Field(default=0, description="Visible output tokens.")
    reasoning_tokens: TokenCount = Field(
        default=0, description="Reasoning/thinking tokens: billed as output, not part of output_tokens."
    )

    @model_validator(mode="after")
    def _cache_write_split_adds_up(self) -> TokenCounts:
        five, hour = self.cache_write_5m_tokens, self.cache_write_1h_tokens
        if five is None and hour is None:
            return self
        split = (five or 0) + (hour or 0)
        if split != self.cache_write_tokens:
            raise ValueError(
                f"cache_write_5m_tokens + cache_write_1h_tokens ({split}) must equal "
                f"cache_write_tokens ({self.cache_write_tokens})"
            )
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
            + self.output_tokens
            + self.reasoning_tokens
        )

    def ledger(self) -> TokenCounts:
        """The token buckets alone (drops any other field of a subclass)."""
        return TokenCounts.model_validate(self.model_dump(include=set(TokenCounts.model_fields)))


def _utc_millis(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone (e.g. 2026-11-28T12:00:00Z)")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def check_metadata(value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"metadata has {len(value)} keys; at most {MAX_METADATA_KEYS} are allowed")
    for key, item in value.items():
        if not re.match(METADATA_KEY_PATTERN, key):
            raise ValueError(f"metadata key {key[:70]!r} must match {METADATA_KEY_PATTERN}")
        if SECRET_KEY_NAME.search(key):
            raise ValueError(f"metadata key {key!r} looks like a secret's name; secrets never go in events")
        if isinstance(item, str):
            if len(item) > MAX_METADATA_VALUE_CHARS:
                raise ValueError(
                    f"metadata value for {key!r} has {len(item)} characters; "
                    f"at most {MAX_METADATA_VALUE_CHARS} are allowed"
                )
            if SECRET_VALUE.search(item):
                raise ValueError(f"metadata value for {key!r} looks like an API key; secrets never go in events")
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed")
    return value


def check_tags(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_TAGS:
        raise ValueError(f"tags has {len(value)} keys; at most {MAX_TAGS} are allowed")
    for key, item in value.items():
        if not re.match(TAG_KEY_PATTERN, key):
            raise ValueError(f"tag key {key[:70]!r} must match {TAG_KEY_PATTERN}")
        if SECRET_KEY_NAME.search(key):
            raise ValueError(f"tag key {key!r} looks like a secret's name; secrets never go in events")
        if not isinstance(item, str) or not re.match(TAG_VALUE_PATTERN, item):
            shown = item[:70] if isinstance(item, str) else type(item).__name__
            raise ValueError(
                f"tag value for {key!r} ({shown!r}) must be 1-128 printable characters "
                "(letters, digits, space inside, _ . : @ / + = # -)"
            )
        if SECRET_VALUE.search(item):
            raise ValueError(f"tag value for {key!r} looks like an API key; secrets never go in events")
    return value


def new_event_id() -> str:
    """A fresh producer-side event id (the dedupe key)."""
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return _utc_millis(datetime.now(UTC))


class UsageEvent(TokenCounts):
    """One LLM call's usage, as published by a producer (contract v1).

    Validate untrusted input with `UsageEvent.from_json(...)` / `UsageEvent.model_validate(...)`;
    pass `context={"now": datetime}` to check the timestamp window against a given clock.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="LLMUsageEvent",
        json_schema_extra={"$id": "https://llmtally.dev/schemas/usage-event-v1.json"},
    )

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Contract version.")
    event_id: str = Field(
        default_factory=new_event_id,
        pattern=EVENT_ID_PATTERN,
        description="Producer-generated unique id; the dedupe key. Retries of one call reuse it.",
    )
    user_id: str = Field(
        pattern=USER_ID_PATTERN, max_length=USER_ID_MAX_CHARS, description="The tenant the call is billed to."
    )
    request_id: str | None = Field(default=None, pattern=REQUEST_ID_PATTERN, description="The caller's correlation id.")
    timestamp: datetime = Field(
        default_factory=utc_now,
        description="When the call finished: UTC, ISO 8601 with offset, ms precision.",
    )
    provider: Provider
    model: str = Field(pattern=MODEL_PATTERN, description="The model as the provider named it.")
    operation_type: str = Field(
        pattern=OPERATION_TYPE_PATTERN,
        description="What the call was for: " + ", ".join(SEED_OPERATION_TYPES) + ", or a custom name.",
    )
    status: Status = Status.OK
    error_type: str | None = Field(
        default=None,
        pattern=OPERATION_TYPE_PATTERN,
        description="For status=error: authentication, rate_limit, timeout, unavailable, invalid_request, "
        "content_filtered or other.",
    )
    latency_ms: Annotated[StrictInt, Field(ge=0, le=MAX_LATENCY_MS)] = 0
    reported_cost_usd: Decimal | None = Field(
        default=None,
        ge=0,
        le=MAX_REPORTED_COST_USD,
        decimal_places=9,
        description="The producer's own cost figure (USD, at most 9 decimals); the ingest prices centrally.",
    )
    metadata: Annotated[dict[str, MetadataValue], AfterValidator(check_metadata)] = Field(
        default_factory=dict,
        description=f"Small map (≤ {MAX_METADATA_KEYS} keys, ≤ {MAX_METADATA_BYTES} bytes); never a secret.",
    )
    tags: Annotated[dict[str, str], AfterValidator(check_tags)] = Field(
        default_factory=dict,
        description=f"Attribution dimensions (customer, feature, team, environment, ...): ≤ {MAX_TAGS} "
        f"keys matching {TAG_KEY_PATTERN}, string values matching {TAG_VALUE_PATTERN}; never a secret. "
        "Rolled up like provider/model/operation, with a bounded number of values per tenant.",
    )
    usage_source: UsageSource = Field(
        default=UsageSource.REPORTED,
        description="Where the token ledger came from: 'reported' by the provider, or 'missing' (a "
        "stream closed early, the provider omitted usage, or an error came after partial output).",
    )
    cache_hit: StrictBool = Field(
        default=False,
        description="The answer came from llmtally's response cache: no provider call, nothing billed "
        "(every token count is 0 and status is ok).",
    )
    saved_cost_usd: Decimal | None = Field(
        default=None,
        ge=0,
        le=MAX_REPORTED_COST_USD,
        decimal_places=9,
        description="For cache_hit only: what the cached answer cost when it was first produced (USD, "
        "at most 9 decimals) — the money this hit saved.",
    )

    @field_validator("timestamp", mode="after")
    @classmethod
    def _timestamp_in_window(cls, value: datetime, info: ValidationInfo) -> datetime:
        value = _utc_millis(value)
        now = (info.context or {}).get("now") or datetime.now(UTC)
        if value > now + MAX_CLOCK_SKEW:
            raise ValueError(f"timestamp {value.isoformat()} is more than {MAX_CLOCK_SKEW} in the future")
        if value < now - MAX_EVENT_AGE:
            raise ValueError(f"timestamp {value.isoformat()} is older than {MAX_EVENT_AGE.days} days")
        return value

    @field_validator("reported_cost_usd", "saved_cost_usd", mode="before")
    @classmethod
    def _no_float_money(cls, value: Any) -> Any:
        # A JSON number arrives as float in python mode; go through its shortest repr, never binary.
        if isinstance(value, float):
            return Decimal(repr(value))
        return value

    @model_validator(mode="after")
    def _error_type_only_on_errors(self) -> UsageEvent:
        if self.error_type is not None and self.status is not Status.ERROR:
            raise ValueError("error_type is only allowed when status is 'error'")
        return self

    @model_validator(mode="after")
    def _cache_hits_bill_nothing(self) -> UsageEvent:
        # A hit made no provider call: tokens or a cost on it would be counted as spend twice.
        if not self.cache_hit:
            if self.saved_cost_usd is not None:
                raise ValueError("saved_cost_usd is only allowed when cache_hit is true")
            return self
        if self.status is not Status.OK:
            raise ValueError("a cache_hit event has status 'ok' (a failed call is never a cache hit)")
        if self.usage_source is not UsageSource.REPORTED:
            raise ValueError("a cache_hit event's usage is known (zero): usage_source must be 'reported'")
        if self.total_tokens:
            raise ValueError("a cache_hit event carries no tokens: nothing was sent to the provider")
        if self.reported_cost_usd:
            raise ValueError("a cache_hit event costs nothing: reported_cost_usd must be 0 or absent")
        return self

    @field_serializer("timestamp")
    def _serialize_timestamp(self, value: datetime) -> str:
        return format_timestamp(value)

    @field_serializer("reported_cost_usd", "saved_cost_usd")
    def _serialize_cost(self, value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")

    # -- helpers ---------------------------------------------------------------------------

    @classmethod
    def from_json(cls, raw: str | bytes, *, now: datetime | None = None) -> UsageEvent:
        return cls.model_validate_json(raw, context={"now": now} if now else None)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True, exclude=self._wire_exclusions())

    def to_detail(self) -> dict[str, Any]:
        """The EventBridge `detail` / SQS body as a JSON-ready dict."""
        return self.model_dump(mode="json", exclude_none=True, exclude=self._wire_exclusions())

    def _wire_exclusions(self) -> set[str]:
        # Additive v1 fields at their defaults are left out: ordinary events stay byte-identical to
        # what producers sent before those fields existed.
        excluded = {"total_tokens"}
        if not self.cache_hit:
            excluded.add("cache_hit")
        if not self.tags:
            excluded.add("tags")
        if self.usage_source is UsageSource.REPORTED:
            excluded.add("usage_source")
        return excluded

    @property
    def sort_key(self) -> str:
        """`timestamp#event_id`: the raw entry's sort key (a bare timestamp collides)."""
        return f"{format_timestamp(self.timestamp)}#{self.event_id}"


def format_timestamp(value: datetime) -> str:
    """UTC ISO 8601 with milliseconds and a Z: sorts lexicographically in time order."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def usage_event_json_schema() -> dict[str, Any]:
    """The JSON Schema producers in other languages validate against (docs/usage-event.schema.json)."""
    schema = UsageEvent.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema

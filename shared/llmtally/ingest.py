"""Ingest: one SQS message body in, one raw entry (or one reject) out. No Lambda, no event shapes.

    body ──► size check ──► JSON ──► envelope (EventBridge `detail`) or bare event ──► schema version
         ──► contract (UsageEvent, with the clock) ──► operation-type bound ──► central price
         ──► PutItem if absent (a redelivery is a no-op)  /  or a reject with its reason

Permanent problems (the message can never succeed) become a *reject*: recorded with a reason and
the bounded original body, and the message is consumed. Anything else (throttling, 5xx, network,
the rejects write itself) propagates as an exception, so the batch reports the message as failed
and SQS redelivers it, ending in the DLQ after N receives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmtally.events import (
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    SCHEMA_VERSION,
    SECRET_KEY_NAME,
    SECRET_VALUE,
    USER_ID_PATTERN,
    Provider,
    Status,
    TokenCounts,
    UsageEvent,
    format_timestamp,
)
from llmtally.money import nanos_to_usd, usd_to_nanos
from llmtally.pricing import CostSource, PriceBook, PricedCost

if TYPE_CHECKING:
    from llmtally.repositories.operation_types import OperationTypeRegistry
    from llmtally.repositories.rejects import RejectsRepository
    from llmtally.repositories.usage import UsageRepository

#: SQS's classic message limit; a larger body is refused before it is parsed.
MAX_BODY_BYTES: Final = 256 * 1024
#: Pydantic errors quoted in a reject reason (the rest are counted).
MAX_REASON_ERRORS: Final = 8
MAX_REASON_CHARS: Final = 2000
#: What a tenant's operation types beyond the registry's limit are stored as.
OVERFLOW_OPERATION_TYPE: Final = "other"


class RejectReason(StrEnum):
    """Why a message can never be ingested. Stable codes: dashboards and alarms key on them."""

    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_ENVELOPE = "bad_envelope"
    WRONG_SOURCE = "wrong_source"
    WRONG_DETAIL_TYPE = "wrong_detail_type"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    CONTRACT_VIOLATION = "contract_violation"


class Rejected(Exception):
    """Raised inside this module when a body can never become an event."""

    def __init__(self, code: RejectReason, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message[:MAX_REASON_CHARS]
        self.detail = detail


# -- the raw entry: what the usage table holds for one event -----------------------------------


def raw_entry_item(
    event: UsageEvent,
    priced: PricedCost,
    *,
    ttl_days: int,
    now: datetime,
    original_operation_type: str | None = None,
) -> dict[str, Any]:
    """The usage table item for an event (python values; every number an int, never a float).

    `original_operation_type` is set when the event's operation type was folded into
    `other` by the per-tenant bound; `operation_type` then holds `other`.
    """
    item: dict[str, Any] = {
        "user_id": event.user_id,
        "sk": event.sort_key,
        "schema_version": event.schema_version,
        "event_id": event.event_id,
        "timestamp": format_timestamp(event.timestamp),
        "provider": event.provider.value,
        "model": event.model,
        "operation_type": event.operation_type,
        "status": event.status.value,
        "latency_ms": event.latency_ms,
        "input_tokens": event.input_tokens,
        "cache_read_tokens": event.cache_read_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "output_tokens": event.output_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "total_tokens": event.total_tokens,
        "cost_nanos": priced.cost_nanos,
        "cost_source": priced.source.value,
        "price_version": priced.price_version,
        "ingested_at": format_timestamp(now),
        "expires_at": int((event.timestamp + timedelta(days=ttl_days)).timestamp()),
        "user_provider": f"{event.user_id}#{event.provider.value}",
        "user_operation": f"{event.user_id}#{event.operation_type}",
    }
    optional: dict[str, Any] = {
        "request_id": event.request_id,
        "error_type": event.error_type,
        "cache_write_5m_tokens": event.cache_write_5m_tokens,
        "cache_write_1h_tokens": event.cache_write_1h_tokens,
        "catalog_model": priced.catalog_model,
        "original_operation_type": original_operation_type,
    }
    if event.reported_cost_usd is not None:
        optional["reported_cost_nanos"] = usd_to_nanos(event.reported_cost_usd)
    # Only on hits (the rare case), so ordinary items stay as small as before the response cache.
    if event.cache_hit:
        optional["cache_hit"] = True
        if event.saved_cost_usd:
            optional["saved_nanos"] = usd_to_nanos(event.saved_cost_usd)
    if event.metadata:
        optional["metadata"] = dict(event.metadata)
    item.update({key: value for key, value in optional.items() if value is not None})
    return item


class RawEntry(BaseModel):
    """A raw entry read back: from a table item or a stream NEW_IMAGE (see `from_dynamodb`).

    Numbers arrive from boto3 as Decimal; they are checked to be integral and become ints.
    Attributes this version does not know are ignored, so newer writers never break readers.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: str
    sk: str
    schema_version: int = SCHEMA_VERSION
    event_id: str
    timestamp: datetime
    request_id: str | None = None
    provider: Provider
    model: str
    operation_type: str
    original_operation_type: str | None = None
    status: Status
    error_type: str | None = None
    latency_ms: int
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_5m_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost_nanos: int
    cost_source: CostSource
    price_version: str
    catalog_model: str | None = None
    reported_cost_nanos: int | None = None
    #: Answered from the response cache (absent on the item when false).
    cache_hit: bool = False
    #: What the cached answer cost when first produced, nano-USD (absent on the item when 0).
    saved_nanos: int = 0
    metadata: dict[str, str | int | bool | None] = Field(default_factory=dict)
    ingested_at: datetime | None = None
    expires_at: int | None = None

    @field_validator(
        "schema_version",
        "latency_ms",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost_nanos",
        "reported_cost_nanos",
        "saved_nanos",
        "expires_at",
        mode="before",
    )
    @classmethod
    def _integral(cls, value: Any) -> Any:
        return _to_int(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_ints(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: _to_int(v) if isinstance(v, Decimal) else v for k, v in value.items()}
        return value

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> RawEntry:
        """From a deserialized item (python values, numbers as Decimal or int)."""
        return cls.model_validate(dict(item))

    @classmethod
    def from_dynamodb(cls, image: Mapping[str, Any]) -> RawEntry:
        """From DynamoDB JSON (`{"user_id": {"S": "…"}, …}`): GetItem/Query items or a stream NEW_IMAGE."""
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        return cls.from_item({key: deserializer.deserialize(value) for key, value in image.items()})

    def tokens(self) -> TokenCounts:
        """The ledger, for re-pricing (`PriceBook.price(provider, model, entry.tokens(), at=…)`)."""
        return TokenCounts(
            input_tokens=self.input_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cache_write_5m_tokens=self.cache_write_5m_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
            output_tokens=self.output_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    @property
    def reported_cost_usd(self) -> Decimal | None:
        return None if self.reported_cost_nanos is None else nanos_to_usd(self.reported_cost_nanos)

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nanos)

    @property
    def saved_cost_usd(self) -> Decimal | None:
        """What a cache hit saved (None for an ordinary call)."""
        return nanos_to_usd(self.saved_nanos) if self.cache_hit else None


def _to_int(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError(f"expected an integer, got {value}")
        return int(value)
    return value


# -- parsing one body --------------------------------------------------------------------------


class EventBridgeEnvelope(BaseModel):
    """The EventBridge envelope SQS delivers as a body. Lenient on what we do not use: moto omits
    `account`, so Powertools' `EventBridgeModel` (which requires it) would refuse real local traffic."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str | None = None
    source: str
    detail_type: str = Field(alias="detail-type")
    detail: dict[str, Any]


#: Keys that only an envelope has (a bare event forbids unknown keys, so no overlap is possible).
_ENVELOPE_KEYS: Final = frozenset({"detail", "detail-type", "source", "version", "account", "resources", "region"})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def extract_detail(body: str) -> dict[str, Any]:
    """The event object inside a body (an EventBridge envelope's `detail`, or the bare event).

    Raises `Rejected` for a body that can never yield an event.
    """
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise Rejected(RejectReason.OVERSIZED, f"body is {size} bytes; at most {MAX_BODY_BYTES} are accepted")
    try:
        # Decimal for numbers with a fraction: no float ever touches money; NaN/Infinity refused.
        parsed = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Rejected(RejectReason.MALFORMED_JSON, f"body is not valid JSON: {_json_error(exc)}") from None
    if not isinstance(parsed, dict):
        raise Rejected(RejectReason.NOT_AN_OBJECT, f"body is a JSON {_json_type(parsed)}, not an object")
    if not _ENVELOPE_KEYS.intersection(parsed):
        return parsed
    try:
        envelope = EventBridgeEnvelope.model_validate(parsed)
    except ValidationError as exc:
        raise Rejected(RejectReason.BAD_ENVELOPE, f"EventBridge envelope: {readable_errors(exc)}") from None
    if envelope.source != EVENT_SOURCE:
        raise Rejected(RejectReason.WRONG_SOURCE, f"envelope source {envelope.source[:64]!r} is not {EVENT_SOURCE!r}")
    if envelope.detail_type != EVENT_DETAIL_TYPE:
        raise Rejected(
            RejectReason.WRONG_DETAIL_TYPE,
            f"envelope detail-type {envelope.detail_type[:64]!r} is not {EVENT_DETAIL_TYPE!r}",
        )
    return envelope.detail


def parse_event(body: str, *, now: datetime) -> UsageEvent:
    """Validate one body against contract v1 at the clock `now`; raises `Rejected`."""
    detail = extract_detail(body)
    version = detail.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise Rejected(
            RejectReason.UNKNOWN_SCHEMA_VERSION,
            f"schema_version {str(version)[:32]!r} is not supported (this ingest understands {SCHEMA_VERSION})",
            detail,
        )
    # The contract lets producers omit these (it fills a fresh id and the current time), but at
    # ingest they are the dedupe key: a default would differ on every redelivery.
    missing = [name for name in ("event_id", "timestamp") if name not in detail]
    if missing:
        raise Rejected(
            RejectReason.CONTRACT_VIOLATION,
            "; ".join(f"{name}: Field required (set by the producer: part of the dedupe key)" for name in missing),
            detail,
        )
    try:
        return UsageEvent.model_validate(detail, context={"now": now})
    except ValidationError as exc:
        raise Rejected(RejectReason.CONTRACT_VIOLATION, readable_errors(exc), detail) from None


def readable_errors(exc: ValidationError) -> str:
    """`field: message; other.field: message (+N more)`, never quoting the input values."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for error in errors[:MAX_REASON_ERRORS]:
        where = ".".join(str(part) for part in error["loc"]) or "event"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    text = "; ".join(parts)
    if len(errors) > MAX_REASON_ERRORS:
        text += f" (+{len(errors) - MAX_REASON_ERRORS} more)"
    return text[:MAX_REASON_CHARS]


def _json_error(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


# -- redaction of stored reject bodies ----------------------------------------------------------

_SECRET_FIELD = re.compile(
    r'("[^"\\]*' + SECRET_KEY_NAME.pattern + r'[^"\\]*"\s*:\s*)"(?:[^"\\]|\\.)*"', SECRET_KEY_NAME.flags
)


def redact(body: str) -> str:
    """The body with anything shaped like a key replaced: a refused event may be refused *because*
    it carried one, and the rejects table must not become the place secrets end up."""
    body = SECRET_VALUE.sub("[REDACTED]", body)
    return _SECRET_FIELD.sub(r'\1"[REDACTED]"', body)


def tenant_hint(detail: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """The user and event ids of a refused event, when they are well-formed (for operators)."""
    if not detail:
        return None, None
    user_id, event_id = detail.get("user_id"), detail.get("event_id")
    user = user_id if isinstance(user_id, str) and re.match(USER_ID_PATTERN, user_id) else None
    event = event_id if isinstance(event_id, str) and re.match(r"^[A-Za-z0-9._:-]{1,128}$", event_id) else None
    return user, event


# -- the ingest step ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What happened to one message. `stored` and `duplicate` are both success: the entry exists."""

    status: Literal["stored", "duplicate", "rejected"]
    message_id: str
    event_id: str | None = None
    user_id: str | None = None
    reason: RejectReason | None = None
    reason_message: str | None = None
    cost_source: CostSource | None = None
    operation_folded: bool = False


class Ingestor:
    """Turns message bodies into raw entries or rejects. Thread-safe if its repositories are."""

    def __init__(
        self,
        usage: UsageRepository,
        rejects: RejectsRepository,
        operation_types: OperationTypeRegistry,
        price_book: PriceBook,
        *,
        ttl_days: int,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.usage = usage
        self.rejects = rejects
        self.operation_types = operation_types
        self.price_book = price_book
        self.ttl_days = ttl_days
        self._clock = clock or (lambda: datetime.now(UTC))

    def ingest(self, body: str, *, message_id: str) -> IngestOutcome:
        """Ingest one message body. Raises (StorageError, …) only for what a retry may fix."""
        now = self._clock()
        try:
            event = parse_event(body, now=now)
        except Rejected as rejected:
            user_id, event_id = tenant_hint(rejected.detail)
            self.rejects.record(
                reason=rejected.code,
                message=rejected.message,
                body=redact(body),
                body_bytes=len(body.encode("utf-8", errors="surrogatepass")),
                message_id=message_id,
                received_at=now,
                user_id=user_id,
                event_id=event_id,
            )
            return IngestOutcome(
                "rejected",
                message_id,
                event_id=event_id,
                user_id=user_id,
                reason=rejected.code,
                reason_message=rejected.message,
            )
        return self.store(event, message_id=message_id, now=now)

    def store(self, event: UsageEvent, *, message_id: str, now: datetime) -> IngestOutcome:
        """Bound, price and write one valid event; a redelivery finds the entry and is a no-op."""
        original_operation = None
        if not self.operation_types.admit(event.user_id, event.operation_type):
            original_operation = event.operation_type
            event = event.model_copy(update={"operation_type": OVERFLOW_OPERATION_TYPE})
        priced = self.price_book.price_event(event)
        item = raw_entry_item(
            event, priced, ttl_days=self.ttl_days, now=now, original_operation_type=original_operation
        )
        written = self.usage.put_if_absent(item)
        return IngestOutcome(
            "stored" if written else "duplicate",
            message_id,
            event_id=event.event_id,
            user_id=event.user_id,
            cost_source=priced.source,
            operation_folded=original_operation is not None,
        )


@cache
def default_ingestor() -> Ingestor:
    """The process-wide ingestor, from settings (its repositories build clients lazily, per call)."""
    from llmtally.pricing import default_price_book
    from llmtally.repositories.operation_types import OperationTypeRegistry
    from llmtally.repositories.rejects import RejectsRepository
    from llmtally.repositories.usage import UsageRepository
    from llmtally.settings import get_settings

    settings = get_settings()
    return Ingestor(
        UsageRepository(),
        RejectsRepository(),
        OperationTypeRegistry(),
        default_price_book(),
        ttl_days=settings.raw_ttl_days,
    )

"""Ingest: one SQS message body in, one raw entry (or one reject) out. No Lambda, no event shapes.

    body ──► size check ──► JSON ──► envelope (EventBridge `detail`) or bare event ──► schema version
         ──► contract (UsageEvent, with the clock) ──► operation-type bound ──► central price ──► model bound
         ──► tag key / tag value bounds
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
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmtally import safejson
from llmtally.entries import RawEntry as RawEntry
from llmtally.entries import raw_entry_item as raw_entry_item
from llmtally.events import (
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    SCHEMA_VERSION,
    UsageEvent,
    is_valid_user_id,
)
from llmtally.pricing import CostSource, PriceBook
from llmtally.redaction import redact as redact
from llmtally.redaction import redact_bounded

# The reject's domain types live in llmtally.rejects (the repository imports them from there);
# re-exported here for callers that imported them from the ingest.
from llmtally.rejects import MAX_STORED_BODY_BYTES as MAX_STORED_BODY_BYTES
from llmtally.rejects import RejectReason as RejectReason

if TYPE_CHECKING:
    from llmtally.repositories.cardinality import ModelRegistry, OperationTypeRegistry, TagRegistry
    from llmtally.repositories.rejects import RejectsRepository
    from llmtally.repositories.usage import UsageRepository

#: SQS's classic message limit; a larger body is refused before it is parsed.
MAX_BODY_BYTES: Final = 256 * 1024
#: Pydantic errors quoted in a reject reason (the rest are counted).
MAX_REASON_ERRORS: Final = 8
MAX_REASON_CHARS: Final = 2000
#: What a tenant's operation types beyond the registry's limit are stored as.
OVERFLOW_OPERATION_TYPE: Final = "other"


class Rejected(Exception):
    """Raised inside this module when a body can never become an event."""

    def __init__(self, code: RejectReason, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message[:MAX_REASON_CHARS]
        self.detail = detail


# -- the raw entry lives in llmtally.entries (a domain type); re-exported here for callers that
# imported it from the ingest before it moved.


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
        # Bounded nesting and number length: Python's own limits would raise ValueError/RecursionError.
        parsed = safejson.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
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
    if isinstance(exc, safejson.JSONLimitError):
        return exc.msg
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def tenant_hint(detail: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """The user and event ids of a refused event, when they are well-formed (for operators)."""
    if not detail:
        return None, None
    user_id, event_id = detail.get("user_id"), detail.get("event_id")
    user = user_id if is_valid_user_id(user_id) else None
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
    model_folded: bool = False
    tags_folded: bool = False


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
        models: ModelRegistry | None = None,
        tags: TagRegistry | None = None,
    ) -> None:
        self.usage = usage
        self.rejects = rejects
        self.operation_types = operation_types
        #: The per-tenant model bound (None: models unbounded — tools that never roll up).
        self.models = models
        #: The per-tenant tag key and per-(tenant, key, month) tag value bounds (None: unbounded).
        self.tags = tags
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
            # Cut to what a reject keeps *before* redacting: the work is bounded by 16 KiB, not the body.
            kept, truncated = redact_bounded(body, MAX_STORED_BODY_BYTES)
            self.rejects.record(
                reason=rejected.code,
                message=rejected.message,
                body=kept,
                body_truncated=truncated,
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
        # Priced on the model that was called; folded after, so an `(other)` entry keeps its true cost.
        priced = self.price_book.price_event(event)
        original_model = None
        if self.models is not None:
            model, original_model = self.models.fold_model(event.user_id, event.provider.value, event.model)
            if original_model is not None:
                event = event.model_copy(update={"model": model})
        # Decided once, here, and stored: the aggregator and a rebuild count what the entry says.
        rollup_tags = self.tags.fold_tags(event.user_id, event.tags, event.timestamp) if self.tags else None
        item = raw_entry_item(
            event,
            priced,
            ttl_days=self.ttl_days,
            now=now,
            original_operation_type=original_operation,
            original_model=original_model,
            rollup_tags=rollup_tags,
        )
        written = self.usage.put_if_absent(item)
        return IngestOutcome(
            "stored" if written else "duplicate",
            message_id,
            event_id=event.event_id,
            user_id=event.user_id,
            cost_source=priced.source,
            operation_folded=original_operation is not None,
            model_folded=original_model is not None,
            tags_folded=rollup_tags is not None,
        )


@cache
def default_ingestor() -> Ingestor:
    """The process-wide ingestor, from settings (its repositories build clients lazily, per call)."""
    from llmtally.pricing import default_price_book
    from llmtally.repositories.cardinality import ModelRegistry, OperationTypeRegistry, TagRegistry
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
        models=ModelRegistry(),
        tags=TagRegistry(),
    )

"""HTTP ingest: `POST /api/usage-events` (a JSON batch of v1 events) and `POST /api/otel/v1/traces` (OTLP).

Both authenticate an ingest key (`Authorization: Bearer llt_…`), validate every event at the edge
with the same `UsageEvent` model the ingest Lambda uses, and answer per event:

* `accepted` — valid, and handed to the usage bus (EventBridge `PutEvents` accepted it). From
  there it takes the one pipeline path, bus → queue → ingest, where the conditional write
  dedupes it on `(user_id, timestamp#event_id)` exactly like an event from the library.
* `duplicate` — its raw entry already exists (a consistent read of its exact key), or the same
  event came earlier in this request; it is not sent again. This check is best effort: a copy
  still on its way through the queue is not seen, is answered `accepted`, and is deduplicated by
  the ingest — either way it is stored once.
* `rejected` — with its reason: invalid, for a tenant the key may not write, or (retryable, said
  so) the bus refused it after retries. One bad event costs its neighbours nothing.

Limits: body bytes, events per request, spans per request, and a per-key request rate (a
fixed-window counter in the settings table, 429 with Retry-After) — besides API Gateway's route
throttles on AWS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Final, Literal, Protocol

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llmtally import safejson
from llmtally.api.errors import (
    ApiError,
    BadRequestError,
    NotAuthenticatedError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
)
from llmtally.events import UsageEvent
from llmtally.ingest_keys import IngestPrincipal, bearer_token, parse_key, secret_matches
from llmtally.integrations.otel_mapping import SpanMapping, span_to_event

USAGE_EVENTS_PATH: Final = "/api/usage-events"
OTLP_TRACES_PATH: Final = "/api/otel/v1/traces"
INGEST_PATHS: Final = frozenset({USAGE_EVENTS_PATH, OTLP_TRACES_PATH})
#: The error every authentication failure gets (which part failed is not the caller's business).
BAD_KEY: Final = "a valid ingest key is required: Authorization: Bearer llt_…"
MAX_REASONS_IN_OTLP_MESSAGE: Final = 5

Status = Literal["accepted", "duplicate", "rejected"]


class IngestSettings(BaseSettings):
    """`LLMTALLY_INGEST_*`: the HTTP ingest routes' limits and the OTLP receiver's attribute mapping."""

    model_config = SettingsConfigDict(env_prefix="LLMTALLY_INGEST_", frozen=True, extra="ignore")

    #: Largest body (after base64 decoding, and after gzip inflation for OTLP), bytes.
    max_body_bytes: int = Field(default=1_048_576, ge=16_384, le=4_194_304)
    max_events: int = Field(default=500, ge=1, le=500)
    max_spans: int = Field(default=5_000, ge=1, le=50_000)
    #: Requests per key per window (a fixed window; 429 beyond it).
    rate_limit: int = Field(default=600, ge=1, le=100_000)
    rate_window_seconds: int = Field(default=60, ge=1, le=3600)
    #: A key's `last_used_at` is written at most this often per container.
    last_used_interval_seconds: int = Field(default=60, ge=0, le=86_400)
    #: OTLP: attributes (span, then resource) that name the tenant; comma-separated.
    otel_tenant_attributes: Annotated[tuple[str, ...], NoDecode] = ("llmtally.user_id", "enduser.id")
    otel_tag_prefix: str = "llmtally.tags."
    #: OTLP: other attributes that become tags, `attribute=tag_key` pairs, comma-separated.
    otel_tag_attributes: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    @field_validator("otel_tenant_attributes", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("otel_tag_attributes", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs = (part.split("=", 1) for part in value.split(",") if "=" in part)
            return {name.strip(): key.strip() for name, key in pairs}
        return value


@cache
def get_ingest_settings() -> IngestSettings:
    return IngestSettings()


class KeyStore(Protocol):
    def lookup(self, key_id: str) -> tuple[str, bool, str] | None: ...

    def touch(self, user_id: str, key_id: str, used_at: datetime) -> None: ...


class RateLimiter(Protocol):
    def take_rate_limit_token(
        self, user_id: str, name: str, *, window_start: int, limit: int, expires_at: int
    ) -> bool: ...


class Bus(Protocol):
    def send(self, events: Sequence[UsageEvent]) -> list[str | None]: ...


class Recorded(Protocol):
    def recorded(self, events: Sequence[UsageEvent]) -> set[tuple[str, str]]: ...


@dataclass(slots=True)
class EventResult:
    index: int
    status: Status
    event_id: str | None = None
    reason: str | None = None
    retryable: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.event_id is not None:
            out["event_id"] = self.event_id
        if self.reason is not None:
            out["reason"] = self.reason
        if self.retryable:
            out["retryable"] = True
        return out


@dataclass(slots=True)
class SpanCounts:
    spans: int = 0
    ignored: int = 0
    results: list[EventResult] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class IngestService:
    """Authenticates ingest keys and takes batches of events or spans to the bus."""

    def __init__(
        self,
        keys: Callable[[], KeyStore],
        limiter: Callable[[], RateLimiter],
        bus: Callable[[], Bus],
        recorded: Callable[[], Recorded],
        config: IngestSettings,
        clock: Callable[[], float] = time.time,
        on_bus_refused: Callable[[int], None] | None = None,
    ) -> None:
        self._keys, self._limiter, self._bus, self._recorded = keys, limiter, bus, recorded
        self.config = config
        self._clock = clock
        #: Told how many events the bus refused after retries (the handler counts them as a metric).
        self._on_bus_refused = on_bus_refused
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()

    # -- authentication ------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str]) -> IngestPrincipal:
        """The key's principal, or 401; 429 past the key's request rate. The key never reaches a log or message."""
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        token = bearer_token(lowered.get("authorization"))
        parsed = parse_key(token) if token else None
        if parsed is None:
            raise NotAuthenticatedError(BAD_KEY)
        key_id, secret = parsed
        found = self._keys().lookup(key_id)
        if found is None or not secret_matches(secret, found[2]):
            raise NotAuthenticatedError(BAD_KEY)
        principal = IngestPrincipal(key_id=key_id, user_id=found[0], all_tenants=found[1])
        self._take_token(principal)
        self._touch(principal)
        return principal

    def _take_token(self, principal: IngestPrincipal) -> None:
        now = self._clock()
        window = self.config.rate_window_seconds
        start = int(now) // window * window
        allowed = self._limiter().take_rate_limit_token(
            principal.user_id,
            f"ingest_key#{principal.key_id}",
            window_start=start,
            limit=self.config.rate_limit,
            expires_at=start + 2 * window,
        )
        if not allowed:
            raise RateLimitedError(
                f"too many requests for this ingest key: at most {self.config.rate_limit} per {window} s",
                retry_after_seconds=start + window - int(now),
            )

    def _touch(self, principal: IngestPrincipal) -> None:
        now = self._clock()
        with self._touch_lock:
            last = self._touched.get(principal.key_id)
            if last is not None and now - last < self.config.last_used_interval_seconds:
                return
            self._touched[principal.key_id] = now
        self._keys().touch(principal.user_id, principal.key_id, datetime.fromtimestamp(now, UTC))

    # -- the JSON batch ------------------------------------------------------------------------

    def submit_events(self, principal: IngestPrincipal, body: bytes) -> dict[str, Any]:
        items = self._parse_batch(body)
        now = datetime.fromtimestamp(self._clock(), UTC)
        results: list[EventResult] = []
        valid: list[tuple[EventResult, UsageEvent]] = []
        for index, item in enumerate(items):
            result = EventResult(index, "rejected")
            results.append(result)
            if not isinstance(item, dict):
                result.reason = "an event must be a JSON object"
                continue
            if isinstance(item.get("event_id"), str):
                result.event_id = str(item["event_id"])[:128]
            if "user_id" not in item and not principal.all_tenants:
                item = {**item, "user_id": principal.user_id}
            try:
                event = UsageEvent.model_validate(item, context={"now": now})
            except ValidationError as exc:
                result.reason = _reason(exc)
                continue
            result.event_id = event.event_id
            if not principal.may_write(event.user_id):
                result.reason = "this ingest key may not write events of another tenant"
                continue
            valid.append((result, event))
        self._deliver(valid)
        return _summary(results)

    def _parse_batch(self, body: bytes) -> list[Any]:
        if not body:
            raise BadRequestError('the body must be {"events": [...]}')
        try:
            document = safejson.loads(body, parse_float=Decimal)
        except ValueError as exc:
            message = str(getattr(exc, "msg", ""))
            detail = f": {message}" if safejson.is_limit_message(message) else ""
            raise BadRequestError(f"the body is not valid JSON{detail}") from exc
        items = document.get("events") if isinstance(document, dict) else document
        if not isinstance(items, list) or (isinstance(document, dict) and set(document) - {"events"}):
            raise BadRequestError('the body must be {"events": [...]} (a list of usage events, contract v1)')
        if not items:
            raise BadRequestError("the batch is empty")
        if len(items) > self.config.max_events:
            raise PayloadTooLargeError(f"{len(items)} events in one request; at most {self.config.max_events}")
        return items

    def _deliver(self, valid: list[tuple[EventResult, UsageEvent]]) -> None:
        """Duplicates out (this request, then the raw table); the rest to the bus, each with its outcome."""
        seen: set[tuple[str, str]] = set()
        fresh: list[tuple[EventResult, UsageEvent]] = []
        for result, event in valid:
            key = (event.user_id, event.sort_key)
            if key in seen:
                result.status, result.reason = "duplicate", "the same event came earlier in this request"
                continue
            seen.add(key)
            fresh.append((result, event))
        if not fresh:
            return
        recorded = self._recorded().recorded([event for _, event in fresh])
        to_send: list[tuple[EventResult, UsageEvent]] = []
        for result, event in fresh:
            if (event.user_id, event.sort_key) in recorded:
                result.status, result.reason = "duplicate", "already recorded"
            else:
                to_send.append((result, event))
        if not to_send:
            return
        outcomes = self._bus().send([event for _, event in to_send])
        refused = sum(1 for code in outcomes if code is not None)
        if refused and self._on_bus_refused is not None:
            self._on_bus_refused(refused)
        if refused == len(outcomes):
            raise ServiceUnavailableError(
                "the usage bus is unavailable; retry the request", headers={"Retry-After": "1"}
            )
        for (result, _), code in zip(to_send, outcomes, strict=True):
            if code is None:
                result.status, result.reason = "accepted", None
            else:
                result.reason, result.retryable = f"the usage bus refused it ({code[:40]}); retry this event", True

    # -- OTLP ----------------------------------------------------------------------------------

    def span_mapping(self, principal: IngestPrincipal) -> SpanMapping:
        return SpanMapping(
            tenant_attributes=self.config.otel_tenant_attributes,
            tag_prefix=self.config.otel_tag_prefix,
            tag_attributes=dict(self.config.otel_tag_attributes),
            default_user_id=None if principal.all_tenants else principal.user_id,
            source="otlp",
        )

    def submit_spans(
        self, principal: IngestPrincipal, body: bytes, content_type: str | None, content_encoding: str | None
    ) -> SpanCounts:
        from llmtally.integrations import otlp

        try:
            raw = otlp.inflate(body, content_encoding, self.config.max_body_bytes)
            spans = otlp.decode(raw, content_type, max_spans=self.config.max_spans)
        except otlp.OtlpError as exc:
            raise _otlp_error(exc) from exc
        now = datetime.fromtimestamp(self._clock(), UTC)
        mapping = self.span_mapping(principal)
        counts = SpanCounts(spans=len(spans))
        valid: list[tuple[EventResult, UsageEvent]] = []
        for index, span in enumerate(spans):
            mapped = span_to_event(span, mapping, now=now)
            if mapped.kind == "ignored":
                counts.ignored += 1
                continue
            result = EventResult(index, "rejected", event_id=mapped.event_id, reason=mapped.reason)
            counts.results.append(result)
            if mapped.event is None:
                continue
            if not principal.may_write(mapped.event.user_id):
                result.reason = "this ingest key may not write events of another tenant"
                continue
            valid.append((result, mapped.event))
        for start in range(0, len(valid), 500):
            self._deliver(valid[start : start + 500])
        return counts


def otlp_message(counts: SpanCounts) -> str:
    """OTLP's `partial_success.error_message`: counts, then the first few reasons."""
    rejected = [r for r in counts.results if r.status == "rejected"]
    if not rejected:
        return ""
    reasons = "; ".join(f"{r.event_id or r.index}: {r.reason}" for r in rejected[:MAX_REASONS_IN_OTLP_MESSAGE])
    return f"{len(rejected)} of {counts.spans} spans rejected: {reasons}"


def _otlp_error(exc: Any) -> ApiError:
    if exc.status == 413:
        return PayloadTooLargeError(str(exc))
    if exc.status == 415:
        return UnsupportedMediaTypeError(str(exc))
    return BadRequestError(str(exc))


class UnsupportedMediaTypeError(ApiError):
    status = 415


def _summary(results: list[EventResult]) -> dict[str, Any]:
    return {
        "accepted": sum(1 for r in results if r.status == "accepted"),
        "duplicates": sum(1 for r in results if r.status == "duplicate"),
        "rejected": sum(1 for r in results if r.status == "rejected"),
        "results": [r.as_json() for r in results],
    }

"""Reconciliation over HTTP: metered against billed per day and model, and the admin keys (write-only).

- `GET /api/llm-usage/{userId}/reconciliation?start=&end=` — the stored rows of the UTC days
  [start, end] (default: the last 30 days; at most 93), per-day totals per provider, the range's
  totals, the alerts raised, and each source's last run. One Query of the reconciliation table.
- `GET/PUT/DELETE /api/llm-settings/{userId}/billing-keys[/{provider}]` — the tenant's provider admin
  keys: stored in Secrets Manager, never returned (`hasAdminKeys` booleans only).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, WithJsonSchema, field_validator

from llmtally.api.errors import BadRequestError
from llmtally.api.models import UsdAmount, WhereOut
from llmtally.api.timeparams import parse_day
from llmtally.events import Provider
from llmtally.money import nanos_to_usd
from llmtally.reconcile.core import KINDS, ReconciliationRow, day_totals, percent

RECONCILIATION_PARAMS: Final = frozenset({"start", "end", "where"})
#: Why a `where` other than a provider leaves the reconciliation account-level (the dashboard shows it).
ACCOUNT_LEVEL_NOTE: Final = (
    "Reconciliation is account-level under this filter: the providers' invoices carry no tags, operations "
    "or per-call detail, so only a provider filter narrows it"
)
MAX_DAYS: Final = 93
DEFAULT_DAYS: Final = 30
EARLIEST_DAY: Final = date(2000, 1, 1)
LATEST_DAY: Final = date(2999, 12, 31)
#: What an admin key of each provider starts with (a project key cannot read the usage reports).
ADMIN_KEY_PREFIXES: Final = {Provider.OPENAI: "sk-admin-", Provider.ANTHROPIC: "sk-ant-admin"}

SignedUsd = Annotated[Decimal, WithJsonSchema({"type": "number"})]
Percent = Annotated[Decimal, WithJsonSchema({"type": "number"})] | None


class Tokens(BaseModel):
    input: int
    cache_read: int
    cache_write: int
    output: int = Field(description="Reasoning included (billed as output)")


class PriceFeedbackOut(BaseModel):
    kind: Literal["input", "cache_read", "cache_write", "output"]
    tokens: int
    billed_mtok_usd: UsdAmount = Field(description="What the provider charged per 1M tokens of this kind")
    metered_mtok_usd: UsdAmount | None = Field(description="The price llmtally rated them at (catalog or override)")
    suggested_override: dict[str, Any] | None = Field(
        description="An entry for the price override file (docs/pricing.md), effective from the day"
    )


class ReconciliationRowOut(BaseModel):
    date: date
    provider: Provider
    model: str
    billed_tokens: Tokens
    billed_cost_usd: UsdAmount
    metered_tokens: Tokens
    metered_cost_usd: UsdAmount
    metered_requests: int
    drift_usd: SignedUsd = Field(description="billed − metered")
    drift_percent: Percent = Field(description="drift in % of the billed cost (null when nothing was billed)")
    unmetered_usd: UsdAmount = Field(description="Billed cost of tokens (or lines) no usage event explains")
    price_drift_usd: SignedUsd = Field(description="drift − unmetered: what differs at matched tokens (a price)")
    cause: Literal["match", "price", "unmetered", "missing_day", "overmetered"]
    provisional: bool = Field(description="The provider's figures for this day may still change")
    api_key_ids: list[str] = Field(description="The provider's ids of the keys billed for this model and day")
    price_feedback: list[PriceFeedbackOut]


class ReconciliationDayOut(BaseModel):
    date: date
    provider: Provider
    billed_cost_usd: UsdAmount
    metered_cost_usd: UsdAmount
    drift_usd: SignedUsd
    drift_percent: Percent
    unmetered_usd: UsdAmount
    price_drift_usd: SignedUsd
    provisional: bool


class ReconciliationTotalsOut(BaseModel):
    billed_cost_usd: UsdAmount
    metered_cost_usd: UsdAmount
    drift_usd: SignedUsd
    drift_percent: Percent
    unmetered_usd: UsdAmount


class ReconciliationSourceOut(BaseModel):
    provider: Provider
    last_run_at: datetime
    window_start: date
    window_end: date = Field(description="Exclusive")
    error: str | None = Field(description="Why the last run could not read the bill (never a key)")


class ReconciliationAlertOut(BaseModel):
    alert_id: str
    date: date
    provider: Provider
    kind: Literal["drift", "unmetered"]
    message: str
    raised_at: datetime


class ReconciliationResponse(BaseModel):
    """GET /api/llm-usage/{userId}/reconciliation."""

    user_id: str
    start: date
    end: date = Field(description="Inclusive (UTC days)")
    rows: list[ReconciliationRowOut]
    days: list[ReconciliationDayOut]
    totals: ReconciliationTotalsOut
    alerts: list[ReconciliationAlertOut]
    sources: list[ReconciliationSourceOut]
    where: WhereOut | None = Field(default=None, description="The `where` filter asked for, if any")
    scope: Literal["account", "provider"] = Field(
        default="account",
        description="provider: rows, days, totals, alerts and sources are the `where` provider's only; account: "
        "the whole account's (no filter, or a filter a bill cannot be cut by — see `note`)",
    )
    note: str | None = Field(default=None, description="Why a `where` did not narrow the reconciliation")


class BillingKeyUpdate(BaseModel):
    """PUT /api/llm-settings/{userId}/billing-keys: one provider's admin key (stored, never echoed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["openai", "anthropic"]
    adminKey: Annotated[SecretStr, Field(min_length=16, max_length=512, description="Stored; never returned")]

    @field_validator("adminKey")
    @classmethod
    def _shape(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if text != text.strip() or any(ch.isspace() for ch in text) or not text.isprintable():
            raise ValueError("an admin key has no whitespace or control characters")
        return value


class HasAdminKeys(BaseModel):
    openai: bool
    anthropic: bool


class BillingKeysResponse(BaseModel):
    hasAdminKeys: HasAdminKeys
    bedrock: Literal["deployment"] = Field(
        default="deployment", description="Bedrock's bill is read from the deployment's Cost Explorer (no key)"
    )


class BillingKeyDeletedResponse(BillingKeysResponse):
    deleted: bool


def _tokens(values: Any) -> Tokens:
    return Tokens(**{kind.value: int(values.get(kind, 0)) for kind in KINDS})


def row_out(row: ReconciliationRow) -> ReconciliationRowOut:
    return ReconciliationRowOut(
        date=row.day,
        provider=row.provider,
        model=row.model,
        billed_tokens=_tokens(row.billed_tokens),
        billed_cost_usd=nanos_to_usd(row.billed_cost_nanos),
        metered_tokens=_tokens(row.metered_tokens),
        metered_cost_usd=nanos_to_usd(row.metered_cost_nanos),
        metered_requests=row.metered_requests,
        drift_usd=nanos_to_usd(row.drift_nanos),
        drift_percent=row.drift_percent,
        unmetered_usd=nanos_to_usd(row.unmetered_nanos),
        price_drift_usd=nanos_to_usd(row.price_drift_nanos),
        cause=row.cause.value,
        provisional=row.provisional,
        api_key_ids=list(row.api_key_ids),
        price_feedback=[
            PriceFeedbackOut(
                kind=f.kind.value,
                tokens=f.tokens,
                billed_mtok_usd=f.billed_mtok,
                metered_mtok_usd=f.metered_mtok,
                suggested_override=f.suggested_override,
            )
            for f in row.price_feedback
        ],
    )


def day_range(start: str | None, end: str | None, *, today: date) -> tuple[date, date]:
    last = parse_day(end, "end") if end else today
    first = parse_day(start, "start") if start else last - timedelta(days=DEFAULT_DAYS - 1)
    for name, day in (("start", first), ("end", last)):
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            raise BadRequestError(f"{name}: must be between {EARLIEST_DAY} and {LATEST_DAY}")
    if first > last:
        raise BadRequestError("start: must not be after end")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadRequestError(f"the range covers more than {MAX_DAYS} days")
    return first, last


class ReconciliationService:
    def __init__(
        self,
        store: Callable[[], Any],
        credentials: Callable[[], Any],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._clock = clock

    def report(
        self, user_id: str, start: str | None, end: str | None, *, where: str | None = None
    ) -> ReconciliationResponse:
        """The stored reconciliation of [start, end]; under `where=provider:<p>` only p's rows (and
        days, totals, alerts, sources); under another `where`, the account's, saying why."""
        from llmtally.queries import Filter

        chosen = Filter.parse(where) if where else None
        only = chosen.value if chosen is not None and chosen.dimension == "provider" else None
        first, last = day_range(start, end, today=self._clock().date())
        store = self._store()
        rows = [r for r in store.rows(user_id, first, last) if only is None or r.provider.value == only]
        billed = sum(r.billed_cost_nanos for r in rows)
        metered = sum(r.metered_cost_nanos for r in rows)
        return ReconciliationResponse(
            user_id=user_id,
            start=first,
            end=last,
            rows=[row_out(r) for r in rows],
            days=[
                ReconciliationDayOut(
                    date=d.day,
                    provider=d.provider,
                    billed_cost_usd=nanos_to_usd(d.billed_nanos),
                    metered_cost_usd=nanos_to_usd(d.metered_nanos),
                    drift_usd=nanos_to_usd(d.drift_nanos),
                    drift_percent=percent(d.drift_nanos, d.billed_nanos),
                    unmetered_usd=nanos_to_usd(d.unmetered_nanos),
                    price_drift_usd=nanos_to_usd(d.price_drift_nanos),
                    provisional=d.provisional,
                )
                for d in day_totals(rows)
            ],
            totals=ReconciliationTotalsOut(
                billed_cost_usd=nanos_to_usd(billed),
                metered_cost_usd=nanos_to_usd(metered),
                drift_usd=nanos_to_usd(billed - metered),
                drift_percent=percent(billed - metered, billed),
                unmetered_usd=nanos_to_usd(sum(r.unmetered_nanos for r in rows)),
            ),
            alerts=[
                ReconciliationAlertOut(
                    alert_id=a["alert_id"],
                    date=date.fromisoformat(a["day"]),
                    provider=Provider(a["provider"]),
                    kind=a["kind"],
                    message=a["message"],
                    raised_at=datetime.fromisoformat(a["raised_at"].replace("Z", "+00:00")),
                )
                for a in store.alerts(user_id, first, last)
                if only is None or a["provider"] == only
            ],
            sources=[
                ReconciliationSourceOut(
                    provider=provider,
                    last_run_at=status["ran_at"],
                    window_start=status["window_start"],
                    window_end=status["window_end"],
                    error=status.get("error"),
                )
                for provider, status in sorted(store.source_statuses(user_id).items())
                if only is None or provider.value == only
            ],
            where=WhereOut(**chosen.as_dict()) if chosen else None,
            scope="provider" if only is not None else "account",
            note=ACCOUNT_LEVEL_NOTE if chosen is not None and only is None else None,
        )

    def keys(self, user_id: str) -> BillingKeysResponse:
        credentials = self._credentials()
        return BillingKeysResponse(
            hasAdminKeys=HasAdminKeys(
                openai=credentials.has_admin_key(user_id, Provider.OPENAI),
                anthropic=credentials.has_admin_key(user_id, Provider.ANTHROPIC),
            )
        )

    def put_key(self, user_id: str, update: BillingKeyUpdate) -> BillingKeysResponse:
        provider = Provider(update.provider)
        prefix = ADMIN_KEY_PREFIXES[provider]
        if not update.adminKey.get_secret_value().startswith(prefix):
            raise BadRequestError(
                f"adminKey: a {provider.value} admin key starts with {prefix!r} (a project/API key cannot "
                "read the organization's usage and cost reports)"
            )
        self._credentials().put_admin_key(user_id, provider, update.adminKey)
        return self.keys(user_id)

    def delete_key(self, user_id: str, provider: str) -> BillingKeyDeletedResponse:
        if provider not in ("openai", "anthropic"):
            raise BadRequestError("provider: openai or anthropic (Bedrock's bill needs no key)")
        deleted = self._credentials().delete_admin_key(user_id, Provider(provider))
        keys = self.keys(user_id)
        return BillingKeyDeletedResponse(hasAdminKeys=keys.hasAdminKeys, deleted=deleted)

"""The daily reconciliation: every configured source, every tenant, the last `lookback_days` UTC days.

Each run re-reads the whole window (a provider's figures for a day keep changing for a while — its
`settle_days`), reconciles it against the rollups and *replaces* the window's rows, so running it
twice, or again a day later, leaves each day's latest figures and never adds. Days still inside a
source's settle window are stored `provisional` and never alert; every day is re-read settled on a
later run (`lookback_days` > the largest `settle_days`).

Sources (docs/reconciliation.md):
- OpenAI and Anthropic: per tenant, with the tenant's admin key (`BillingCredentialsRepository`);
- Bedrock: per deployment, one Cost Explorer read split by a cost-allocation tag
  (`LLMTALLY_RECONCILE_BEDROCK_ENABLED`, `…_BEDROCK_TAG_KEY`, `…_BEDROCK_DEFAULT_USER`).

One tenant's failure (a refused key, a provider outage) is recorded on its source status and does
not stop the others; `RunOutcome.retryable_failures` tells the handler whether a retry may help.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmtally.errors import LLMTallyError
from llmtally.events import Provider, UserId
from llmtally.money import usd_to_nanos
from llmtally.reconcile.core import (
    BillingReport,
    Metered,
    Thresholds,
    TokenKind,
    day_start,
    day_totals,
    days_between,
    reconcile,
)

logger = logging.getLogger("llmtally.reconcile")

MAX_WINDOW_DAYS: Final = 93


class ReconcileSettings(BaseSettings):
    """`LLMTALLY_RECONCILE_*`: thresholds, window, endpoints and the Bedrock source (per deployment)."""

    model_config = SettingsConfigDict(env_prefix="LLMTALLY_RECONCILE_", frozen=True, extra="ignore")

    #: Days re-read each run, ending yesterday (UTC). Larger than every source's settle delay.
    lookback_days: int = Field(default=4, ge=1, le=31)
    drift_percent: Decimal = Field(default=Decimal(2), gt=0, le=100)
    unmetered_usd: Decimal = Field(default=Decimal(1), ge=0, le=1_000_000)
    min_drift_usd: Decimal = Field(default=Decimal("0.01"), ge=0, le=1_000_000)
    token_tolerance_percent: Decimal = Field(default=Decimal("0.5"), ge=0, le=100)
    openai_base_url: str = Field(default="https://api.openai.com", pattern=r"^https?://[A-Za-z0-9.:\[\]-]+/?$")
    anthropic_base_url: str = Field(default="https://api.anthropic.com", pattern=r"^https?://[A-Za-z0-9.:\[\]-]+/?$")
    bedrock_enabled: bool = False
    bedrock_services: tuple[str, ...] = ("Amazon Bedrock",)
    bedrock_tag_key: str | None = Field(default=None, max_length=128)
    bedrock_default_user: UserId | None = None

    @field_validator("openai_base_url", "anthropic_base_url")
    @classmethod
    def _https_unless_loopback(cls, value: str) -> str:
        """An admin key travels in a header: never in clear text, except to this machine (tests, proxies)."""
        host = value.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        if value.startswith("http://") and host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("an admin API base URL is https:// (http:// only to a loopback address)")
        return value

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            drift_percent=self.drift_percent,
            unmetered_nanos=usd_to_nanos(self.unmetered_usd),
            min_drift_nanos=usd_to_nanos(self.min_drift_usd),
            token_tolerance_percent=self.token_tolerance_percent,
        )


@dataclass(slots=True)
class SourceOutcome:
    user_id: str
    provider: Provider
    rows: int = 0
    replaced: int = 0
    alerts: list[str] = field(default_factory=list)
    error: str | None = None
    retryable: bool = False


@dataclass(slots=True)
class RunOutcome:
    start: date
    end: date
    sources: list[SourceOutcome] = field(default_factory=list)
    #: Bedrock spend that carried no tenant tag and had no default tenant.
    unattributed_nanos: int = 0

    @property
    def retryable_failures(self) -> int:
        return sum(1 for s in self.sources if s.error is not None and s.retryable)

    @property
    def failures(self) -> int:
        return sum(1 for s in self.sources if s.error is not None)

    @property
    def alerts(self) -> list[str]:
        return [alert for s in self.sources for alert in s.alerts]


SourceFactory = Callable[[Provider, SecretStr], Any]


class ReconciliationJob:
    """Built once per container (or per CLI run); every dependency can be injected (tests, bench)."""

    def __init__(
        self,
        *,
        settings: ReconcileSettings | None = None,
        store: Any = None,
        credentials: Any = None,
        bus: Any = None,
        rollups: Any = None,
        price_book: Any = None,
        source_factory: SourceFactory | None = None,
        bedrock: Any = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings or ReconcileSettings()
        self._store = store
        self._credentials = credentials
        self._bus = bus
        self._rollups = rollups
        self._price_book = price_book
        self._source_factory = source_factory or self._default_source
        self._bedrock = bedrock
        self._clock = clock

    # -- dependencies, built lazily ----------------------------------------------------------------

    @property
    def store(self) -> Any:
        if self._store is None:
            from llmtally.repositories.reconciliation import ReconciliationRepository

            self._store = ReconciliationRepository()
        return self._store

    @property
    def credentials(self) -> Any:
        if self._credentials is None:
            from llmtally.repositories.billing_credentials import BillingCredentialsRepository

            self._credentials = BillingCredentialsRepository()
        return self._credentials

    @property
    def bus(self) -> Any:
        if self._bus is None:
            from llmtally.repositories.reconciliation import ReconciliationAlertBus

            self._bus = ReconciliationAlertBus()
        return self._bus

    @property
    def rollups(self) -> Any:
        if self._rollups is None:
            from llmtally.repositories.rollups import RollupRepository

            self._rollups = RollupRepository()
        return self._rollups

    @property
    def price_book(self) -> Any:
        if self._price_book is None:
            from llmtally.pricing import default_price_book

            self._price_book = default_price_book()
        return self._price_book

    @property
    def bedrock(self) -> Any:
        if self._bedrock is None and self.settings.bedrock_enabled:
            from llmtally.reconcile.bedrock import BedrockBillingSource

            self._bedrock = BedrockBillingSource(
                services=self.settings.bedrock_services,
                tag_key=self.settings.bedrock_tag_key,
                default_user=self.settings.bedrock_default_user,
            )
        return self._bedrock

    def _default_source(self, provider: Provider, key: SecretStr) -> Any:
        if provider is Provider.OPENAI:
            from llmtally.reconcile.openai import OpenAIBillingSource

            return OpenAIBillingSource(key, base_url=self.settings.openai_base_url)
        if provider is Provider.ANTHROPIC:
            from llmtally.reconcile.anthropic import AnthropicBillingSource

            return AnthropicBillingSource(key, base_url=self.settings.anthropic_base_url)
        raise ValueError(f"no admin API source for {provider.value}")

    # -- the run ---------------------------------------------------------------------------------------

    def window(self, today: date | None = None) -> tuple[date, date]:
        """[start, end): the last `lookback_days` complete UTC days."""
        end = today or self._clock().date()
        return end - timedelta(days=self.settings.lookback_days), end

    def run(
        self,
        *,
        today: date | None = None,
        start: date | None = None,
        end: date | None = None,
        users: Iterable[str] | None = None,
    ) -> RunOutcome:
        """Reconcile [start, end) (default: `window(today)`) for every configured tenant (or `users`)."""
        today = today or self._clock().date()
        default_start, default_end = self.window(today)
        start, end = start or default_start, end or default_end
        if not start < end or (end - start).days > MAX_WINDOW_DAYS:
            raise ValueError(f"a reconciliation window is 1 to {MAX_WINDOW_DAYS} days, start before end")
        only = set(users) if users is not None else None
        outcome = RunOutcome(start, end)
        configured: dict[str, set[Provider]] = self.credentials.configured()
        for user_id in sorted(configured):
            if only is not None and user_id not in only:
                continue
            for provider in sorted(configured[user_id]):
                outcome.sources.append(self._run_keyed(user_id, provider, start, end, today))
        if self.bedrock is not None:
            self._run_bedrock(start, end, today, only, outcome)
        return outcome

    def _run_keyed(self, user_id: str, provider: Provider, start: date, end: date, today: date) -> SourceOutcome:
        result = SourceOutcome(user_id, provider)
        try:
            key = self.credentials.get_admin_key(user_id, provider)
            if key is None:
                return result  # deleted since the listing
            source = self._source_factory(provider, key)
            report = source.fetch(start, end)
            self._reconcile(user_id, report, today - timedelta(days=source.settle_days), result)
        except LLMTallyError as exc:
            self._failed(result, exc, start, end)
        return result

    def _run_bedrock(self, start: date, end: date, today: date, only: set[str] | None, outcome: RunOutcome) -> None:
        try:
            bill = self.bedrock.fetch_all(start, end)
        except LLMTallyError as exc:
            failed = SourceOutcome("*", Provider.BEDROCK)
            failed.error, failed.retryable = str(exc), True
            outcome.sources.append(failed)
            logger.warning("Bedrock bill unreadable", extra={"error": str(exc)})
            return
        outcome.unattributed_nanos = bill.unattributed_nanos
        settled_before = today - timedelta(days=self.bedrock.settle_days)
        for user_id in sorted(bill.reports):
            if only is not None and user_id not in only:
                continue
            result = SourceOutcome(user_id, Provider.BEDROCK)
            try:
                self._reconcile(user_id, bill.reports[user_id], settled_before, result)
            except LLMTallyError as exc:
                self._failed(result, exc, start, end)
            outcome.sources.append(result)

    def _reconcile(self, user_id: str, report: BillingReport, settled_before: date, result: SourceOutcome) -> None:
        now = self._clock()
        metered = self.metered(user_id, report.provider, report.start, report.end)
        rows = reconcile(
            user_id,
            report,
            metered,
            thresholds=self.settings.thresholds,
            settled_before=settled_before,
            unit_prices=self.unit_prices,
        )
        days = days_between(report.start, report.end)
        result.replaced = self.store.replace_rows(user_id, report.provider, days, rows, computed_at=now)
        result.rows = len(rows)
        self.store.put_source_status(
            user_id, report.provider, ran_at=now, start=report.start, end=report.end, error=None
        )
        from llmtally.reconcile.alerts import ReconciliationAlerter

        alerter = ReconciliationAlerter(self.store, self.bus, self.settings.thresholds)
        published = alerter.raise_due(user_id, day_totals(rows), rows, now)
        result.alerts = [detail["alert_id"] for detail in published]

    def _failed(self, result: SourceOutcome, exc: LLMTallyError, start: date, end: date) -> None:
        result.error = str(exc)
        result.retryable = bool(getattr(exc, "retryable", True))
        logger.warning(
            "reconciliation source failed",
            extra={"user_id": result.user_id, "provider": result.provider.value, "error": result.error},
        )
        # The status is informative; the outcome carries the failure either way.
        with contextlib.suppress(LLMTallyError):
            self.store.put_source_status(
                result.user_id, result.provider, ran_at=self._clock(), start=start, end=end, error=result.error
            )

    def metered(self, user_id: str, provider: Provider, start: date, end: date) -> dict[date, dict[str, Metered]]:
        """The provider's metered models per UTC day, from the rollups' model dimension (one Query a day)."""
        from llmtally.queries import range_totals
        from llmtally.rollups import Dimension, split_model_value

        out: dict[date, dict[str, Metered]] = {}
        for day in days_between(start, end):
            totals = range_totals(
                user_id, day_start(day), day_start(day + timedelta(days=1)), (Dimension.MODEL,), repository=self.rollups
            )
            models: dict[str, Metered] = {}
            for value, counters in totals.by_dimension.get(Dimension.MODEL, {}).items():
                prov, model = split_model_value(value)
                if prov == provider.value:
                    models[model] = Metered.of(counters)
            out[day] = models
        return out

    def unit_prices(self, provider: Provider, model: str, day: date) -> Mapping[TokenKind, Decimal] | None:
        """The unit prices llmtally rated `model` at on `day` (catalog or override); None if unknown."""
        try:
            prices = self.price_book.unit_prices(provider, model, day_start(day))
        except LookupError:
            return None
        return {
            TokenKind.INPUT: prices.input_mtok,
            TokenKind.CACHE_READ: prices.cache_read_mtok if prices.cache_read_mtok is not None else prices.input_mtok,
            TokenKind.CACHE_WRITE: prices.cache_write_mtok
            if prices.cache_write_mtok is not None
            else prices.input_mtok,
            TokenKind.OUTPUT: prices.output_mtok,
        }


def summary_lines(outcome: RunOutcome) -> list[str]:
    """A human summary of a run (the CLI)."""
    lines = [f"reconciled {outcome.start.isoformat()} .. {(outcome.end - timedelta(days=1)).isoformat()} (UTC)"]
    for source in outcome.sources:
        state = f"error: {source.error}" if source.error else f"{source.rows} rows, {source.replaced} replaced"
        lines.append(f"  {source.user_id} {source.provider.value}: {state}")
        for alert in source.alerts:
            lines.append(f"    alert raised: {alert}")
    if outcome.unattributed_nanos:
        from llmtally.money import format_usd

        lines.append(f"  Bedrock spend without a tenant tag: {format_usd(outcome.unattributed_nanos, 2)}")
    return lines

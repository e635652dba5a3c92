"""Exact pricing: the genai-prices catalog (offline snapshot) plus a deployment override file.

Order of precedence for one event:

1. an override (negotiated prices, private or fine-tuned models) effective at the event's time;
2. the genai-prices catalog, date-effective, by the event's timestamp;
3. the producer's `reported_cost_usd`, when neither knows the model;
4. otherwise `unpriced`: cost 0 *and flagged*, counted and shown — never a silent $0.

The canonical ledger's buckets do not overlap; genai-prices' `input_tokens` *includes* cache reads
and writes and its `output_tokens` includes reasoning, so the mapping adds them back (see
`_catalog_usage`). genai-prices' network updater is never started: prices are the snapshot that
ships with the pinned package, so a price changes only when the package version does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmtally.errors import ConfigurationError, UnknownModelError
from llmtally.events import MODEL_PATTERN, Provider, TokenCounts, UsageEvent
from llmtally.money import nanos_to_usd, usd_to_nanos

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice

#: genai-prices' provider ids for ours: Bedrock's models are listed under AWS.
CATALOG_PROVIDER_IDS: Final[dict[Provider, str]] = {
    Provider.ANTHROPIC: "anthropic",
    Provider.OPENAI: "openai",
    Provider.GOOGLE: "google",
    Provider.BEDROCK: "aws",
}
MILLION: Final = 1_000_000


class CostSource(StrEnum):
    CATALOG = "catalog"
    OVERRIDE = "override"
    REPORTED = "reported"
    UNPRICED = "unpriced"


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """USD per 1M tokens for each ledger bucket (None: billed at the base input/output price)."""

    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None
    cache_write_1h_mtok: Decimal | None = None
    reasoning_mtok: Decimal | None = None

    def preview_usd(self) -> Decimal:
        """The dashboard's cost preview: 1M input + 1M output tokens."""
        return self.input_mtok + self.output_mtok

    def cost_usd(self, tokens: TokenCounts) -> Decimal:
        """Exact cost of a ledger at these prices (Decimal arithmetic only)."""
        cache_write_5m = tokens.cache_write_tokens
        cache_write_1h = 0
        if tokens.cache_write_1h_tokens is not None:
            cache_write_1h = tokens.cache_write_1h_tokens
            cache_write_5m = tokens.cache_write_tokens - cache_write_1h
        write_price = self.cache_write_mtok if self.cache_write_mtok is not None else self.input_mtok
        write_1h_price = self.cache_write_1h_mtok if self.cache_write_1h_mtok is not None else write_price
        read_price = self.cache_read_mtok if self.cache_read_mtok is not None else self.input_mtok
        reasoning_price = self.reasoning_mtok if self.reasoning_mtok is not None else self.output_mtok
        micro = (
            tokens.input_tokens * self.input_mtok
            + tokens.cache_read_tokens * read_price
            + cache_write_5m * write_price
            + cache_write_1h * write_1h_price
            + tokens.output_tokens * self.output_mtok
            + tokens.reasoning_tokens * reasoning_price
        )
        return micro / MILLION


@dataclass(frozen=True, slots=True)
class PricedCost:
    """The central price of one call: exact nano-USD, and where the figure came from."""

    cost_nanos: int
    source: CostSource
    price_version: str
    catalog_model: str | None = None

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nanos)

    @property
    def priced(self) -> bool:
        return self.source is not CostSource.UNPRICED


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One callable model for the dashboard's dropdowns and the `prices` command."""

    provider: Provider
    model: str
    label: str
    status: Literal["current", "legacy"]
    prices: UnitPrices | None
    source: CostSource
    catalog_model: str | None


class PriceOverride(BaseModel):
    """One negotiated or private price (USD per 1M tokens), effective over [effective_from, effective_to)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider
    model: str = Field(pattern=MODEL_PATTERN)
    match: Literal["exact", "prefix"] = "exact"
    input_mtok: Decimal = Field(ge=0)
    output_mtok: Decimal = Field(ge=0)
    cache_read_mtok: Decimal | None = Field(default=None, ge=0)
    cache_write_mtok: Decimal | None = Field(default=None, ge=0)
    cache_write_1h_mtok: Decimal | None = Field(default=None, ge=0)
    reasoning_mtok: Decimal | None = Field(default=None, ge=0)
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _window(self) -> PriceOverride:
        for name in ("effective_from", "effective_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must carry a timezone")
        if self.effective_from and self.effective_to and self.effective_from >= self.effective_to:
            raise ValueError("effective_from must be before effective_to")
        return self

    def matches(self, provider: Provider, model: str, at: datetime) -> bool:
        if provider is not self.provider:
            return False
        if self.match == "exact" and model.lower() != self.model.lower():
            return False
        if self.match == "prefix" and not model.lower().startswith(self.model.lower()):
            return False
        if self.effective_from and at < self.effective_from:
            return False
        return not (self.effective_to and at >= self.effective_to)

    @property
    def prices(self) -> UnitPrices:
        return UnitPrices(
            input_mtok=self.input_mtok,
            output_mtok=self.output_mtok,
            cache_read_mtok=self.cache_read_mtok,
            cache_write_mtok=self.cache_write_mtok,
            cache_write_1h_mtok=self.cache_write_1h_mtok,
            reasoning_mtok=self.reasoning_mtok,
        )


class PriceOverrideFile(BaseModel):
    """The deployment's override file (JSON): `{"version": "...", "overrides": [...]}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, max_length=64)
    overrides: tuple[PriceOverride, ...] = ()


@cache
def catalog_version() -> str:
    """The catalog's version string (cached: `importlib.metadata` reads files on every call)."""
    from importlib.metadata import version

    return f"genai-prices {version('genai-prices')}"


class PriceBook:
    """Prices calls. Cheap to keep for a process's life; thread-safe (read-only after init)."""

    def __init__(self, overrides: PriceOverrideFile | None = None) -> None:
        self._overrides = overrides or PriceOverrideFile(version="none")

    @classmethod
    def from_file(cls, path: str | Path | None) -> PriceBook:
        if path is None:
            return cls()
        try:
            raw = Path(path).read_text(encoding="utf-8")
            return cls(PriceOverrideFile.model_validate_json(raw))
        except OSError as exc:
            raise ConfigurationError(f"cannot read price override file {path}: {exc.strerror}") from exc
        except ValidationError as exc:
            raise ConfigurationError(f"invalid price override file {path}: {exc}") from exc

    @property
    def override_version(self) -> str:
        return self._overrides.version

    # -- pricing ---------------------------------------------------------------------------

    def price_event(self, event: UsageEvent) -> PricedCost:
        return self.price(
            event.provider, event.model, event, at=event.timestamp, reported_cost_usd=event.reported_cost_usd
        )

    def price(
        self,
        provider: Provider,
        model: str,
        tokens: TokenCounts,
        *,
        at: datetime | None = None,
        reported_cost_usd: Decimal | None = None,
    ) -> PricedCost:
        at = at or datetime.now(UTC)
        override = self._override_for(provider, model, at)
        if override is not None:
            return PricedCost(
                cost_nanos=usd_to_nanos(override.prices.cost_usd(tokens)),
                source=CostSource.OVERRIDE,
                price_version=f"override {self._overrides.version}",
            )
        try:
            total, catalog_model = _catalog_cost(provider, model, tokens, at)
        except UnknownModelError:
            if reported_cost_usd is not None:
                return PricedCost(usd_to_nanos(reported_cost_usd), CostSource.REPORTED, "reported")
            return PricedCost(0, CostSource.UNPRICED, "unpriced")
        return PricedCost(usd_to_nanos(total), CostSource.CATALOG, catalog_version(), catalog_model)

    def unit_prices(self, provider: Provider, model: str, at: datetime | None = None) -> UnitPrices:
        """Prices per 1M tokens for a model; raises UnknownModelError."""
        at = at or datetime.now(UTC)
        override = self._override_for(provider, model, at)
        if override is not None:
            return override.prices
        info = _find_model(provider, model)
        return _unit_prices(info.get_prices(at))

    def preview_cost_usd(self, provider: Provider, model: str) -> Decimal:
        """What 1M input + 1M output tokens cost now (the configuration page's preview)."""
        return self.unit_prices(provider, model).preview_usd()

    def catalog(self, providers: Iterable[Provider] = tuple(Provider)) -> list[CatalogModel]:
        """The curated callable models of each provider, seed models included, with prices."""
        wanted = set(providers)
        out: list[CatalogModel] = []
        for entry in _curated_models():
            provider = Provider(entry["provider"])
            if provider not in wanted:
                continue
            model = entry["model"]
            source, prices, catalog_model = CostSource.UNPRICED, None, None
            if self._override_for(provider, model, datetime.now(UTC)) is not None:
                source, prices = CostSource.OVERRIDE, self.unit_prices(provider, model)
            else:
                try:
                    info = _find_model(provider, model)
                except UnknownModelError:
                    pass
                else:
                    source, catalog_model = CostSource.CATALOG, info.id
                    prices = _unit_prices(info.get_prices(datetime.now(UTC)))
            out.append(
                CatalogModel(
                    provider=provider,
                    model=model,
                    label=entry["label"],
                    status=entry["status"],
                    prices=prices,
                    source=source,
                    catalog_model=catalog_model,
                )
            )
        return out

    def _override_for(self, provider: Provider, model: str, at: datetime) -> PriceOverride | None:
        # Later entries win, so a file can append a newer price without editing the old one.
        for override in reversed(self._overrides.overrides):
            if override.matches(provider, model, at):
                return override
        return None


# -- genai-prices ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _find_model(provider: Provider, model: str) -> ModelInfo:
    from genai_prices.data_snapshot import get_snapshot

    try:
        _, info = get_snapshot().find_provider_model(model, None, CATALOG_PROVIDER_IDS[provider], None)
    except LookupError as exc:
        raise UnknownModelError(f"no catalog price for {provider.value} model {model!r}") from exc
    return info


def _catalog_usage(tokens: TokenCounts) -> Any:
    """Map the non-overlapping ledger onto genai-prices' Usage (whose input includes cache tokens)."""
    from genai_prices import Usage

    values: dict[str, int] = {
        "input_tokens": tokens.input_tokens + tokens.cache_read_tokens + tokens.cache_write_tokens,
        "output_tokens": tokens.output_tokens + tokens.reasoning_tokens,
    }
    if tokens.cache_read_tokens:
        values["cache_read_tokens"] = tokens.cache_read_tokens
    if tokens.cache_write_tokens:
        values["cache_write_tokens"] = tokens.cache_write_tokens
        if tokens.cache_write_1h_tokens is not None:
            values["cache_write_1h_tokens"] = tokens.cache_write_1h_tokens
            values["cache_write_5m_tokens"] = tokens.cache_write_tokens - tokens.cache_write_1h_tokens
    if tokens.reasoning_tokens:
        values["output_reasoning_tokens"] = tokens.reasoning_tokens
    return Usage(**values)


def _catalog_cost(provider: Provider, model: str, tokens: TokenCounts, at: datetime) -> tuple[Decimal, str]:
    from genai_prices import calc_price

    try:
        calc = calc_price(
            _catalog_usage(tokens),
            model,
            provider_id=CATALOG_PROVIDER_IDS[provider],
            genai_request_timestamp=at,
        )
    except LookupError as exc:
        raise UnknownModelError(f"no catalog price for {provider.value} model {model!r}") from exc
    return calc.total_price, calc.model.id


def _base(value: Any) -> Decimal | None:
    """A flat price, or the first tier's base of a tiered one."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(value.base)


def _unit_prices(price: ModelPrice) -> UnitPrices:
    return UnitPrices(
        input_mtok=_base(price.input_mtok) or Decimal(0),
        output_mtok=_base(price.output_mtok) or Decimal(0),
        cache_read_mtok=_base(price.cache_read_mtok),
        cache_write_mtok=_base(price.cache_write_mtok),
        cache_write_1h_mtok=_base(price.cache_write_1h_mtok),
        reasoning_mtok=_base(price.output_reasoning_mtok),
    )


@cache
def _curated_models() -> tuple[dict[str, Any], ...]:
    text = resources.files("llmtally").joinpath("data/models.json").read_text(encoding="utf-8")
    return tuple(json.loads(text)["models"])


@cache
def default_price_book() -> PriceBook:
    """The process-wide price book, with the override file named by settings (if any)."""
    from llmtally.settings import get_settings

    return PriceBook.from_file(get_settings().price_overrides_file)


def known_models(provider: Provider) -> Sequence[str]:
    """The curated model ids of a provider (what the settings API accepts as a preference)."""
    return tuple(e["model"] for e in _curated_models() if e["provider"] == provider.value)

"""GET /api/llm-models: providers, their models and prices per 1M tokens, and the cost preview."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from llmtally.api.models import (
    KEYED_PROVIDERS,
    CatalogModelOut,
    CatalogProviderOut,
    ModelPricing,
    ModelsResponse,
)
from llmtally.events import Provider
from llmtally.pricing import CostSource, PriceBook

PROVIDER_NAMES: Final[dict[Provider, str]] = {
    Provider.ANTHROPIC: "Anthropic",
    Provider.OPENAI: "OpenAI",
    Provider.GOOGLE: "Google",
    Provider.BEDROCK: "AWS Bedrock",
}


def model_catalog(price_book: PriceBook, providers: Iterable[Provider] = tuple(Provider)) -> ModelsResponse:
    """The dashboard's dropdowns: the seed's `PROVIDERS` shape, priced from the price book (never hard-coded)."""
    wanted = tuple(providers)
    by_provider: dict[Provider, list[CatalogModelOut]] = {p: [] for p in wanted}
    for entry in price_book.catalog(wanted):
        prices = entry.prices
        source = "unpriced" if entry.source is CostSource.UNPRICED else entry.source.value
        by_provider[entry.provider].append(
            CatalogModelOut(
                id=entry.model,
                name=entry.label,
                status=entry.status,
                pricing=ModelPricing(
                    input=prices.input_mtok if prices else None,
                    output=prices.output_mtok if prices else None,
                    cacheRead=prices.cache_read_mtok if prices else None,
                    cacheWrite=prices.cache_write_mtok if prices else None,
                ),
                costPreviewUsd=prices.preview_usd() if prices else None,
                priceSource=source,
            )
        )
    return ModelsResponse(
        providers=[
            CatalogProviderOut(
                id=provider,
                name=PROVIDER_NAMES[provider],
                requiresKey=provider in KEYED_PROVIDERS,
                models=by_provider[provider],
            )
            for provider in wanted
        ]
    )

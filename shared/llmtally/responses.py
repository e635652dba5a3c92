"""The seed's response types, kept by name: `LLMResponse` and `LLMUsage` (ledger buckets added)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from llmtally.events import TokenCounts
from llmtally.money import nanos_to_usd
from llmtally.pricing import CostSource, PriceBook, PricedCost


@dataclass(frozen=True, slots=True)
class LLMUsage:
    """One call's usage: the seed's fields plus the canonical ledger. `cost_usd` is an exact Decimal."""

    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    latency_ms: int
    model: str
    provider: str
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_5m_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int = 0
    cost_source: CostSource = CostSource.CATALOG
    cost_nanos: int = 0

    @property
    def total_tokens(self) -> int:
        return self.tokens().total_tokens

    def tokens(self) -> TokenCounts:
        return TokenCounts(
            input_tokens=self.input_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cache_write_5m_tokens=self.cache_write_5m_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
            output_tokens=self.output_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    @classmethod
    def priced(
        cls,
        *,
        provider: str,
        model: str,
        tokens: TokenCounts,
        latency_ms: int,
        price_book: PriceBook,
        at: datetime | None = None,
    ) -> LLMUsage:
        """Price a ledger with the price book and wrap it (the adapters' one way to build usage)."""
        from llmtally.events import Provider

        cost: PricedCost = price_book.price(Provider(provider), model, tokens, at=at)
        return cls(
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            cost_usd=nanos_to_usd(cost.cost_nanos),
            latency_ms=latency_ms,
            model=model,
            provider=provider,
            cache_read_tokens=tokens.cache_read_tokens,
            cache_write_tokens=tokens.cache_write_tokens,
            cache_write_5m_tokens=tokens.cache_write_5m_tokens,
            cache_write_1h_tokens=tokens.cache_write_1h_tokens,
            reasoning_tokens=tokens.reasoning_tokens,
            cost_source=cost.source,
            cost_nanos=cost.cost_nanos,
        )


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """A provider's answer, normalized (the seed's shape)."""

    content: str
    usage: LLMUsage
    model: str
    provider: str
    raw_response: dict[str, Any] = field(default_factory=dict, repr=False)

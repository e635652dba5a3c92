"""Pricing: every figure below is computed by hand from the providers' per-MTok prices."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.errors import ConfigurationError, UnknownModelError
from llmtally.events import Provider, TokenCounts, UsageEvent
from llmtally.money import nanos_to_usd, usd_to_nanos
from llmtally.pricing import CostSource, PriceBook, PriceOverride, PriceOverrideFile, UnitPrices, known_models

AT = datetime(2026, 11, 1, tzinfo=UTC)
book = PriceBook()


def cost(provider: str, model: str, at: datetime = AT, **tokens: int) -> Decimal:
    priced = book.price(Provider(provider), model, TokenCounts(**tokens), at=at)
    assert priced.source is CostSource.CATALOG
    return priced.cost_usd


def test_the_seed_worked_example_holds_to_the_cent() -> None:
    # Claude 3.5 Sonnet, 1,500 in + 500 out: 1500/1e6 × $3 + 500/1e6 × $15 = $0.0045 + $0.0075
    priced = book.price(
        Provider.ANTHROPIC, "claude-3-5-sonnet-20241022", TokenCounts(input_tokens=1500, output_tokens=500)
    )
    assert priced.cost_usd == Decimal("0.012")
    assert priced.cost_nanos == 12_000_000
    assert priced.catalog_model == "claude-3-5-sonnet"
    assert priced.price_version.startswith("genai-prices ")


# (provider, model, $/MTok in, $/MTok out): the catalog's current price for every seed model.
SEED_MODELS = [
    ("anthropic", "claude-3-5-sonnet-20241022", "3", "15"),
    ("anthropic", "claude-3-5-haiku-20241022", "0.8", "4"),
    ("anthropic", "claude-3-opus-20240229", "15", "75"),
    ("openai", "gpt-4-turbo", "10", "30"),
    ("openai", "gpt-4", "30", "60"),
    ("openai", "gpt-3.5-turbo", "0.5", "1.5"),
    ("google", "gemini-pro", "0.125", "0.375"),
    ("google", "gemini-1.5-pro", "1.25", "5"),
    ("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", "3", "15"),
    ("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", "0.8", "4"),
    ("bedrock", "anthropic.claude-3-opus-20240229-v1:0", "15", "75"),
]


@pytest.mark.parametrize(("provider", "model", "price_in", "price_out"), SEED_MODELS)
def test_every_seed_model_prices_as_the_formula_says(provider: str, model: str, price_in: str, price_out: str) -> None:
    expected = Decimal(1500) * Decimal(price_in) / 1_000_000 + Decimal(500) * Decimal(price_out) / 1_000_000
    assert cost(provider, model, input_tokens=1500, output_tokens=500) == expected
    assert book.preview_cost_usd(Provider(provider), model) == Decimal(price_in) + Decimal(price_out)


def test_anthropic_cache_reads_and_writes_at_their_own_prices() -> None:
    # Sonnet 4.5: input $3, cache read $0.30, 5-minute write $3.75, 1-hour write $6, output $15
    got = cost(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        input_tokens=1000,
        cache_read_tokens=20_000,
        cache_write_tokens=5000,
        cache_write_5m_tokens=2000,
        cache_write_1h_tokens=3000,
        output_tokens=800,
    )
    expected = (
        Decimal("1000") * 3 + Decimal("20000") * Decimal("0.3") + 2000 * Decimal("3.75") + 3000 * 6 + 800 * 15
    ) / 1_000_000
    assert got == expected == Decimal("0.0465")


def test_cache_writes_without_a_split_are_priced_as_five_minute_writes() -> None:
    got = cost("anthropic", "claude-3-5-haiku-20241022", input_tokens=100, cache_write_tokens=10_000, output_tokens=10)
    assert got == (Decimal(100) * Decimal("0.8") + 10_000 * 1 + 10 * 4) / 1_000_000


def test_openai_cache_reads_are_discounted_and_reasoning_is_billed_as_output() -> None:
    # o3: input $2, cached input $0.50, output $8; reasoning tokens are output tokens
    got = cost("openai", "o3", input_tokens=4000, cache_read_tokens=6000, output_tokens=300, reasoning_tokens=1700)
    assert got == (Decimal(4000) * 2 + 6000 * Decimal("0.5") + (300 + 1700) * 8) / 1_000_000 == Decimal("0.027")


def test_gemini_thinking_tokens_are_billed_at_the_output_price() -> None:
    # Gemini 2.5 Flash: input $0.30, cached $0.03, output (thinking included) $2.50
    got = cost(
        "google",
        "gemini-2.5-flash",
        input_tokens=10_000,
        cache_read_tokens=2000,
        output_tokens=500,
        reasoning_tokens=900,
    )
    assert got == (Decimal(10_000) * Decimal("0.3") + 2000 * Decimal("0.03") + 1400 * Decimal("2.5")) / 1_000_000


def test_openai_cache_writes_cost_the_input_price() -> None:
    # OpenAI does not charge extra for writing its cache: a write is plain input.
    assert cost("openai", "gpt-4o", input_tokens=600, cache_write_tokens=400) == cost(
        "openai", "gpt-4o", input_tokens=1000
    )


@pytest.mark.parametrize(
    "model",
    [
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "amazon.nova-pro-v1:0",
    ],
)
def test_bedrock_model_ids_resolve(model: str) -> None:
    assert cost("bedrock", model, input_tokens=1000, output_tokens=1000) > 0


def test_bedrock_cross_region_profile_costs_its_regional_price() -> None:
    # Bedrock's US cross-region Sonnet 4.5 is 10% over Anthropic's list price: $3.30 / $16.50.
    got = cost("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", input_tokens=1000, output_tokens=1000)
    assert got == (Decimal("3.3") * 1000 + Decimal("16.5") * 1000) / 1_000_000


def test_historic_prices_apply_by_the_calls_timestamp() -> None:
    # claude-sonnet-4-6 charged long-context prompts ($6/$22.50 over 200k input) until 2026-03-13.
    tokens = {"input_tokens": 300_000, "output_tokens": 1000}
    before = cost("anthropic", "claude-sonnet-4-6", at=datetime(2026, 2, 1, tzinfo=UTC), **tokens)
    after = cost("anthropic", "claude-sonnet-4-6", at=datetime(2026, 4, 1, tzinfo=UTC), **tokens)
    assert before == Decimal(300_000) * 6 / 1_000_000 + Decimal(1000) * Decimal("22.5") / 1_000_000
    assert after == Decimal(300_000) * 3 / 1_000_000 + Decimal(1000) * 15 / 1_000_000


def test_an_unknown_model_is_unpriced_never_a_silent_zero() -> None:
    priced = book.price(Provider.OPENAI, "my-private-model-7", TokenCounts(input_tokens=10))
    assert priced.source is CostSource.UNPRICED
    assert not priced.priced
    with pytest.raises(UnknownModelError):
        book.unit_prices(Provider.OPENAI, "my-private-model-7")


def test_an_unknown_model_with_a_reported_cost_keeps_the_producers_figure() -> None:
    priced = book.price(
        Provider.OPENAI, "my-private-model-7", TokenCounts(input_tokens=10), reported_cost_usd=Decimal("0.000123456")
    )
    assert (priced.source, priced.cost_nanos) == (CostSource.REPORTED, 123_456)


def test_the_catalog_price_wins_over_a_reported_cost() -> None:
    priced = book.price(
        Provider.ANTHROPIC,
        "claude-3-5-sonnet-20241022",
        TokenCounts(input_tokens=1500, output_tokens=500),
        reported_cost_usd=Decimal("99"),
    )
    assert (priced.source, priced.cost_usd) == (CostSource.CATALOG, Decimal("0.012"))


def test_price_event_uses_the_events_timestamp_and_tokens() -> None:
    event = UsageEvent(
        user_id="u1",
        provider=Provider.ANTHROPIC,
        model="claude-3-5-sonnet-20241022",
        operation_type="query_generation",
        input_tokens=1500,
        output_tokens=500,
    )
    assert book.price_event(event).cost_nanos == 12_000_000


# -- overrides -------------------------------------------------------------------------------------


def overrides(*entries: dict[str, object]) -> PriceBook:
    return PriceBook(PriceOverrideFile.model_validate({"version": "2026-11", "overrides": list(entries)}))


def test_an_override_prices_a_private_model() -> None:
    pb = overrides(
        {"provider": "openai", "model": "ft:gpt-4o:acme", "match": "prefix", "input_mtok": "4", "output_mtok": "12"}
    )
    priced = pb.price(Provider.OPENAI, "ft:gpt-4o:acme:v3", TokenCounts(input_tokens=1000, output_tokens=500))
    assert priced.source is CostSource.OVERRIDE
    assert priced.cost_usd == Decimal("0.010")
    assert priced.price_version == "override 2026-11"


def test_a_negotiated_override_beats_the_catalog_only_inside_its_window() -> None:
    pb = overrides(
        {
            "provider": "anthropic",
            "model": "claude-3-5-sonnet-20241022",
            "input_mtok": "2.4",
            "output_mtok": "12",
            "cache_read_mtok": "0.24",
            "effective_from": "2026-10-01T00:00:00Z",
            "effective_to": "2026-12-01T00:00:00Z",
        }
    )
    tokens = TokenCounts(input_tokens=1500, cache_read_tokens=1000, output_tokens=500)
    inside = pb.price(Provider.ANTHROPIC, "claude-3-5-sonnet-20241022", tokens, at=AT)
    outside = pb.price(Provider.ANTHROPIC, "claude-3-5-sonnet-20241022", tokens, at=datetime(2026, 12, 2, tzinfo=UTC))
    assert (inside.source, inside.cost_usd) == (CostSource.OVERRIDE, (Decimal("3600") + 240 + 6000) / 1_000_000)
    assert outside.source is CostSource.CATALOG


def test_later_overrides_win() -> None:
    pb = overrides(
        {"provider": "google", "model": "gemini-x", "input_mtok": "1", "output_mtok": "1"},
        {"provider": "google", "model": "gemini-x", "input_mtok": "2", "output_mtok": "2"},
    )
    assert pb.preview_cost_usd(Provider.GOOGLE, "gemini-x") == 4


def test_override_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "version": "v1",
                "overrides": [{"provider": "bedrock", "model": "custom.m", "input_mtok": "1", "output_mtok": "1"}],
            }
        )
    )
    assert PriceBook.from_file(path).override_version == "v1"
    with pytest.raises(ConfigurationError, match="cannot read"):
        PriceBook.from_file(tmp_path / "missing.json")
    path.write_text(
        json.dumps({"version": "v1", "overrides": [{"provider": "x", "model": "m", "input_mtok": 1, "output_mtok": 1}]})
    )
    with pytest.raises(ConfigurationError, match="invalid price override file"):
        PriceBook.from_file(path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"input_mtok": "-1"}, "greater than or equal to 0"),
        ({"effective_from": "2026-01-01T00:00:00"}, "timezone"),
        ({"effective_from": "2026-02-01T00:00:00Z", "effective_to": "2026-01-01T00:00:00Z"}, "before"),
        ({"model": "bad model"}, "pattern"),
    ],
)
def test_bad_overrides_are_refused(entry: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"provider": "openai", "model": "m", "input_mtok": "1", "output_mtok": "1"}
    with pytest.raises(ValueError, match=message):
        PriceOverride.model_validate(base | entry)


# -- the catalog for the dropdowns ---------------------------------------------------------------


def test_the_catalog_lists_every_provider_with_seed_and_current_models_all_priced() -> None:
    catalog = book.catalog()
    by_provider = {p: [m for m in catalog if m.provider is p] for p in Provider}
    for provider, models in by_provider.items():
        assert {m.status for m in models} == {"current", "legacy"}, provider
    seed = {(p, m) for p, m, _, _ in SEED_MODELS}
    assert seed <= {(m.provider.value, m.model) for m in catalog}
    assert all(m.prices is not None and m.source is CostSource.CATALOG for m in catalog)
    assert "gpt-4o" in known_models(Provider.OPENAI)


# -- money -----------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**18))
def test_nanos_round_trip_exactly(nanos: int) -> None:
    assert usd_to_nanos(nanos_to_usd(nanos)) == nanos


def test_sub_nano_amounts_round_half_even() -> None:
    assert usd_to_nanos(Decimal("0.0000000005")) == 0
    assert usd_to_nanos(Decimal("0.0000000015")) == 2
    with pytest.raises(TypeError):
        usd_to_nanos(0.1)  # type: ignore[arg-type]


def test_unit_prices_fall_back_to_the_base_prices() -> None:
    prices = UnitPrices(input_mtok=Decimal(1), output_mtok=Decimal(2))
    tokens = TokenCounts(input_tokens=1, cache_read_tokens=1, cache_write_tokens=1, output_tokens=1, reasoning_tokens=1)
    assert prices.cost_usd(tokens) == Decimal(7) / 1_000_000

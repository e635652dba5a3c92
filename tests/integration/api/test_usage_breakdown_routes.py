"""Breakdowns, `where` filters and the tag keys route end to end on moto.

Tagged events go through the real ingest handler (tag values bounded to 2 per key and month here,
so one customer folds into `(other)`) and aggregate handler; the routes' figures equal a brute-force
recomputation from the raw entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llmtally.entries import RawEntry
from llmtally.events import Provider, UsageEvent
from llmtally.money import nanos_to_usd
from llmtally.rollups import Counters, entry_tags, sum_counters
from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE
from tests.integration.api.test_usage_routes import get, raw, send
from tests.integration.test_aggregate import (  # noqa: F401  (an autouse fixture: keeps moto's transactions fast)
    cheap_transaction_backups,
    stream_arn,
    usage_event,
)
from tests.support.pipeline import reset_ingest_state

pytestmark = pytest.mark.integration


@pytest.fixture
def tagged(stack: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RawEntry]]:
    """Alice's calls of today: three customers (the third past the bound of 2), two models, one
    call without a customer; the raw entries once aggregated."""
    from llmtally.settings import get_settings

    monkeypatch.setenv("LLMTALLY_MAX_TAG_VALUES_PER_KEY", "2")
    get_settings.cache_clear()
    reset_ingest_state()
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    plan = [
        ("acme", Provider.OPENAI, "gpt-4o", 4000),
        ("acme", Provider.ANTHROPIC, "claude-sonnet-4-5-20250929", 2000),
        ("initech", Provider.OPENAI, "gpt-4o", 1000),
        ("hooli", Provider.OPENAI, "gpt-4o", 3000),
        (None, Provider.ANTHROPIC, "claude-sonnet-4-5-20250929", 500),
    ]
    events: list[UsageEvent] = []
    for minute, (customer, provider, model, tokens) in enumerate(plan):
        event = usage_event(ALICE, at + timedelta(minutes=minute), provider=provider, model=model, tokens=tokens)
        tags = {"feature": "search"} | ({"customer": customer} if customer else {})
        events.append(UsageEvent.model_validate(event.model_copy(update={"tags": tags}).to_detail()))
    send(events, stream_arn())
    yield raw(ALICE)
    reset_ingest_state()


def brute(entries: list[RawEntry], **match: str) -> Counters:
    def attributes(e: RawEntry) -> dict[str, str]:
        return {"provider": e.provider.value, "model": e.model, **{f"tag:{k}": v for k, v in entry_tags(e).items()}}

    return sum_counters(Counters.of(e) for e in entries if all(attributes(e).get(k) == v for k, v in match.items()))


def test_cost_by_customer_with_the_folded_and_the_untagged_rows(tagged: list[RawEntry]) -> None:
    # When alice's cost is broken down by customer
    body = get(f"/api/llm-usage/{ALICE}/breakdown", by="tag:customer").json()
    rows = {row["value"]: row for row in body["rows"]}
    # Then the third customer is folded into (other), counted; the call without one is (none)
    assert set(rows) == {"acme", "initech", "(other)", "(none)"}
    assert body["folded_values"] == 1
    for value in ("acme", "initech", "(other)"):
        expected = brute(tagged, **{"tag:customer": value})
        assert (rows[value]["requests"], Decimal(str(rows[value]["cost_usd"]))) == (
            expected.requests,
            nanos_to_usd(expected.cost_nanos),
        )
    total = brute(tagged)
    assert body["total"]["requests"] == total.requests == 5
    assert Decimal(str(body["total"]["cost_usd"])) == nanos_to_usd(total.cost_nanos)
    # And the rows are costliest first, their shares add up to 100 (± rounding)
    costs = [Decimal(str(row["cost_usd"])) for row in body["rows"]]
    assert costs == sorted(costs, reverse=True)
    shares = sum((Decimal(str(row["share_percent"])) for row in body["rows"]), Decimal(0))
    assert abs(shares - 100) <= Decimal("0.04")
    assert body["other"] is None
    assert (body["where"], body["by"]) == (None, "tag:customer")
    assert body["items_read"] > 0
    assert body["queries"] > 0


def test_one_customers_cost_by_model_and_one_models_by_customer(tagged: list[RawEntry]) -> None:
    # When acme's cost is broken down by model
    body = get(f"/api/llm-usage/{ALICE}/breakdown", by="model", where="tag:customer:acme").json()
    # Then each row is acme's calls of that model, with its provider
    assert body["where"] == {"dimension": "tag:customer", "value": "acme"}
    assert {(r["value"], r["provider"], r["requests"]) for r in body["rows"]} == {
        ("gpt-4o", "openai", 1),
        ("claude-sonnet-4-5-20250929", "anthropic", 1),
    }
    assert body["total"]["requests"] == brute(tagged, **{"tag:customer": "acme"}).requests == 2
    # When gpt-4o's cost is broken down by customer, limited to one row
    body = get(f"/api/llm-usage/{ALICE}/breakdown", by="tag:customer", where="model:gpt-4o", limit=1).json()
    # Then the costliest customer is the row and the rest is summed in `other`
    assert len(body["rows"]) == 1
    assert body["other"]["value"] == "(rest)"
    assert body["rows"][0]["requests"] + body["other"]["requests"] == body["total"]["requests"] == 3


def test_summary_and_daily_follow_the_filter(tagged: list[RawEntry]) -> None:
    # When the summary and the daily series are read for one customer
    summary = get(f"/api/llm-usage/{ALICE}/summary", where="tag:customer:acme").json()
    daily = get(f"/api/llm-usage/{ALICE}/daily", days=2, where="tag:customer:acme").json()
    # Then both count acme's calls only
    acme = brute(tagged, **{"tag:customer": "acme"})
    assert (summary["total_requests"], Decimal(str(summary["total_cost_usd"]))) == (
        acme.requests,
        nanos_to_usd(acme.cost_nanos),
    )
    assert set(summary["by_provider"]) == {"openai", "anthropic"}
    assert summary["where"] == daily["where"] == {"dimension": "tag:customer", "value": "acme"}
    assert sum(day["requests"] for day in daily["daily_usage"]) == acme.requests
    # And a provider filter selects that provider's calls
    openai = get(f"/api/llm-usage/{ALICE}/summary", where="provider:openai").json()
    assert openai["total_requests"] == brute(tagged, provider="openai").requests == 3


def test_the_tag_keys_route_lists_keys_with_this_months_counts(tagged: list[RawEntry]) -> None:
    body = get(f"/api/llm-usage/{ALICE}/tags").json()
    assert body["period"] == datetime.now(UTC).strftime("%Y-%m")
    assert body["keys"] == [
        {"key": "customer", "values": 2, "folded_values": 1},
        {"key": "feature", "values": 1, "folded_values": 0},
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"by": "colour"}, "by"),
        ({"by": "model", "where": "colour:blue"}, "not one of provider, model, operation or tag:<key>"),
        ({"by": "model", "where": "model"}, "is not <dimension>:<value>"),
        ({"by": "tag:feature", "where": "tag:customer:acme"}, "one key at a time"),
        ({"by": "model", "limit": "0"}, "limit"),
    ],
)
def test_bad_breakdowns_are_400s_with_a_reason(stack: MotoServer, query: dict[str, str], message: str) -> None:
    response = get(f"/api/llm-usage/{ALICE}/breakdown", **query)
    assert response.status == 400
    assert message in response.text

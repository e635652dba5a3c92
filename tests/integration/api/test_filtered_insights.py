"""Forecast, anomalies and recommendations follow the dashboard's filter chip (`where`), on moto.

Usage goes through the real ingest and aggregate handlers; under `where=tag:customer:acme` each
insight equals the domain function applied to acme's own brute-force series from the raw entries
(and differs from the whole account's). Under a tag value that was past the tag's monthly bound, the
answer lists those months and says why its figures miss them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from llmtally.anomalies import WARMUP_DAYS, detect_anomalies
from llmtally.api.insights import InsightsService, _touches
from llmtally.entries import RawEntry
from llmtally.events import Provider, UsageEvent
from llmtally.forecast import SERIES_DAYS, forecast_month
from llmtally.money import nanos_to_usd
from llmtally.pricing import default_price_book
from llmtally.repositories.cardinality import TagRegistry
from llmtally.repositories.rollups import RollupRepository
from llmtally.rollups import entry_tags
from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE
from tests.integration.api.test_insights_routes import daily_costs, raw, stable_today
from tests.integration.api.test_usage_routes import get, send
from tests.integration.test_aggregate import (  # noqa: F401  (an autouse fixture: keeps moto's transactions fast)
    cheap_transaction_backups,
    stream_arn,
    usage_event,
)
from tests.support.pipeline import reset_ingest_state

pytestmark = pytest.mark.integration

TZ = "America/St_Johns"  # a :30 zone: local days are not UTC days
DAYS = 28  # history enough for the anomaly scan to judge the spike with margin (at 21 it does not yet)
SPIKE_DAYS_AGO = 3


@pytest.fixture
def customers(stack: MotoServer) -> Iterator[list[RawEntry]]:
    """Alice over 28 days at 15:00 UTC: acme's daily Claude conversation (a spike 3 days ago) and
    initech's larger gpt-5-nano detection rules every other day (no spike); the raw entries once aggregated."""
    reset_ingest_state()
    rng = random.Random(17)
    at_15 = datetime.now(UTC).replace(hour=15, minute=0, second=0, microsecond=0)
    events: list[UsageEvent] = []
    for ago in range(DAYS, 0, -1):
        at = at_15 - timedelta(days=ago)
        tokens = 6_000 + rng.randrange(-300, 300)
        if ago == SPIKE_DAYS_AGO:
            tokens *= 30
        acme = usage_event(ALICE, at, model="claude-sonnet-4-5-20250929", operation="conversation", tokens=tokens)
        initech = usage_event(
            ALICE,
            at + timedelta(minutes=7),
            provider=Provider.OPENAI,
            model="gpt-5-nano",
            operation="detection_rule",
            tokens=400_000 + rng.randrange(-9_000, 9_000),
        )
        for event, customer in ((acme, "acme"), (initech, "initech"))[: 2 if ago % 2 else 1]:
            tagged = event.model_copy(update={"tags": {"customer": customer}})
            events.append(UsageEvent.model_validate(tagged.to_detail()))
    send(events, stream_arn())
    yield raw(ALICE)
    reset_ingest_state()


def test_each_insight_under_a_customer_equals_the_detector_on_that_customers_own_series(
    customers: list[RawEntry],
) -> None:
    acme = [e for e in customers if entry_tags(e).get("customer") == "acme"]
    where = {"dimension": "tag:customer", "value": "acme"}
    # When the forecast is asked for acme
    forecast = get(f"/api/llm-usage/{ALICE}/forecast", tz=TZ, where="tag:customer:acme").json()
    # Then it is the model on acme's own daily series, and says what it is under
    today = datetime.fromisoformat(forecast["period_start"]).date() + timedelta(days=forecast["days_elapsed"] - 1)
    expected = forecast_month(daily_costs(acme, TZ, today, SERIES_DAYS), today)
    assert (forecast["month_to_date_usd"], forecast["forecast_usd"], forecast["low_usd"], forecast["high_usd"]) == (
        nanos_to_usd(expected.month_to_date_nanos),
        nanos_to_usd(expected.forecast_nanos),
        nanos_to_usd(expected.low_nanos),
        nanos_to_usd(expected.high_nanos),
    )
    assert (forecast["where"], forecast["folded_months"], forecast["note"]) == (where, [], None)
    account = get(f"/api/llm-usage/{ALICE}/forecast", tz=TZ).json()
    assert account["where"] is None
    assert Decimal(str(account["forecast_usd"])) > Decimal(str(forecast["forecast_usd"]))

    # When the anomalies are asked for acme and for initech
    today, body = stable_today(
        TZ, lambda: get(f"/api/llm-usage/{ALICE}/anomalies", tz=TZ, days=14, where="tag:customer:acme").json()
    )
    total = 14 + WARMUP_DAYS
    found = detect_anomalies(daily_costs(acme, TZ, today, total), today - timedelta(days=total - 1), 14)
    # Then acme's are the detector's on acme's series: its spike is flagged; initech has none
    assert body["anomalies"] == [
        {
            "date": a.day.isoformat(),
            "cost_usd": nanos_to_usd(a.cost_nanos),
            "expected_usd": nanos_to_usd(a.expected_nanos),
            "score": a.score,
            "direction": a.direction,
        }
        for a in found
    ]
    at_15 = datetime.now(UTC).replace(hour=15, minute=0, second=0, microsecond=0)
    spike = (at_15 - timedelta(days=SPIKE_DAYS_AGO)).astimezone(ZoneInfo(TZ)).date().isoformat()
    assert [a["direction"] for a in body["anomalies"] if a["date"] == spike] == ["high"]
    assert body["where"] == where
    initech = get(f"/api/llm-usage/{ALICE}/anomalies", tz=TZ, days=14, where="tag:customer:initech").json()
    theirs = [e for e in customers if entry_tags(e).get("customer") == "initech"]
    found = detect_anomalies(daily_costs(theirs, TZ, today, total), today - timedelta(days=total - 1), 14)
    assert spike not in {a["date"] for a in initech["anomalies"]}
    assert [a["date"] for a in initech["anomalies"]] == [a.day.isoformat() for a in found]

    # When the recommendations are asked for acme, and for the openai provider
    mine = get(f"/api/llm-usage/{ALICE}/recommendations", days=30, where="tag:customer:acme").json()
    openai = get(f"/api/llm-usage/{ALICE}/recommendations", days=30, where="provider:openai").json()
    # Then each holds only its calls' operations, with their exact token mix and cost
    assert [op["operation_type"] for op in mine["operations"]] == ["conversation"]
    assert [op["operation_type"] for op in openai["operations"]] == ["detection_rule"]
    for answer, chosen in ((mine, acme), (openai, [e for e in customers if e.provider is Provider.OPENAI])):
        (op,) = answer["operations"]
        assert op["requests"] == len(chosen)
        assert op["cost_usd"] == nanos_to_usd(sum(e.cost_nanos for e in chosen))
        for bucket in ("input_tokens", "cache_read_tokens", "output_tokens", "reasoning_tokens"):
            assert op[bucket] == sum(getattr(e, bucket) for e in chosen)
    assert openai["where"] == {"dimension": "provider", "value": "openai"}


def test_a_value_past_the_tags_bound_is_named_with_its_months(stack: MotoServer) -> None:
    # Given a tag bound of one value a month: initech came first last month, so acme was folded then
    registry = TagRegistry(max_keys=16, max_values=1)
    now = datetime.now(UTC)
    last_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    assert registry.fold_tags(ALICE, {"customer": "initech"}, last_month) is None
    assert registry.fold_tags(ALICE, {"customer": "acme"}, last_month) == {"customer": "(other)"}
    service = InsightsService(RollupRepository, default_price_book, tags=lambda: registry)
    # When acme's insights are asked (their windows reach back into last month)
    answers: list[dict[str, Any]] = [
        service.forecast(ALICE, "UTC", now=now, where="tag:customer:acme"),
        service.anomalies(ALICE, 60, "UTC", now=now, where="tag:customer:acme"),
        service.recommendations(ALICE, 60, now=now, where="tag:customer:acme"),
    ]
    # Then each names last month and says its calls then are in (other)
    month = last_month.strftime("%Y-%m")
    for answer in answers:
        assert answer["folded_months"] == [month]
        assert month in answer["note"]
        assert "(other)" in answer["note"]
    # And initech, admitted, carries no note; (other) itself is explained
    assert service.forecast(ALICE, "UTC", now=now, where="tag:customer:initech")["note"] is None
    other = service.forecast(ALICE, "UTC", now=now, where="tag:customer:(other)")
    assert "a different set of values each UTC month" in other["note"]


def test_a_day_overlapping_a_folded_utc_month_is_recognised() -> None:
    # Given UTC month 2026-11 folded: a local day in a zone behind UTC spills into the next UTC day
    from datetime import date

    folded = {"2026-11"}
    # Then Nov 30 in New York (its end is 05:00 UTC Dec 1) touches it, Dec 1 in Tokyo (from 15:00 UTC
    # Nov 30) too, Dec 1 in New York does not
    assert _touches(date(2026, 11, 30), "America/New_York", folded)
    assert _touches(date(2026, 12, 1), "Asia/Tokyo", folded)
    assert not _touches(date(2026, 12, 1), "America/New_York", folded)


@pytest.mark.parametrize("route", ["forecast", "anomalies", "recommendations"])
def test_a_bad_where_is_the_summarys_400(stack: MotoServer, route: str) -> None:
    for where in ("customer", "tag:customer", "colour:red"):
        response = get(f"/api/llm-usage/{ALICE}/{route}", where=where)
        summary = get(f"/api/llm-usage/{ALICE}/summary", where=where)
        assert response.status == summary.status == 400, where
        assert response.json() == summary.json()

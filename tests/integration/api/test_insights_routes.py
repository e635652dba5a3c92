"""Insight routes on moto: usage goes through the real ingest and aggregate handlers, then the API.

Figures are compared with the domain functions applied to a brute-force daily series computed
from the raw entries, so the routes are checked end to end (rollups, local days, money) without
re-deriving the statistics here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from llmtally.anomalies import WARMUP_DAYS, detect_anomalies
from llmtally.events import Provider, UsageEvent
from llmtally.forecast import SERIES_DAYS, forecast_month
from llmtally.ingest import RawEntry
from llmtally.money import nanos_to_usd
from llmtally.repositories.usage import UsageRepository
from tests.conftest import MotoServer
from tests.integration.api.conftest import ADMIN_CLAIMS, ALICE, BOB
from tests.integration.api.test_usage_routes import get, send
from tests.integration.test_aggregate import (  # noqa: F401  (an autouse fixture: keeps moto's transactions fast)
    cheap_transaction_backups,
    stream_arn,
    usage_event,
)
from tests.support.apigw import request
from tests.support.pipeline import reset_ingest_state
from tests.support.snapshot import TableSnapshot, restore_snapshot, seed_snapshot

# One worker runs the module: the seeded pipeline (`seeded_history`) runs once per run, not once per worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("insights-routes")]

TZ = "Asia/Kolkata"
HISTORY_DAYS = 35
SPIKE_DAYS_AGO = 4


@pytest.fixture
def pipeline(stack: Any) -> Iterator[str]:
    reset_ingest_state()
    yield stream_arn()
    reset_ingest_state()


@pytest.fixture(scope="module")
def seeded_history(_moto_server: MotoServer) -> tuple[list[UsageEvent], TableSnapshot]:
    """Alice: one Claude Opus 4.1 conversation a day for 35 days, mornings in TZ (weekends lighter, a spike
    four days ago), and a gpt-5-nano detection rule every third day. Nothing today. Through the
    ingest and aggregate handlers once per module: the events, and every table after."""
    events = history_events()
    return events, seed_snapshot(_moto_server, lambda: send(events, stream_arn()))


@pytest.fixture
def history(
    pipeline: str, stack: MotoServer, seeded_history: tuple[list[UsageEvent], TableSnapshot]
) -> list[UsageEvent]:
    """The seeded history's tables, restored into this test's fresh moto server."""
    events, snapshot = seeded_history
    restore_snapshot(stack.client("dynamodb"), snapshot)
    return events


def history_events() -> list[UsageEvent]:
    rng = random.Random(9)
    # Local 11:30 in TZ (06:00 UTC, the same date in both), counted back from TZ's today: the spike
    # lands SPIKE_DAYS_AGO local days ago whatever the UTC time (from 18:30 UTC Kolkata's date is
    # already UTC's tomorrow). Nothing today in either zone: a day that is UTC's today is left out.
    local = ZoneInfo(TZ)
    morning = datetime.combine(datetime.now(local).date(), time(11, 30), tzinfo=local)
    utc_today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    events: list[UsageEvent] = []
    for ago in range(HISTORY_DAYS, 0, -1):
        at = morning - timedelta(days=ago)
        if at >= utc_today:
            continue
        tokens = (8_000 if at.weekday() >= 5 else 20_000) + rng.randrange(-500, 500)
        if ago == SPIKE_DAYS_AGO:
            tokens *= 40
        events.append(usage_event(ALICE, at, model="claude-opus-4-1-20250805", operation="conversation", tokens=tokens))
        if ago % 3 == 0:
            events.append(
                usage_event(
                    ALICE,
                    at + timedelta(minutes=5),
                    provider=Provider.OPENAI,
                    model="gpt-5-nano",
                    operation="detection_rule",
                    tokens=5_000,
                )
            )
    return events


def raw(user: str) -> list[RawEntry]:
    return list(UsageRepository().iter_entries(user))


def daily_costs(entries: list[RawEntry], tz: str, today: date, days: int) -> list[int]:
    """Brute force: nano-USD per local day for the `days` days ending `today`."""
    zone = ZoneInfo(tz)
    sums = dict.fromkeys((today - timedelta(days=i) for i in range(days)), 0)
    for entry in entries:
        day = entry.timestamp.astimezone(zone).date()
        if day in sums:
            sums[day] += entry.cost_nanos
    return [sums[today - timedelta(days=i)] for i in range(days - 1, -1, -1)]


def stable_today(tz: str, call: Callable[[], Any]) -> tuple[date, Any]:
    """Call, and the local date the call saw (retried if a local midnight passed meanwhile)."""
    for _ in range(3):
        before = datetime.now(ZoneInfo(tz)).date()
        answer = call()
        if datetime.now(ZoneInfo(tz)).date() == before:
            return before, answer
    raise AssertionError("the local date kept changing")


# -- forecast ------------------------------------------------------------------------------------


def test_forecast_equals_the_model_on_the_brute_force_series(history: list[UsageEvent]) -> None:
    response = get(f"/api/llm-usage/{ALICE}/forecast", tz=TZ)
    assert response.status == 200, response.text
    body = response.json()
    period_start = datetime.fromisoformat(body["period_start"])
    today = period_start.date() + timedelta(days=body["days_elapsed"] - 1)
    expected = forecast_month(daily_costs(raw(ALICE), TZ, today, SERIES_DAYS), today)
    assert body == {
        "user_id": ALICE,
        "timezone": TZ,
        "period": expected.period,
        "period_start": body["period_start"],
        "period_end": body["period_end"],
        "days_elapsed": expected.days_elapsed,
        "days_in_period": expected.days_in_period,
        "month_to_date_usd": nanos_to_usd(expected.month_to_date_nanos),
        "forecast_usd": nanos_to_usd(expected.forecast_nanos),
        "low_usd": nanos_to_usd(expected.low_nanos),
        "high_usd": nanos_to_usd(expected.high_nanos),
        "method": "seasonal_trend",
        "where": None,
        "folded_months": [],
        "note": None,
    }
    assert period_start.utcoffset() == timedelta(hours=5, minutes=30)
    assert (period_start.day, period_start.hour, period_start.minute) == (1, 0, 0)
    assert datetime.fromisoformat(body["period_end"]).day == 1
    assert body["month_to_date_usd"] <= body["low_usd"] <= body["forecast_usd"] <= body["high_usd"]


def test_a_tenant_without_usage_gets_a_zero_forecast_and_nothing_else(history: list[UsageEvent]) -> None:
    forecast = get(f"/api/llm-usage/{BOB}/forecast", user=BOB).json()
    assert (forecast["method"], forecast["forecast_usd"], forecast["timezone"]) == ("none", 0, "UTC")
    assert get(f"/api/llm-usage/{BOB}/anomalies", user=BOB).json()["anomalies"] == []
    assert get(f"/api/llm-usage/{BOB}/recommendations", user=BOB).json() == {
        "user_id": BOB,
        "days": 30,
        "operations": [],
        "where": None,
        "folded_months": [],
        "note": None,
    }


# -- anomalies -----------------------------------------------------------------------------------


def test_anomalies_find_the_spike_and_equal_the_detector_on_the_brute_force_series(
    history: list[UsageEvent],
) -> None:
    today, response = stable_today(TZ, lambda: get(f"/api/llm-usage/{ALICE}/anomalies", tz=TZ, days=30))
    assert response.status == 200, response.text
    body = response.json()
    total = 30 + WARMUP_DAYS
    found = detect_anomalies(daily_costs(raw(ALICE), TZ, today, total), today - timedelta(days=total - 1), 30)
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
    spike = (today - timedelta(days=SPIKE_DAYS_AGO)).isoformat()
    assert [a["direction"] for a in body["anomalies"] if a["date"] == spike] == ["high"]
    assert (body["days"], body["timezone"], body["user_id"]) == (30, TZ, ALICE)
    assert "Theil–Sen" in body["method"]


# -- recommendations -----------------------------------------------------------------------------


def test_recommendations_reprice_each_operations_token_mix(history: list[UsageEvent]) -> None:
    response = get(f"/api/llm-usage/{ALICE}/recommendations", days=90)
    assert response.status == 200, response.text
    body = response.json()
    entries = raw(ALICE)
    operations = {op["operation_type"]: op for op in body["operations"]}
    assert list(operations) == ["conversation", "detection_rule"]  # costliest first
    for name, op in operations.items():
        mine = [e for e in entries if e.operation_type == name]
        paid = sum(e.cost_nanos for e in mine)
        assert op["requests"] == len(mine)
        assert op["cost_usd"] == nanos_to_usd(paid)
        for bucket in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens"):
            assert op[bucket] == sum(getattr(e, bucket) for e in mine)
        reads = op["cache_read_tokens"]
        assert op["cache_hit_rate"] == (Decimal(reads) / (op["input_tokens"] + reads)).quantize(Decimal("0.0001"))
        for candidate in op["candidates"]:
            assert candidate["saving_usd"] == op["cost_usd"] - candidate["cost_usd"] > 0
    conversation = operations["conversation"]["candidates"]
    assert 1 <= len(conversation) <= 5
    assert [c["cost_usd"] for c in conversation] == sorted(c["cost_usd"] for c in conversation)
    assert "claude-opus-4-1-20250805" not in {c["model"] for c in conversation}
    # gpt-5-nano is among the cheapest current models: little or nothing is cheaper
    assert all(c["model"] != "gpt-5-nano" for c in operations["detection_rule"]["candidates"])


def test_recommendations_cover_only_the_days_asked(history: list[UsageEvent]) -> None:
    body = get(f"/api/llm-usage/{ALICE}/recommendations", days=1).json()
    assert body == {"user_id": ALICE, "days": 1, "operations": [], "where": None, "folded_months": [], "note": None}


# -- refusals ------------------------------------------------------------------------------------

BAD = [
    ("forecast", {"tz": "Europe/Nowhere"}, "tz"),
    ("forecast", {"tz": "../etc"}, "tz"),
    ("forecast", {"days": "3"}, "days"),
    ("anomalies", {"days": "13"}, "days"),
    ("anomalies", {"days": "401"}, "days"),
    ("anomalies", {"days": "many"}, "days"),
    ("anomalies", {"tz": "Mars/Olympus"}, "tz"),
    ("anomalies", {"window": "9"}, "window"),
    ("recommendations", {"days": "0"}, "days"),
    ("recommendations", {"days": "91"}, "days"),
    ("recommendations", {"tz": "UTC"}, "tz"),
]


@pytest.mark.parametrize(("route", "query", "fragment"), BAD, ids=[f"{r} {q}" for r, q, _ in BAD])
def test_bad_input_is_a_400_with_a_message(pipeline: str, route: str, query: dict[str, str], fragment: str) -> None:
    response = request("GET", f"/api/llm-usage/{ALICE}/{route}", claims={"sub": ALICE}, query=query)
    assert response.status == 400, response.text
    assert fragment in response.json()["error"] + str(response.json().get("details"))


@pytest.mark.parametrize("route", ["forecast", "anomalies", "recommendations"])
def test_another_tenant_is_refused_and_an_admin_is_not(pipeline: str, route: str) -> None:
    assert get(f"/api/llm-usage/{ALICE}/{route}", user=BOB).status == 403
    assert request("GET", f"/api/llm-usage/{ALICE}/{route}").status == 401
    assert request("GET", f"/api/llm-usage/{ALICE}/{route}", claims=ADMIN_CLAIMS).status == 200

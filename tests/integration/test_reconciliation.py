"""A month reconciled end to end: providers' reports over loopback HTTP, Cost Explorer and AWS on moto.

The metered side is the rollups table (the day buckets of the model dimension the job reads), the
billed side the providers' documented report pages; the job stores its rows in the reconciliation
table, raises alerts on the usage bus (captured by a rule → SQS queue, as deployed alerts are routed),
and the API serves what was stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from llmtally.events import Provider
from llmtally.observability import logger as _logger  # noqa: F401 - its handler binds stdout at import: before capsys
from llmtally.reconcile.core import TokenKind, day_start
from llmtally.rollups import Counters, Dimension, Granularity, cell_value, model_value
from tests.conftest import MotoServer
from tests.support.apigw import request
from tests.support.billing import (
    BillingServer,
    anthropic_bucket,
    anthropic_cost_result,
    anthropic_usage_result,
    billing_server,
    ce_group,
    openai_bucket,
    openai_cost_result,
    openai_usage_result,
    report_pages,
    set_ce_results,
)

pytestmark = pytest.mark.integration

OPENAI_KEY = "sk-admin-INTEGRATION-0123456789abcdef-openai"
ANTHROPIC_KEY = "sk-ant-admin01-INTEGRATION-0123456789abcdef-anthropic"
NOV = [date(2026, 11, 1) + timedelta(days=i) for i in range(30)]
DEC1 = date(2026, 12, 1)
MINI, SONNET, OPUS = "gpt-4o-mini-2024-07-18", "claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805"
BEDROCK_SONNET = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
MISPRICED_DAY, SCRIPT_DAY = date(2026, 11, 12), date(2026, 11, 20)
PRICES = {
    MINI: {TokenKind.INPUT: Decimal("0.15"), TokenKind.CACHE_READ: Decimal("0.075"), TokenKind.OUTPUT: Decimal("0.6")},
    SONNET: {TokenKind.INPUT: Decimal(3), TokenKind.CACHE_READ: Decimal("0.3"), TokenKind.OUTPUT: Decimal(15)},
    OPUS: {TokenKind.INPUT: Decimal(15), TokenKind.CACHE_READ: Decimal("1.5"), TokenKind.OUTPUT: Decimal(75)},
    BEDROCK_SONNET: {TokenKind.INPUT: Decimal(3), TokenKind.CACHE_READ: Decimal("0.3"), TokenKind.OUTPUT: Decimal(15)},
}
#: Opus 4.1's output as the bill has it: the catalog says $75/MTok (the "mispriced model").
OPUS_BILLED_OUTPUT = Decimal(90)
MINI_DAY = {TokenKind.INPUT: 2_000_000, TokenKind.CACHE_READ: 500_000, TokenKind.OUTPUT: 400_000}
SONNET_DAY = {TokenKind.INPUT: 300_000, TokenKind.CACHE_READ: 1_000_000, TokenKind.OUTPUT: 60_000}
OPUS_DAY = {TokenKind.INPUT: 100_000, TokenKind.CACHE_READ: 0, TokenKind.OUTPUT: 50_000}
SCRIPT = {TokenKind.INPUT: 10_000_000, TokenKind.CACHE_READ: 0, TokenKind.OUTPUT: 2_000_000}


def usd(tokens: int, per_mtok: Decimal) -> Decimal:
    return Decimal(tokens) * per_mtok / 1_000_000


def nanos(model: str, toks: dict[TokenKind, int]) -> int:
    return int(sum(usd(n, PRICES[model][k]) for k, n in toks.items()) * 1_000_000_000)


# -- the two sides ---------------------------------------------------------------------------------


def seed_metered(user: str, provider: Provider, model: str, day: date, toks: dict[TokenKind, int]) -> None:
    """The model's calls of a day in the tenant's day item, as the aggregator would have written them
    (one cell of the packed layout: its code from the tenant's dictionary, `n` moved)."""
    from llmtally.packing import PackedKey, encode
    from llmtally.repositories.rollups import RollupRepository

    counters = Counters(
        requests=100,
        input_tokens=toks[TokenKind.INPUT],
        cache_read_tokens=toks[TokenKind.CACHE_READ],
        output_tokens=toks[TokenKind.OUTPUT],
        total_tokens=sum(toks.values()),
        cost_nanos=nanos(model, toks),
        billed_cost_nanos=nanos(model, toks),
    )
    repo = RollupRepository()
    cell = cell_value(provider.value, model, "conversation")
    code = repo.cell_codes(user, [cell])[cell]
    key = PackedKey(user, Granularity.DAY, "", day_start(day))
    repo.transact([repo.delta(key, encode(code, counters), counters.requests)])
    # (what the job reads: the model's row of the day)
    read = {
        item.key.value: item.counters
        for item in repo.iter_user_items(user)
        if item.key.granularity is Granularity.DAY
        and item.key.bucket == day_start(day)
        and item.key.dimension == Dimension.MODEL
    }
    assert read[model_value(provider.value, model)] == counters


def openai_month(server: BillingServer) -> None:
    usage, costs = [], []
    for day in NOV:
        results = [
            openai_usage_result(
                MINI,
                input_tokens=MINI_DAY[TokenKind.INPUT],
                cached=MINI_DAY[TokenKind.CACHE_READ],
                output=MINI_DAY[TokenKind.OUTPUT],
                requests=100,
                api_key_id="key_service",
            )
        ]
        day_costs = {k: usd(n, PRICES[MINI][k]) for k, n in MINI_DAY.items()}
        if day == SCRIPT_DAY:  # a notebook on another key: billed, never metered
            results.append(
                openai_usage_result(
                    MINI,
                    input_tokens=SCRIPT[TokenKind.INPUT],
                    cached=0,
                    output=SCRIPT[TokenKind.OUTPUT],
                    requests=3,
                    api_key_id="key_notebook",
                )
            )
            for kind in (TokenKind.INPUT, TokenKind.OUTPUT):
                day_costs[kind] += usd(SCRIPT[kind], PRICES[MINI][kind])
        usage.append(openai_bucket(day, results))
        names = {TokenKind.INPUT: "input", TokenKind.CACHE_READ: "cached input", TokenKind.OUTPUT: "output"}
        costs.append(openai_bucket(day, [openai_cost_result(f"{MINI}, {names[k]}", v) for k, v in day_costs.items()]))
    server.serve_pages("/v1/organization/usage/completions", report_pages(usage, 7, openai=True, cursor="u"))
    server.serve_pages("/v1/organization/costs", report_pages(costs, 10, openai=True, cursor="c"))


def anthropic_month(server: BillingServer) -> None:
    usage, costs = [], []
    types = {
        TokenKind.INPUT: "uncached_input_tokens",
        TokenKind.CACHE_READ: "cache_read_input_tokens",
        TokenKind.OUTPUT: "output_tokens",
    }
    for day in NOV:
        results = [
            anthropic_usage_result(
                SONNET,
                uncached=SONNET_DAY[TokenKind.INPUT],
                cache_read=SONNET_DAY[TokenKind.CACHE_READ],
                cache_write_5m=0,
                output=SONNET_DAY[TokenKind.OUTPUT],
                api_key_id="apikey_service",
            )
        ]
        cost_results = [
            anthropic_cost_result(SONNET, types[k], usd(n, PRICES[SONNET][k])) for k, n in SONNET_DAY.items()
        ]
        if day == MISPRICED_DAY:
            results.append(
                anthropic_usage_result(
                    OPUS,
                    uncached=OPUS_DAY[TokenKind.INPUT],
                    cache_read=0,
                    cache_write_5m=0,
                    output=OPUS_DAY[TokenKind.OUTPUT],
                    api_key_id="apikey_service",
                )
            )
            cost_results += [
                anthropic_cost_result(OPUS, types[TokenKind.INPUT], usd(OPUS_DAY[TokenKind.INPUT], Decimal(15))),
                anthropic_cost_result(
                    OPUS, types[TokenKind.OUTPUT], usd(OPUS_DAY[TokenKind.OUTPUT], OPUS_BILLED_OUTPUT)
                ),
            ]
        usage.append(anthropic_bucket(day, results))
        costs.append(anthropic_bucket(day, cost_results))
    server.serve_pages("/v1/organizations/usage_report/messages", report_pages(usage, 7, openai=False, cursor="u"))
    server.serve_pages("/v1/organizations/cost_report", report_pages(costs, 7, openai=False, cursor="c"))


@pytest.fixture(scope="module")
def _server() -> Iterator[BillingServer]:
    with billing_server() as server:
        yield server


@pytest.fixture
def world(moto: MotoServer, _server: BillingServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Tables, the bus with an alert-capturing queue, both admin keys stored, a month on both sides."""
    from llmtally import aws
    from llmtally.reconcile.alerts import ALERT_DETAIL_TYPE, ALERT_SOURCE
    from llmtally.repositories.billing_credentials import BillingCredentialsRepository
    from llmtally.settings import get_settings
    from llmtally.tables import create_tables

    _server.reset()
    monkeypatch.setenv("LLMTALLY_RECONCILE_OPENAI_BASE_URL", _server.url)
    monkeypatch.setenv("LLMTALLY_RECONCILE_ANTHROPIC_BASE_URL", _server.url)
    names = get_settings().names
    create_tables(moto.client("dynamodb"), names)
    events, sqs = aws.client("events"), aws.client("sqs")
    events.create_event_bus(Name=names.event_bus)
    queue_url = sqs.create_queue(QueueName="reconciliation-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="capture",
        EventBusName=names.event_bus,
        EventPattern=json.dumps({"source": [ALERT_SOURCE], "detail-type": [ALERT_DETAIL_TYPE]}),
    )
    events.put_targets(Rule="capture", EventBusName=names.event_bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    credentials = BillingCredentialsRepository()
    credentials.put_admin_key("alice", Provider.OPENAI, SecretStr(OPENAI_KEY))
    credentials.put_admin_key("alice", Provider.ANTHROPIC, SecretStr(ANTHROPIC_KEY))
    for day in NOV:
        seed_metered("alice", Provider.OPENAI, MINI, day, MINI_DAY)
        seed_metered("alice", Provider.ANTHROPIC, SONNET, day, SONNET_DAY)
        if day == MISPRICED_DAY:
            seed_metered("alice", Provider.ANTHROPIC, OPUS, day, OPUS_DAY)
    openai_month(_server)
    anthropic_month(_server)
    return {"server": _server, "queue_url": queue_url}


def alerts_on_bus(queue_url: str) -> list[dict[str, Any]]:
    from llmtally import aws

    sqs = aws.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return out
        for message in messages:
            out.append(json.loads(message["Body"])["detail"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def run_month() -> Any:
    from llmtally.reconcile.job import ReconciliationJob

    job = ReconciliationJob(clock=lambda: datetime(2026, 12, 5, 6, 0, tzinfo=UTC))
    job.bedrock  # noqa: B018 - Bedrock is off unless configured
    return job.run(start=NOV[0], end=DEC1)


def test_a_month_with_a_mispriced_model_and_an_unmetered_script_is_reconciled(
    world: dict[str, Any], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given a November both metered and billed, with Opus 4.1 billed above the catalog on the 12th and
    # a notebook spending on another OpenAI key on the 20th
    # When the month is reconciled
    outcome = run_month()
    # Then both sources ran without error
    assert [(s.provider, s.error) for s in outcome.sources] == [(Provider.ANTHROPIC, None), (Provider.OPENAI, None)]
    # And the API shows the mispriced model as a price drift on output, with an override to paste
    response = request(
        "GET",
        "/api/llm-usage/alice/reconciliation",
        claims={"sub": "alice"},
        query={"start": "2026-11-01", "end": "2026-11-30"},
    )
    assert response.status == 200
    body = json.loads(response.text, parse_float=Decimal)
    rows = {(r["date"], r["provider"], r["model"]): r for r in body["rows"]}
    opus = rows[("2026-11-12", "anthropic", OPUS)]
    assert opus["cause"] == "price"
    assert opus["unmetered_usd"] == 0
    assert opus["drift_usd"] == Decimal("0.75")  # 50k output × ($90 − $75) / 1M
    (feedback,) = opus["price_feedback"]
    assert feedback["kind"] == "output"
    assert feedback["billed_mtok_usd"] == Decimal(90)
    assert feedback["metered_mtok_usd"] == Decimal(75)
    assert feedback["suggested_override"]["output_mtok"] == "90"
    assert feedback["suggested_override"]["model"] == OPUS
    # And the notebook's spend is unmetered, on the right day, model and key: 10M × $0.15 + 2M × $0.60
    script = rows[("2026-11-20", "openai", MINI)]
    assert script["cause"] == "unmetered"
    assert script["unmetered_usd"] == Decimal("2.700000000")
    assert script["price_drift_usd"] == 0
    assert "key_notebook" in script["api_key_ids"]
    # And every other day and model matches
    others = [
        r for k, r in rows.items() if k not in {("2026-11-12", "anthropic", OPUS), ("2026-11-20", "openai", MINI)}
    ]
    assert len(others) == 59  # 30 days × 2 providers' daily models, less the 20th's mini row
    assert {r["cause"] for r in others} == {"match"}
    # And one alert each fired: a drift alert on the 12th, an unmetered alert on the 20th
    fired = alerts_on_bus(world["queue_url"])
    assert sorted(a["alert_id"] for a in fired) == [
        "alice:anthropic:2026-11-12:drift",
        "alice:openai:2026-11-20:unmetered",
    ]
    assert {a["alert_id"] for a in body["alerts"]} == {a["alert_id"] for a in fired}
    # And both sources report their last run
    assert [s["provider"] for s in body["sources"]] == ["anthropic", "openai"]
    # When the month is reconciled again (as the daily job re-reads its window)
    run_month()
    again = json.loads(
        request(
            "GET",
            "/api/llm-usage/alice/reconciliation",
            claims={"sub": "alice"},
            query={"start": "2026-11-01", "end": "2026-11-30"},
        ).text,
        parse_float=Decimal,
    )
    # Then the figures are replaced, never added, and no alert fires a second time
    assert again["rows"] == body["rows"]
    assert again["totals"] == body["totals"]
    assert alerts_on_bus(world["queue_url"]) == []
    # And no admin key appears in any output: logs, stdout, responses, the alert events
    captured = capsys.readouterr()
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        for text in (caplog.text, captured.out, captured.err, response.text, json.dumps(fired)):
            assert key not in text


def test_late_billing_data_replaces_the_provisional_day(world: dict[str, Any]) -> None:
    from llmtally.reconcile.job import ReconciliationJob
    from llmtally.repositories.reconciliation import ReconciliationRepository

    server: BillingServer = world["server"]
    nov29 = date(2026, 11, 29)
    # Given the OpenAI bill of the 29th, read on the 30th while only half of it is in
    half = {k: v // 2 for k, v in MINI_DAY.items()}
    server.serve_pages(
        "/v1/organization/usage/completions",
        report_pages(
            [
                openai_bucket(
                    nov29,
                    [
                        openai_usage_result(
                            MINI,
                            input_tokens=half[TokenKind.INPUT],
                            cached=half[TokenKind.CACHE_READ],
                            output=half[TokenKind.OUTPUT],
                            requests=50,
                            api_key_id="key_service",
                        )
                    ],
                )
            ],
            7,
            openai=True,
            cursor="late",
        ),
    )
    server.serve_pages(
        "/v1/organization/costs",
        report_pages(
            [openai_bucket(nov29, [openai_cost_result(f"{MINI}, input", usd(half[TokenKind.INPUT], Decimal("0.15")))])],
            7,
            openai=True,
            cursor="late",
        ),
    )
    job = ReconciliationJob(clock=lambda: datetime(2026, 11, 30, 6, 0, tzinfo=UTC))
    job.run(start=nov29, end=date(2026, 11, 30), users=["alice"])
    store = ReconciliationRepository()
    (early,) = [r for r in store.rows("alice", nov29, nov29) if r.provider is Provider.OPENAI]
    # Then the day is provisional (the bill is still arriving), overmetered, and raises nothing
    assert early.provisional
    assert early.cause.value == "overmetered"
    assert alerts_on_bus(world["queue_url"]) == []
    # When the full bill is read two days later
    openai_month(server)
    ReconciliationJob(clock=lambda: datetime(2026, 12, 2, 6, 0, tzinfo=UTC)).run(
        start=nov29, end=date(2026, 11, 30), users=["alice"]
    )
    # Then the day's row is replaced by the settled figures: a match, still one row
    rows = [r for r in store.rows("alice", nov29, nov29) if r.provider is Provider.OPENAI]
    assert [(r.cause.value, r.provisional) for r in rows] == [("match", False)]
    assert rows[0].billed_cost_nanos == nanos(MINI, MINI_DAY)


def test_bedrock_is_read_from_cost_explorer_and_split_by_tenant_tag(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtally.reconcile.job import ReconcileSettings, ReconciliationJob
    from llmtally.repositories.reconciliation import ReconciliationRepository
    from llmtally.settings import get_settings
    from llmtally.tables import create_tables

    create_tables(moto.client("dynamodb"), get_settings().names)
    day = date(2026, 11, 10)
    sonnet = BEDROCK_SONNET
    seed_metered(
        "alice",
        Provider.BEDROCK,
        sonnet,
        day,
        {TokenKind.INPUT: 100_000, TokenKind.CACHE_READ: 0, TokenKind.OUTPUT: 20_000},
    )
    # Given Cost Explorer's answer in two pages: alice's tagged Claude usage, and an untagged Nova line
    page = {"TimePeriod": {"Start": day.isoformat(), "End": "2026-11-11"}, "Total": {}, "Estimated": True}
    set_ce_results(
        moto.endpoint_url,
        [
            {
                "ResultsByTime": [
                    {
                        **page,
                        "Groups": [ce_group("USE1-Claude3.5Sonnet-input-tokens", "alice", Decimal("0.3"), 100_000)],
                    }
                ],
                "DimensionValueAttributes": [],
                "NextPageToken": "page-2",
            },
            {
                "ResultsByTime": [
                    {
                        **page,
                        "Groups": [
                            ce_group("USE1-Claude3.5Sonnet-output-tokens", "alice", Decimal("0.3"), 20_000),
                            ce_group("USE1-NovaPro-input-tokens", None, Decimal("0.08"), 100_000),
                        ],
                    }
                ],
                "DimensionValueAttributes": [],
            },
        ],
    )
    settings = ReconcileSettings(bedrock_enabled=True, bedrock_tag_key="llmtally-user")
    # When the job runs with no admin keys stored (Bedrock is the deployment's)
    outcome = ReconciliationJob(settings=settings, clock=lambda: datetime(2026, 11, 20, tzinfo=UTC)).run(
        start=day, end=date(2026, 11, 11)
    )
    # Then alice's Bedrock spend matches her metered Claude usage, and the untagged $0.08 is reported
    (row,) = ReconciliationRepository().rows("alice", day, day)
    assert (row.model, row.cause.value, row.billed_cost_nanos) == (sonnet, "match", 600_000_000)
    assert outcome.unattributed_nanos == 80_000_000

"""Billing sources against documented-shape, paginated fixtures served over real HTTP (127.0.0.1)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from pydantic import SecretStr

from llmtally.reconcile.anthropic import AnthropicBillingSource
from llmtally.reconcile.bedrock import parse_usage_type, split_by_tenant
from llmtally.reconcile.core import TokenKind
from llmtally.reconcile.http import BillingSourceError, report_int, report_key_id, retry_after_seconds
from llmtally.reconcile.openai import OpenAIBillingSource, parse_line_item
from tests.support.billing import BillingServer, billing_server, fixture

OPENAI_KEY = "sk-admin-TESTONLY-0123456789abcdefOPENAI"
ANTHROPIC_KEY = "sk-ant-admin01-TESTONLY-0123456789abcdefANTHROPIC"
NOV1, NOV3 = date(2026, 11, 1), date(2026, 11, 3)


@pytest.fixture(scope="module")
def _server() -> Iterator[BillingServer]:
    with billing_server() as server:
        yield server


@pytest.fixture
def server(_server: BillingServer) -> BillingServer:
    _server.reset()
    return _server


def openai(server: BillingServer, sleeps: list[float] | None = None) -> OpenAIBillingSource:
    return OpenAIBillingSource(
        SecretStr(OPENAI_KEY), base_url=server.url, sleep=(sleeps.append if sleeps is not None else lambda _: None)
    )


def anthropic(server: BillingServer) -> AnthropicBillingSource:
    return AnthropicBillingSource(SecretStr(ANTHROPIC_KEY), base_url=server.url, sleep=lambda _: None)


def serve_openai(server: BillingServer) -> None:
    server.serve_pages("/v1/organization/usage/completions", fixture("openai_usage_completions.json"))
    server.serve_pages("/v1/organization/costs", fixture("openai_costs.json"))


def test_openai_usage_and_costs_are_read_across_pages_with_the_admin_key() -> None:
    with billing_server() as server:
        # Given the documented pages of both reports (two pages each, chained by next_page)
        serve_openai(server)
        # When the source reads November 1-2
        report = openai(server).fetch(NOV1, NOV3)
    # Then every page was requested once, the second with the first's cursor, with the admin key as bearer
    usage_calls = [r for r in server.received if r.path.endswith("/completions")]
    assert len(usage_calls) == 2
    assert ("page", "page_AAAAAGdGxdEiJdKOAAAAAGcqsYA=") in usage_calls[1].query
    assert ("group_by", "model") in usage_calls[0].query
    assert ("group_by", "api_key_id") in usage_calls[0].query
    assert ("bucket_width", "1d") in usage_calls[0].query
    assert ("start_time", str(int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()))) in usage_calls[0].query
    assert all(r.headers["authorization"] == f"Bearer {OPENAI_KEY}" for r in server.received)
    # And the usage lines map onto the canonical kinds (OpenAI's input includes the cached tokens)
    first = report.usage[0]
    assert first.day == NOV1
    assert first.model == "gpt-4o-mini-2024-07-18"
    assert first.api_key_id == "key_svc_metered"
    assert first.tokens[TokenKind.INPUT] == 100_000
    assert first.tokens[TokenKind.CACHE_READ] == 20_000
    assert first.requests == 40
    assert [line.day for line in report.usage] == [NOV1, NOV1, date(2026, 11, 2)]
    # And costs are exact nano-USD, by model and kind where the line item says them
    by_label = {(c.day, c.label): c for c in report.costs}
    cached = by_label[(NOV1, "gpt-4o-mini-2024-07-18, cached input")]
    assert (cached.model, cached.kind, cached.cost_nanos) == ("gpt-4o-mini-2024-07-18", TokenKind.CACHE_READ, 1_500_000)
    tool = by_label[(NOV1, "web search tool calls")]
    assert (tool.model, tool.kind, tool.cost_nanos) == (None, None, 50_000_000)


def test_anthropic_reports_are_read_with_cents_converted_and_cache_kinds(server: BillingServer) -> None:
    # Given the documented usage and cost reports (amounts in cents, as decimal strings)
    server.serve_pages("/v1/organizations/usage_report/messages", fixture("anthropic_usage_report.json"))
    server.serve_pages("/v1/organizations/cost_report", fixture("anthropic_cost_report.json"))
    # When the source reads them
    report = anthropic(server).fetch(NOV1, NOV3)
    # Then the admin key and API version headers were sent, and group_by[] asked for model and key
    assert all(r.headers["x-api-key"] == ANTHROPIC_KEY for r in server.received)
    assert all(r.headers["anthropic-version"] == "2023-06-01" for r in server.received)
    usage_query = server.received[0].query
    assert ("group_by[]", "model") in usage_query
    assert ("group_by[]", "api_key_id") in usage_query
    assert ("starting_at", "2026-11-01T00:00:00Z") in usage_query
    # And tokens by kind (5-minute and 1-hour cache writes together), with the key id when given
    first = report.usage[0]
    assert first.tokens == {
        TokenKind.INPUT: 100_000,
        TokenKind.CACHE_READ: 40_000,
        TokenKind.CACHE_WRITE: 10_000,
        TokenKind.OUTPUT: 20_000,
    }
    assert report.usage[1].api_key_id is None
    # And "30" cents is $0.30; the web search fee is a line without a model
    costs = {(c.day, c.label): c for c in report.costs}
    assert costs[(NOV1, "Claude Sonnet 4.5 Usage - Input Tokens")].cost_nanos == 300_000_000
    assert costs[(NOV1, "Claude Sonnet 4.5 Usage - Cache Write (5m)")].kind is TokenKind.CACHE_WRITE
    assert costs[(NOV1, "Web Search")].model is None
    assert costs[(NOV1, "Web Search")].cost_nanos == 20_000_000


def test_a_rate_limit_waits_for_retry_after_then_succeeds(server: BillingServer) -> None:
    # Given a usage endpoint that answers 429 twice with Retry-After: 7
    serve_openai(server)
    server.throttle["/v1/organization/usage/completions"] = 2
    server.retry_after = "7"
    sleeps: list[float] = []
    source = openai(server, sleeps)
    # When the report is read
    report = source.fetch(NOV1, NOV3)
    # Then the client waited what the provider asked, twice, and read everything
    assert sleeps == [7.0, 7.0]
    assert source.client.throttled == 2
    assert len(report.usage) == 3


def test_a_refused_admin_key_fails_at_once_without_the_key_in_the_error(
    server: BillingServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an endpoint that refuses the key
    server.status["/v1/organization/usage/completions"] = 401
    caplog.set_level(logging.DEBUG)
    # When the report is read
    with pytest.raises(BillingSourceError) as raised:
        openai(server).fetch(NOV1, NOV3)
    # Then it fails once, not retryable, and neither the error nor any log line holds the key
    assert raised.value.status == 401
    assert not raised.value.retryable
    assert len(server.received) == 1
    assert OPENAI_KEY not in str(raised.value)
    assert OPENAI_KEY not in repr(raised.value)
    assert OPENAI_KEY not in caplog.text


def test_server_errors_are_retried_then_reported_retryable(server: BillingServer) -> None:
    # Given an endpoint that keeps answering 503
    server.status["/v1/organizations/usage_report/messages"] = 503
    # When the report is read
    with pytest.raises(BillingSourceError) as raised:
        anthropic(server).fetch(NOV1, NOV3)
    # Then it tried five times and the failure is retryable
    assert len(server.received) == 5
    assert raised.value.retryable
    assert raised.value.status == 503


def test_a_repeated_cursor_is_refused_instead_of_looping(server: BillingServer) -> None:
    # Given a page whose next_page points back at itself
    page = {"object": "page", "data": [], "has_more": True, "next_page": "again"}
    server.routes["/v1/organization/usage/completions"] = {None: page, "again": page}
    # When the report is read
    with pytest.raises(BillingSourceError, match="new next_page"):
        openai(server).fetch(NOV1, NOV3)
    # Then it stopped after the second page
    assert len(server.received) == 2


@pytest.mark.parametrize("source", ["openai", "anthropic"])
def test_a_malformed_report_is_refused_naming_the_source(server: BillingServer, source: str) -> None:
    # Given each source's usage report answering a page without its data list, then a bucket whose
    # token count is not an integer (both sources read pages, buckets and counts the same way)
    path, name, start = (
        ("/v1/organization/usage/completions", "OpenAI report", {"start_time": 1793491200})
        if source == "openai"
        else ("/v1/organizations/usage_report/messages", "Anthropic report", {"starting_at": "2026-11-01T00:00:00Z"})
    )
    reader = openai(server) if source == "openai" else anthropic(server)

    def read() -> None:
        reader.fetch(NOV1, NOV3)

    server.routes[path] = {None: {"object": "page", "data": {"not": "a list"}, "has_more": False}}
    with pytest.raises(BillingSourceError, match=f"^{name}: a page without a data list$"):
        read()
    bucket = {**start, "results": [{"model": "m", "output_tokens": "12", "input_tokens": 1}]}
    server.routes[path] = {None: {"object": "page", "data": [bucket], "has_more": False}}
    with pytest.raises(BillingSourceError, match=f"^{name}: a token count that is not an integer$"):
        read()


def test_report_key_ids_are_bounded_and_absent_ones_none() -> None:
    assert report_key_id("key_" + "k" * 200) == "key_" + "k" * 124
    assert report_key_id("") is None
    assert report_key_id(None) is None
    assert report_key_id(42) is None
    assert report_int(None, "X") == 0
    with pytest.raises(BillingSourceError, match=r"^X: a token count"):
        report_int(True, "X")


@pytest.mark.parametrize(
    ("line_item", "expected"),
    [
        ("gpt-4o-2024-08-06, input", ("gpt-4o-2024-08-06", TokenKind.INPUT)),
        ("gpt-4o-2024-08-06, cached input", ("gpt-4o-2024-08-06", TokenKind.CACHE_READ)),
        ("o3-2025-04-16, output", ("o3-2025-04-16", TokenKind.OUTPUT)),
        ("gpt-4o-2024-08-06, batch output", ("gpt-4o-2024-08-06", TokenKind.OUTPUT)),
        ("web search tool calls", (None, None)),
        (None, (None, None)),
    ],
)
def test_openai_line_items(line_item: str | None, expected: tuple[str | None, TokenKind | None]) -> None:
    assert parse_line_item(line_item) == expected


@pytest.mark.parametrize(
    ("usage_type", "expected"),
    [
        ("USE1-Claude3.5Sonnet-input-tokens", ("Claude3.5Sonnet", TokenKind.INPUT)),
        ("USW2-Claude3.7Sonnet-cache-read-input-token-count", ("Claude3.7Sonnet", TokenKind.CACHE_READ)),
        ("EUC1-NovaPro-output-tokens", ("NovaPro", TokenKind.OUTPUT)),
        ("USE1-ProvisionedThroughput-ModelUnits", ("USE1-ProvisionedThroughput-ModelUnits", None)),
    ],
)
def test_bedrock_usage_types(usage_type: str, expected: tuple[str, TokenKind | None]) -> None:
    assert parse_usage_type(usage_type) == expected


def test_bedrock_results_split_by_tenant_tag_with_untagged_spend_counted() -> None:
    # Given Cost Explorer's two documented pages: alice's tagged Claude usage and an untagged Nova line
    pages = fixture("bedrock_cost_and_usage.json")
    results = [period for page in pages for period in page["ResultsByTime"]]
    # When split by the tag, with no default tenant
    bill = split_by_tenant(results, NOV1, date(2026, 11, 2), tag_key="llmtally-user", default_user=None)
    # Then alice has her three lines, and the untagged $0.08 is unattributed
    alice = bill.reports["alice"]
    assert sum(c.cost_nanos for c in alice.costs) == 603_000_000
    assert {(u.model, next(k for k, v in u.tokens.items() if v)) for u in alice.usage} == {
        ("Claude3.5Sonnet", TokenKind.INPUT),
        ("Claude3.5Sonnet", TokenKind.OUTPUT),
        ("Claude3.5Sonnet", TokenKind.CACHE_READ),
    }
    assert bill.unattributed_nanos == 80_000_000
    # And with a default tenant, the untagged spend is that tenant's
    assert (
        "ops" in split_by_tenant(results, NOV1, date(2026, 11, 2), tag_key="llmtally-user", default_user="ops").reports
    )


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Sun, 01 Nov 2026 12:00:30 GMT", now=lambda: now) == 30.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None

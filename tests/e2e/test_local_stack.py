"""`llmtally local` end to end: a subprocess on free ports, events through the real publisher (with
duplicates and bad events), then the summary, daily series, entries (HTTP API) and rejects checked
exactly, the CLI's reports against it, and a clean exit on SIGTERM.

Nothing here is timed: waits are bounded polls that fail with what they last saw.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from llmtally.aws import client, reset_clients
from llmtally.events import Provider, Status, UsageEvent
from llmtally.ingest import RejectReason
from llmtally.money import nanos_to_usd
from llmtally.pricing import CostSource, default_price_book
from llmtally.publisher import UsagePublisher
from llmtally.queries import daily_usage, summarize
from llmtally.repositories.rejects import RejectsRepository

pytestmark = pytest.mark.xdist_group("local-stack")

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "llmtally.cli"]
USER = "e2e-tenant"
PREFIX = "e2e"
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 45.0) -> T:
    deadline = time.monotonic() + timeout
    last = probe()
    while not done(last):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached; last saw {last!r}")
        time.sleep(0.2)
        last = probe()
    return last


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    state_dir: Path
    stdout: Path
    stderr: Path
    api_url: str
    aws_endpoint: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LLMTALLY_"))}
        env["LLMTALLY_STATE_DIR"] = str(self.state_dir)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "shared"), str(ROOT / "lambdas")])
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=self.env(), capture_output=True, text=True, timeout=60, check=False)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.api_url}{path}", timeout=10) as response:
            return json.loads(response.read(), parse_float=Decimal)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Given `llmtally local` running in its own process, on free loopback ports
    home = tmp_path_factory.mktemp("local-stack")
    port, aws_port = _free_port(), _free_port()
    stdout, stderr = home / "stdout.log", home / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LLMTALLY_"))}
    env.update(LLMTALLY_STATE_DIR=str(home), PYTHONPATH=os.pathsep.join([str(ROOT / "shared"), str(ROOT / "lambdas")]))
    args = ["local", "--port", str(port), "--aws-port", str(aws_port), "--prefix", PREFIX, "--user", USER]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=err)
    state_file = home / "local.json"
    try:
        wait_for(
            "the stack's banner",
            lambda: stdout.read_text(errors="replace") if process.poll() is None else f"exited {process.returncode}",
            lambda text: "stack is up" in text or text.startswith("exited"),
        )
        assert process.poll() is None, stderr.read_text()
        state = json.loads(state_file.read_text())
        assert state["api_url"] == f"http://127.0.0.1:{port}"
        assert state["aws_endpoint"] == f"http://127.0.0.1:{aws_port}"
        yield Stack(process, home, stdout, stderr, state["api_url"], state["aws_endpoint"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.fixture
def on_stack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """This test process's library settings point at the stack's emulator."""
    monkeypatch.setenv("LLMTALLY_ENDPOINT_URL", stack.aws_endpoint)
    monkeypatch.setenv("LLMTALLY_PREFIX", PREFIX)
    reset_clients()
    return stack


def _events(now: datetime) -> list[UsageEvent]:
    """Twelve calls over the last four days: every provider, a cached and a reasoning call, an error,
    an unknown model; timestamps on fixed offsets so each day's figures are known."""
    at = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)

    def event(n: int, days_ago: int, provider: Provider, model: str, operation: str, **kw: Any) -> UsageEvent:
        return UsageEvent(
            event_id=f"e2e-event-{n:04d}",
            user_id=USER,
            timestamp=at - timedelta(days=days_ago, minutes=n),
            provider=provider,
            model=model,
            operation_type=operation,
            latency_ms=100 * n,
            **kw,
        )

    return [
        event(
            1,
            0,
            Provider.ANTHROPIC,
            "claude-3-5-sonnet-20241022",
            "query_generation",
            input_tokens=1500,
            output_tokens=500,
        ),
        event(
            2,
            0,
            Provider.ANTHROPIC,
            "claude-sonnet-4-6",
            "conversation",
            input_tokens=200,
            cache_read_tokens=3000,
            cache_write_tokens=800,
            output_tokens=300,
        ),
        event(
            3, 0, Provider.OPENAI, "gpt-5", "detection_rule", input_tokens=900, output_tokens=400, reasoning_tokens=1200
        ),
        event(
            4,
            1,
            Provider.OPENAI,
            "gpt-4o-mini",
            "query_generation",
            input_tokens=700,
            cache_read_tokens=1024,
            output_tokens=90,
        ),
        event(
            5,
            1,
            Provider.GOOGLE,
            "gemini-2.5-flash",
            "rule_enrichment",
            input_tokens=4000,
            output_tokens=800,
            reasoning_tokens=300,
        ),
        event(6, 1, Provider.GOOGLE, "gemini-1.5-pro", "conversation", input_tokens=1000, output_tokens=1000),
        event(
            7,
            2,
            Provider.BEDROCK,
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "detection_rule",
            input_tokens=2500,
            output_tokens=700,
        ),
        event(8, 2, Provider.BEDROCK, "amazon.nova-pro-v1:0", "query_generation", input_tokens=1200, output_tokens=150),
        event(
            9,
            2,
            Provider.OPENAI,
            "gpt-4o",
            "conversation",
            status=Status.ERROR,
            error_type="rate_limit",
            input_tokens=0,
        ),
        event(10, 3, Provider.OPENAI, "my-private-finetune", "custom_triage", input_tokens=100, output_tokens=10),
        event(
            11,
            3,
            Provider.ANTHROPIC,
            "claude-haiku-4-5-20251001",
            "query_generation",
            input_tokens=300,
            output_tokens=60,
        ),
        event(
            12,
            3,
            Provider.GOOGLE,
            "gemini-2.5-pro",
            "detection_rule",
            input_tokens=5000,
            output_tokens=900,
            reasoning_tokens=2000,
        ),
    ]


def _bad_events(now: datetime) -> list[UsageEvent]:
    """Events the contract refuses, built past validation so the publisher sends them as they are."""
    good: dict[str, Any] = {
        "provider": Provider.OPENAI,
        "model": "gpt-4o",
        "operation_type": "conversation",
        "status": Status.OK,
    }
    return [
        UsageEvent.model_construct(event_id="e2e-bad-00001", user_id=USER, timestamp=now - timedelta(days=120), **good),
        UsageEvent.model_construct(event_id="e2e-bad-00002", user_id="not a tenant!", timestamp=now, **good),
    ]


@dataclass(frozen=True)
class Published:
    events: list[UsageEvent]
    today: date


@pytest.fixture(scope="module")
def published(stack: Stack) -> Published:
    # When the events are published through the library (each good one twice, two bad ones) and one
    # malformed message lands on the queue
    now = datetime.now(UTC)
    events = _events(now)
    pointed = {
        "LLMTALLY_ENDPOINT_URL": stack.aws_endpoint,
        "LLMTALLY_PREFIX": PREFIX,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in pointed}
    os.environ.update(pointed)  # a module-scoped fixture: no monkeypatch; restored below
    reset_clients()
    try:
        publisher = UsagePublisher.for_eventbridge()
        for event in [*events, *events[:6], *_bad_events(now), *events[6:]]:
            assert publisher.publish(event)
        assert publisher.close(timeout=30)
        stats = publisher.stats()
        assert (stats.published, stats.failed, stats.dropped) == (26, 0, 0)
        sqs = client("sqs")
        queue_url = sqs.get_queue_url(QueueName=f"{PREFIX}-llm-usage-ingest")["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody='{"detail": {"event_id": "broken"')
        # Then they are visible in the rollups
        wait_for(
            "all twelve distinct events in the rollups",
            lambda: summarize(USER, now.date() - timedelta(days=5), now.date()).total_requests,
            lambda n: n >= len(events),
        )
        wait_for("the three rejects", lambda: len(RejectsRepository().list_recent(limit=50)), lambda n: n >= 3)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_clients()
    return Published(events, now.date())


def _expected_cost(events: list[UsageEvent]) -> Decimal:
    book = default_price_book()
    return nanos_to_usd(sum(book.price_event(e).cost_nanos for e in events))


def test_summary_counts_each_distinct_event_once_with_exact_cost(on_stack: Stack, published: Published) -> None:
    events = published.events
    summary = summarize(USER, published.today - timedelta(days=5), published.today)
    assert summary.total_requests == 12
    assert summary.input_tokens == sum(e.input_tokens for e in events)
    assert summary.cache_read_tokens == sum(e.cache_read_tokens for e in events)
    assert summary.cache_write_tokens == sum(e.cache_write_tokens for e in events)
    assert summary.output_tokens == sum(e.output_tokens for e in events)
    assert summary.reasoning_tokens == sum(e.reasoning_tokens for e in events)
    assert summary.total_cost_usd == _expected_cost(events)
    assert summary.errors == 1
    assert summary.unpriced_requests == 1
    assert {p: b.requests for p, b in summary.by_provider.items()} == {
        "anthropic": 3,
        "openai": 4,
        "google": 3,
        "bedrock": 2,
    }
    assert summary.by_model["my-private-finetune"].unpriced_requests == 1
    assert summary.by_model["claude-3-5-sonnet-20241022"].cost_usd == Decimal("0.012000000")  # the seed's example
    assert sum(b.requests for b in summary.by_operation.values()) == 12


def test_daily_series_puts_each_event_on_its_local_day(on_stack: Stack, published: Published) -> None:
    for tz in ("UTC", "Asia/Kolkata", "America/St_Johns"):
        # (ending the day after today in UTC: in Asia/Kolkata an event of this evening is tomorrow's)
        rows = daily_usage(USER, days=8, tz=tz, today=published.today + timedelta(days=1)).days
        expected: Counter[date] = Counter(e.timestamp.astimezone(ZoneInfo(tz)).date() for e in published.events)
        assert {row.date: row.requests for row in rows if row.requests} == dict(expected), tz
        assert sum((row.cost_usd for row in rows), Decimal(0)) == _expected_cost(published.events), tz


def test_the_http_api_serves_entries_summary_and_daily(stack: Stack, published: Published) -> None:
    first = stack.get(f"/api/llm-usage/{USER}?limit=5&order=oldest")
    entries = list(first["entries"])
    cursor = first["next_cursor"]
    while cursor:
        page = stack.get(f"/api/llm-usage/{USER}?limit=5&order=oldest&cursor={urllib.parse.quote(cursor)}")
        entries += page["entries"]
        cursor = page["next_cursor"]
    assert [e["event_id"] for e in entries] == [e.event_id for e in sorted(published.events, key=lambda e: e.timestamp)]
    by_id = {e["event_id"]: e for e in entries}
    book = default_price_book()
    for event in published.events:
        priced = book.price_event(event)
        assert Decimal(str(by_id[event.event_id]["cost_usd"])) == priced.cost_usd
        assert by_id[event.event_id]["cost_source"] == priced.source.value
    assert by_id["e2e-event-0010"]["cost_source"] == CostSource.UNPRICED.value

    start = (published.today - timedelta(days=5)).isoformat()
    summary = stack.get(f"/api/llm-usage/{USER}/summary?start={start}&end={published.today.isoformat()}&tz=UTC")
    assert summary["total_requests"] == 12
    assert Decimal(str(summary["total_cost_usd"])) == _expected_cost(published.events)
    daily = stack.get(f"/api/llm-usage/{USER}/daily?days=7&tz=UTC")
    assert sum(row["requests"] for row in daily["daily_usage"]) == 12


def test_rejects_are_recorded_with_their_reasons(on_stack: Stack, published: Published) -> None:
    rejects = RejectsRepository().list_recent(limit=50)
    assert sorted(r.reason for r in rejects) == sorted(
        [RejectReason.CONTRACT_VIOLATION, RejectReason.CONTRACT_VIOLATION, RejectReason.MALFORMED_JSON]
    )
    assert {r.event_id for r in rejects} >= {"e2e-bad-00001"}
    sqs = client("sqs")
    for name in (f"{PREFIX}-llm-usage-ingest", f"{PREFIX}-llm-usage-ingest-dlq"):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0", name


def test_the_cli_reports_against_the_running_stack(stack: Stack, published: Published) -> None:
    summary = stack.cli("summary", "--user", USER, "--days", "7", "--tz", "Asia/Kolkata", "--top", "20")
    assert summary.returncode == 0, summary.stderr
    assert f"{USER}: last 7 days" in summary.stdout
    assert f"cost       ${_expected_cost(published.events):,.4f}" in summary.stdout
    assert "requests   12  (1 errors, 1 unpriced)" in summary.stdout
    for name in ("anthropic", "openai", "google", "bedrock", "custom_triage", "my-private-finetune", "daily cost"):
        assert name in summary.stdout

    as_json = stack.cli("summary", "--target", "local", "--user", USER, "--days", "7", "--json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout, parse_float=Decimal)
    assert document["summary"]["total_requests"] == 12
    assert sum(row["requests"] for row in document["daily"]) == 12

    rejects = stack.cli("rejects", "--json")
    assert rejects.returncode == 0, rejects.stderr
    assert sorted(r["reason"] for r in json.loads(rejects.stdout)) == [
        "contract_violation",
        "contract_violation",
        "malformed_json",
    ]
    text = stack.cli("rejects", "--reason", "malformed_json")
    assert "malformed_json" in text.stdout
    assert "1 rejected event(s)" in text.stdout


def test_the_cli_reconciles_the_bill_on_the_running_stack(stack: Stack, published: Published) -> None:
    from tests.support.billing import (
        billing_server,
        openai_bucket,
        openai_cost_result,
        openai_usage_result,
        report_pages,
    )

    admin_key = "sk-admin-E2E-" + "LocalStackKey" * 3
    finetune = next(e for e in published.events if e.event_id == "e2e-event-0010")
    day = finetune.timestamp.astimezone(UTC).date()
    # Given the tenant's OpenAI admin key stored through the stack's HTTP API
    request = urllib.request.Request(
        f"{stack.api_url}/api/llm-settings/{USER}/billing-keys",
        data=json.dumps({"provider": "openai", "adminKey": admin_key}).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["hasAdminKeys"]["openai"] is True
    # And OpenAI's reports for the finetune's (settled) day: its metered tokens, and a notebook's
    # $1.40 on a model nobody meters
    rogue = "gpt-4.1-nano-2025-04-14"
    usage = [
        openai_usage_result("my-private-finetune", input_tokens=100, cached=0, output=10, requests=1, api_key_id="k1"),
        openai_usage_result(rogue, input_tokens=10_000_000, cached=0, output=1_000_000, requests=9, api_key_id="k2"),
    ]
    costs = [
        openai_cost_result(f"{rogue}, input", Decimal("1.00")),
        openai_cost_result(f"{rogue}, output", Decimal("0.40")),
    ]
    with billing_server() as server:
        server.serve_pages(
            "/v1/organization/usage/completions", report_pages([openai_bucket(day, usage)], 7, openai=True, cursor="e")
        )
        server.serve_pages(
            "/v1/organization/costs", report_pages([openai_bucket(day, costs)], 7, openai=True, cursor="e")
        )
        env = {**stack.env(), "LLMTALLY_RECONCILE_OPENAI_BASE_URL": server.url}
        # When `llmtally reconcile` runs against the local stack for that day
        window = ["--start", day.isoformat(), "--end", (day + timedelta(days=1)).isoformat()]
        result = subprocess.run(
            [*CLI, "reconcile", "--target", "local", "--user", USER, *window, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    # Then it read the bill, stored two rows and raised the unmetered-spend alert
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["sources"] == [{"user_id": USER, "provider": "openai", "rows": 2, "error": None}]
    assert run["alerts"] == [f"{USER}:openai:{day.isoformat()}:unmetered"]
    # And the stack's API serves them: the finetune matches, the notebook's spend is unmetered
    body = stack.get(f"/api/llm-usage/{USER}/reconciliation?start={day.isoformat()}&end={day.isoformat()}")
    rows = {r["model"]: r for r in body["rows"]}
    assert rows["my-private-finetune"]["cause"] == "match"
    assert rows[rogue]["cause"] == "unmetered"
    assert rows[rogue]["unmetered_usd"] == Decimal("1.4")
    # And the alert went through the stack's alert route to the notifier (its log shows the message)
    logs = wait_for(
        "the reconciliation alert in the stack's log",
        lambda: stack.stdout.read_text(errors="replace") + stack.stderr.read_text(errors="replace"),
        lambda text: "reconciliation alert:" in text,
    )
    assert f"{USER}'s openai bill for {day.isoformat()}" in logs
    # And the admin key appears nowhere: the CLI's output, the stack's logs
    for text in (result.stdout, result.stderr, logs):
        assert admin_key not in text


def test_sigterm_stops_the_stack_cleanly(stack: Stack, published: Published) -> None:
    # When the stack gets SIGTERM (after every other test of this module)
    stack.process.send_signal(signal.SIGTERM)
    code = stack.process.wait(timeout=60)
    # Then it drained, removed its state file and exited 0 without a traceback
    out, err = stack.stdout.read_text(errors="replace"), stack.stderr.read_text(errors="replace")
    assert code == 0, err
    assert "Traceback" not in out + err
    assert "stopped." in out
    assert not (stack.state_dir / "local.json").exists()

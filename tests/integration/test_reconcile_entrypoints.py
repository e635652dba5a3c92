"""The two ways a reconciliation runs: the scheduled Lambda handler and `llmtally reconcile`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from llmtally.events import Provider
from llmtally.observability import logger as _logger  # noqa: F401 - its handler binds stdout at import: before capsys
from tests.conftest import MotoServer
from tests.support.billing import BillingServer, billing_server, fixture
from tests.support.lambda_events import FakeLambdaContext

pytestmark = pytest.mark.integration

ADMIN_KEY = "sk-admin-ENTRYPOINTS-0123456789abcdefghij"


@pytest.fixture
def server(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[BillingServer]:
    """moto with the tables and alice's OpenAI admin key; the OpenAI admin API on loopback."""
    from llmtally.repositories.billing_credentials import BillingCredentialsRepository
    from llmtally.settings import get_settings
    from llmtally.tables import create_tables
    from reconcile import handler

    with billing_server() as billing:
        monkeypatch.setenv("LLMTALLY_RECONCILE_OPENAI_BASE_URL", billing.url)
        create_tables(moto.client("dynamodb"), get_settings().names)
        moto.client("events").create_event_bus(Name=get_settings().names.event_bus)  # type: ignore[attr-defined]
        BillingCredentialsRepository().put_admin_key("alice", Provider.OPENAI, SecretStr(ADMIN_KEY))
        handler.reset()
        yield billing
        handler.reset()


def test_the_scheduled_handler_reconciles_the_window_and_reports_it(
    server: BillingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconcile.handler import lambda_handler

    # Given the OpenAI reports of November 1-2
    server.serve_pages("/v1/organization/usage/completions", fixture("openai_usage_completions.json"))
    server.serve_pages("/v1/organization/costs", fixture("openai_costs.json"))
    # When the schedule invokes the function for that window
    summary = lambda_handler({"start": "2026-11-01", "end": "2026-11-03"}, FakeLambdaContext())
    # Then alice's rows are stored (the mini model each day, and the tool line) and nothing failed
    assert summary["sources"] == 1
    assert summary["failures"] == 0
    assert summary["rows"] == 3
    # And the key is in no log line
    assert ADMIN_KEY not in capsys.readouterr().out


def test_a_rate_limited_source_makes_the_run_fail_for_the_schedulers_retry(server: BillingServer) -> None:
    from reconcile.handler import RetryableRunError, lambda_handler

    # Given a usage report that keeps answering 429 (Retry-After: 0)
    server.throttle["/v1/organization/usage/completions"] = 10
    # When the schedule invokes the function
    with pytest.raises(RetryableRunError, match="1 source"):
        lambda_handler({}, FakeLambdaContext())
    # Then the client tried five times, honouring Retry-After each time
    assert len(server.received) == 5


def test_a_refused_key_is_recorded_and_not_retried(server: BillingServer) -> None:
    from llmtally.repositories.reconciliation import ReconciliationRepository
    from reconcile.handler import lambda_handler

    server.status["/v1/organization/usage/completions"] = 401
    summary = lambda_handler({}, FakeLambdaContext())
    assert summary["failures"] == 1
    status = ReconciliationRepository().source_statuses("alice")[Provider.OPENAI]
    assert "admin key was refused (HTTP 401)" in status["error"]
    assert ADMIN_KEY not in status["error"]


def test_the_cli_reconciles_and_prints_json(server: BillingServer, capsys: pytest.CaptureFixture[str]) -> None:
    from llmtally import cli

    server.serve_pages("/v1/organization/usage/completions", fixture("openai_usage_completions.json"))
    server.serve_pages("/v1/organization/costs", fixture("openai_costs.json"))
    code = cli.main(
        ["reconcile", "--target", "aws", "--user", "alice", "--start", "2026-11-01", "--end", "2026-11-03", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["sources"] == [{"user_id": "alice", "provider": "openai", "rows": 3, "error": None}]
    assert out["start"] == "2026-11-01"


def test_the_cli_refuses_a_bad_day(server: BillingServer, capsys: pytest.CaptureFixture[str]) -> None:
    from llmtally import cli

    assert cli.main(["reconcile", "--target", "aws", "--start", "November"]) != 0
    assert "--start/--end" in capsys.readouterr().err

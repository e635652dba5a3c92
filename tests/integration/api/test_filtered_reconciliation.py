"""The reconciliation follows the filter chip only where a bill can be cut: by provider.

Rows of two providers are stored with the real repository on moto; `where=provider:openai` answers
OpenAI's rows, days, totals and sources only; a tag (or model, operation) filter answers the
account's reconciliation and says so (`scope: account`, a `note`), never silently.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llmtally.events import Provider
from llmtally.reconcile.core import KINDS, Cause, ReconciliationRow
from llmtally.repositories.reconciliation import ReconciliationRepository
from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE, Api

pytestmark = pytest.mark.integration


def row(provider: Provider, model: str, billed: int, metered: int) -> ReconciliationRow:
    day = datetime.now(UTC).date() - timedelta(days=2)
    return ReconciliationRow(
        user_id=ALICE,
        provider=provider,
        model=model,
        day=day,
        billed_tokens=dict.fromkeys(KINDS, 1000),
        billed_cost_nanos=billed,
        billed_cost_by_kind=dict.fromkeys(KINDS, 0),
        billed_other_nanos=0,
        metered_tokens=dict.fromkeys(KINDS, 1000),
        metered_cost_nanos=metered,
        metered_requests=3,
        unmetered_nanos=0,
        cause=Cause.PRICE if billed != metered else Cause.MATCH,
        provisional=False,
    )


def test_a_provider_filter_narrows_the_bill_and_any_other_filter_says_it_is_account_level(
    stack: MotoServer, as_alice: Api
) -> None:
    # Given reconciled rows of OpenAI (billed $0.004000001, metered $0.004) and of Anthropic
    repository = ReconciliationRepository()
    now = datetime.now(UTC)
    openai = row(Provider.OPENAI, "gpt-4o", 4_000_001, 4_000_000)
    anthropic = row(Provider.ANTHROPIC, "claude-sonnet-4-5-20250929", 9_000_000, 9_000_000)
    for stored in (openai, anthropic):
        repository.replace_rows(ALICE, stored.provider, [stored.day], [stored], computed_at=now)
        repository.put_source_status(
            ALICE, stored.provider, ran_at=now, start=stored.day, end=stored.day + timedelta(days=1), error=None
        )
    path = f"/api/llm-usage/{ALICE}/reconciliation"
    # When the reconciliation is asked under provider:openai
    body = as_alice("GET", path, query={"where": "provider:openai"}).json()
    # Then rows, days, totals and sources are OpenAI's only, to the nano-dollar
    assert {r["provider"] for r in body["rows"]} == {d["provider"] for d in body["days"]} == {"openai"}
    assert [s["provider"] for s in body["sources"]] == ["openai"]
    assert Decimal(str(body["totals"]["billed_cost_usd"])) == Decimal("0.004000001")
    assert Decimal(str(body["totals"]["drift_usd"])) == Decimal("0.000000001")
    assert (body["scope"], body["where"], body["note"]) == (
        "provider",
        {"dimension": "provider", "value": "openai"},
        None,
    )
    # When it is asked under a customer, a model or an operation
    account = as_alice("GET", path).json()
    for where in ("tag:customer:acme", "model:gpt-4o", "operation:chat"):
        under = as_alice("GET", path, query={"where": where}).json()
        # Then it is the account's reconciliation, and says why
        assert under["rows"] == account["rows"]
        assert under["totals"] == account["totals"]
        assert Decimal(str(under["totals"]["billed_cost_usd"])) == Decimal("0.013000001")
        assert under["scope"] == "account"
        assert "invoices carry no tags" in under["note"]
    assert (account["scope"], account["where"], account["note"]) == ("account", None, None)
    # And a malformed where is the summary's 400
    bad = as_alice("GET", path, query={"where": "customer"})
    assert bad.status == 400
    assert bad.json() == as_alice("GET", f"/api/llm-usage/{ALICE}/summary", query={"where": "customer"}).json()

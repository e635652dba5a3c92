"""Tag budget routes on moto: set (seeded from the rollups' tag dimension), list, read, remove,
validation, the bound per tenant, tenancy, and the tag budgets' alert list."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from aggregate.handler import lambda_handler as aggregate_handler
from llmtally.budgets import MAX_TAG_BUDGETS
from llmtally.events import Provider, UsageEvent
from llmtally.ingest import raw_entry_item
from llmtally.pricing import PriceBook
from llmtally.repositories.usage import UsageRepository
from tests.integration.api import test_budget_routes
from tests.integration.api.conftest import ALICE, BOB, Api
from tests.integration.test_aggregate import cheap_transaction_backups, read_stream  # noqa: F401
from tests.support.apigw import request
from tests.support.lambda_events import FakeLambdaContext, stream_event_from_records

pytestmark = pytest.mark.integration

world = test_budget_routes.world
LIST = f"/api/llm-settings/{ALICE}/budget/tags"
ONE = f"/api/llm-settings/{ALICE}/budget/tag"
C42 = {"tagKey": "customer", "tagValue": "c-42", "monthlyLimitUsd": "1.00", "timezone": "Europe/Paris"}


def spend_tagged(usd: str, arn: str, **tags: str) -> None:
    """One call of Alice's costing exactly `usd`, carrying `tags`, ingested and aggregated."""
    event = UsageEvent(
        event_id=f"evt-{secrets.token_hex(8)}",
        user_id=ALICE,
        timestamp=datetime.now(UTC),
        provider=Provider.ANTHROPIC,
        model="claude-private-ft",
        operation_type="conversation",
        input_tokens=10,
        output_tokens=10,
        reported_cost_usd=Decimal(usd),
        tags=tags,
    )
    book = PriceBook()
    UsageRepository().put_if_absent(raw_entry_item(event, book.price_event(event), ttl_days=90, now=datetime.now(UTC)))
    answer = aggregate_handler(stream_event_from_records(read_stream(arn), stream_arn=arn), FakeLambdaContext())
    assert answer == {"batchItemFailures": []}


def test_a_tag_budget_set_mid_month_counts_what_the_tag_already_spent(world: str, as_alice: Api) -> None:
    # Given c-42 spent $0.60 this month and c-7 $2
    spend_tagged("0.60", world, customer="c-42")
    spend_tagged("2.00", world, customer="c-7")
    # When a $1 budget is set on customer c-42
    response = as_alice("PUT", LIST, body={**C42, "thresholds": [80, 50, 100], "action": "block"})
    # Then it is stored and its status counts c-42's $0.60 only
    assert response.status == 200, response.text
    body = response.json()
    assert (body["tagKey"], body["tagValue"]) == ("customer", "c-42")
    assert body["budget"]["thresholds"] == [50, 80, 100]
    assert body["budget"]["action"] == "block"
    assert body["status"]["spentUsd"] == Decimal("0.600000000")
    assert body["status"]["state"] == "warning"
    assert body["status"]["crossedThresholds"] == [50]
    # And the list and the one-budget read say the same
    listed = as_alice("GET", LIST).json()
    assert listed["maxTagBudgets"] == MAX_TAG_BUDGETS
    assert [(b["tagKey"], b["tagValue"], b["status"]["spentUsd"]) for b in listed["budgets"]] == [
        ("customer", "c-42", Decimal("0.600000000"))
    ]
    one = as_alice("GET", ONE, query={"key": "customer", "value": "c-42"})
    assert one.status == 200
    assert one.json() == body
    # And the tenant budget is not touched
    assert as_alice("GET", f"/api/llm-settings/{ALICE}/budget").json()["budget"] is None


def test_spend_after_the_budget_fires_its_alerts_and_lists_them(world: str, as_alice: Api) -> None:
    # Given a $1 budget on c-42
    as_alice("PUT", LIST, body=C42)
    # When c-42 spends $0.90
    spend_tagged("0.90", world, customer="c-42", feature="chat")
    # Then its status and the tag alerts list show 50% and 80%, with the tag
    status = as_alice("GET", ONE, query={"key": "customer", "value": "c-42"}).json()["status"]
    assert (status["spentUsd"], status["crossedThresholds"]) == (Decimal("0.900000000"), [50, 80])
    alerts = as_alice("GET", f"{LIST}/alerts").json()["alerts"]
    assert [(a["thresholdPercent"], a["tagKey"], a["tagValue"]) for a in alerts] == [
        (80, "customer", "c-42"),
        (50, "customer", "c-42"),
    ]
    # And the tenant budget's alert list does not hold them
    assert as_alice("GET", f"/api/llm-settings/{ALICE}/budget/alerts").json() == {"alerts": []}


def test_a_value_with_slashes_and_spaces_is_addressed_by_query(world: str, as_alice: Api) -> None:
    # Given a tag value a path segment could not carry unescaped
    value = "team/a b#1"
    body = {**C42, "tagKey": "team", "tagValue": value}
    assert as_alice("PUT", LIST, body=body).status == 200
    # Then it is read and removed by ?key=&value=
    assert as_alice("GET", ONE, query={"key": "team", "value": value}).json()["tagValue"] == value
    assert as_alice("DELETE", ONE, query={"key": "team", "value": value}).json() == {"deleted": True}
    assert as_alice("DELETE", ONE, query={"key": "team", "value": value}).json() == {"deleted": False}
    missing = as_alice("GET", ONE, query={"key": "team", "value": value})
    assert missing.status == 404
    assert "team=team/a b#1" in missing.text


def test_a_strict_tag_budget_is_accepted_and_shows_what_is_reserved(world: str, as_alice: Api) -> None:
    # Given a strict $1 block budget on customer c-42
    response = as_alice("PUT", LIST, body={**C42, "action": "block", "strict": True})
    assert response.status == 200, response.text
    # Then it is stored strict, with nothing reserved yet
    body = as_alice("GET", ONE, query={"key": "customer", "value": "c-42"}).json()
    assert body["budget"]["strict"] is True
    assert Decimal(body["status"]["reservedUsd"]) == 0


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"strict": True}, "strict mode enforces the limit: use it with the block or switch action"),
        ({"tagValue": "(other)"}, "tagValue"),
        ({"tagKey": "Customer"}, "tagKey"),
        ({"action": "switch"}, "switchTo"),
        ({"monthlyLimitUsd": "0"}, "monthlyLimitUsd"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
    ],
)
def test_bad_tag_budgets_are_refused_with_a_reason(
    world: str, as_alice: Api, change: dict[str, object], said: str
) -> None:
    response = as_alice("PUT", LIST, body={**C42, **change})
    assert response.status in (400, 422), response.text
    assert said in response.text
    assert as_alice("GET", LIST).json()["budgets"] == []


def test_a_tenant_keeps_at_most_the_bound_of_tag_budgets(world: str, as_alice: Api) -> None:
    # Given the bound's worth of tag budgets
    for index in range(MAX_TAG_BUDGETS):
        assert as_alice("PUT", LIST, body={**C42, "tagValue": f"c-{index}"}).status == 200
    # When one more is set: refused; replacing an existing one is still allowed
    refused = as_alice("PUT", LIST, body={**C42, "tagValue": "c-new"})
    assert refused.status == 400
    assert f"at most {MAX_TAG_BUDGETS} tag budgets" in refused.text
    assert as_alice("PUT", LIST, body={**C42, "tagValue": "c-0", "monthlyLimitUsd": "2"}).status == 200


def test_another_tenants_tag_budgets_are_forbidden(world: str) -> None:
    bob = {"claims": {"sub": BOB}}
    assert request("GET", LIST, **bob).status == 403
    assert request("PUT", LIST, body=C42, **bob).status == 403
    assert request("GET", ONE, query={"key": "customer", "value": "c-42"}, **bob).status == 403
    assert request("DELETE", ONE, query={"key": "customer", "value": "c-42"}, **bob).status == 403
    assert request("GET", f"{LIST}/alerts", **bob).status == 403


def test_unknown_or_missing_query_parameters_are_refused(world: str, as_alice: Api) -> None:
    assert as_alice("GET", LIST, query={"x": "1"}).status == 400
    assert as_alice("GET", ONE, query={"key": "customer"}).status in (400, 422)
    assert as_alice("DELETE", ONE, query={"key": "customer", "value": "c-42", "y": "2"}).status == 400

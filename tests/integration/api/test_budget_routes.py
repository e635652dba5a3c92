"""Budget routes on moto: set, read with status, validation, the write-only Slack webhook, alerts, tenancy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from aggregate.handler import budget_keeper
from aggregate.handler import lambda_handler as aggregate_handler
from llmtally.events import Provider, UsageEvent
from llmtally.ingest import raw_entry_item
from llmtally.pricing import PriceBook
from llmtally.repositories.usage import UsageRepository
from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE, BOB, Api, JsonLogs
from tests.integration.test_aggregate import cheap_transaction_backups, read_stream, stream_arn  # noqa: F401
from tests.support.apigw import request
from tests.support.lambda_events import FakeLambdaContext, stream_event_from_records

pytestmark = pytest.mark.integration

WEBHOOK = "https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/" + "s3cr3tWebhookT0ken" * 2
BUDGET = {"monthlyLimitUsd": "1.00", "timezone": "Europe/Paris"}
PATH = f"/api/llm-settings/{ALICE}/budget"


@pytest.fixture
def world(stack: MotoServer) -> Iterator[str]:
    """Tables, the usage bus (alerts go there), and a fresh aggregate handler; yields the stream ARN."""
    from llmtally.settings import get_settings

    stack.client("events").create_event_bus(Name=get_settings().names.event_bus)  # type: ignore[attr-defined]
    budget_keeper.cache_clear()
    yield stream_arn()
    budget_keeper.cache_clear()


def spend(usd: str, arn: str, user: str = ALICE) -> None:
    """One call costing exactly `usd` (a model priced by its reported cost), ingested and aggregated."""
    import secrets

    event = UsageEvent(
        event_id=f"evt-{secrets.token_hex(8)}",
        user_id=user,
        timestamp=datetime.now(UTC),
        provider=Provider.ANTHROPIC,
        model="claude-private-ft",
        operation_type="conversation",
        input_tokens=10,
        output_tokens=10,
        reported_cost_usd=Decimal(usd),
    )
    book = PriceBook()
    UsageRepository().put_if_absent(raw_entry_item(event, book.price_event(event), ttl_days=90, now=datetime.now(UTC)))
    answer = aggregate_handler(stream_event_from_records(read_stream(arn), stream_arn=arn), FakeLambdaContext())
    assert answer == {"batchItemFailures": []}


def test_no_budget_reads_as_null(world: str, as_alice: Api) -> None:
    response = as_alice("GET", PATH)
    assert response.status == 200
    assert response.json() == {
        "budget": None,
        "hasSlackWebhook": False,
        "status": None,
        "alertEmail": None,
        "alertEmailAvailable": False,
    }


def test_a_budget_set_mid_month_counts_what_was_already_spent(world: str, as_alice: Api) -> None:
    # Given $0.60 already spent this month
    spend("0.60", world)
    # When a $1 budget is set
    response = as_alice("PUT", PATH, body={**BUDGET, "thresholds": [80, 50, 100]})
    # Then it is stored and its status counts the $0.60
    assert response.status == 200, response.text
    body = response.json()
    assert body["budget"]["monthlyLimitUsd"] == Decimal("1.000000000")
    assert body["budget"]["thresholds"] == [50, 80, 100]
    assert (body["budget"]["action"], body["budget"]["strict"], body["budget"]["timezone"]) == (
        "notify",
        False,
        "Europe/Paris",
    )
    status = body["status"]
    assert (status["spentUsd"], status["remainingUsd"], status["percentUsed"]) == (
        Decimal("0.600000000"),
        Decimal("0.400000000"),
        Decimal("60.0"),
    )
    assert (status["state"], status["crossedThresholds"]) == ("warning", [50])
    assert status["periodStart"].endswith(("+01:00", "+02:00"))


def test_alerts_appear_once_traffic_crosses_a_threshold(world: str, as_alice: Api) -> None:
    as_alice("PUT", PATH, body=BUDGET)
    spend("0.30", world)
    assert as_alice("GET", f"{PATH}/alerts").json() == {"alerts": []}
    spend("0.30", world)  # 60%
    spend("0.25", world)  # 85%
    alerts = as_alice("GET", f"{PATH}/alerts").json()["alerts"]
    assert [(a["thresholdPercent"], a["spentUsd"]) for a in alerts] == [
        (80, Decimal("0.850000000")),
        (50, Decimal("0.600000000")),
    ]
    assert alerts[0]["alertId"].startswith(f"{ALICE}:")
    assert alerts[0]["alertId"].endswith(":80")
    assert as_alice("GET", f"{PATH}/alerts", query={"limit": "1"}).json()["alerts"][0]["thresholdPercent"] == 80
    assert as_alice("GET", PATH).json()["status"]["state"] == "warning"


def test_the_slack_webhook_is_stored_as_a_secret_and_never_returned(
    world: str, as_alice: Api, moto: MotoServer, json_logs: JsonLogs
) -> None:
    response = as_alice("PUT", PATH, body={**BUDGET, "slackWebhookUrl": WEBHOOK})
    assert response.status == 200
    assert response.json()["hasSlackWebhook"] is True
    assert WEBHOOK not in response.text
    assert as_alice("GET", PATH).json()["hasSlackWebhook"] is True
    secrets: Any = moto.client("secretsmanager")
    from llmtally.settings import get_settings

    name = get_settings().names.slack_webhook_secret_name(ALICE)
    assert secrets.get_secret_value(SecretId=name)["SecretString"] == WEBHOOK
    # a bad URL is a 400 that does not repeat it
    bad = as_alice("PUT", PATH, body={**BUDGET, "slackWebhookUrl": "https://evil.example/" + "s3cr3tWebhookT0ken"})
    assert bad.status == 400
    assert "s3cr3tWebhookT0ken" not in bad.text
    # removing it
    removed = as_alice("PUT", PATH, body={**BUDGET, "removeSlackWebhook": True})
    assert removed.json()["hasSlackWebhook"] is False
    assert "s3cr3tWebhookT0ken" not in json_logs.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**BUDGET, "action": "switch"}, "switch action needs switchTo"),
        ({**BUDGET, "switchTo": {"provider": "openai", "model": "gpt-5-mini"}}, "only used with the switch action"),
        ({**BUDGET, "strict": True}, "block or switch"),
        ({**BUDGET, "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({**BUDGET, "monthlyLimitUsd": "-5"}, "monthlyLimitUsd"),
        ({**BUDGET, "monthlyLimitUsd": "0"}, "monthlyLimitUsd"),
        ({**BUDGET, "monthlyLimitUsd": "1.0000000001"}, "monthlyLimitUsd"),
        ({**BUDGET, "thresholds": [50, 50]}, "distinct"),
        ({**BUDGET, "thresholds": []}, "thresholds"),
        ({**BUDGET, "thresholds": [0]}, "thresholds"),
        ({**BUDGET, "action": "explode"}, "action"),
        ({"timezone": "UTC"}, "monthlyLimitUsd"),
        ({**BUDGET, "unknown": 1}, "unknown"),
        ({**BUDGET, "slackWebhookUrl": WEBHOOK, "removeSlackWebhook": True}, "not both"),
    ],
)
def test_bad_budgets_are_400_with_a_message(world: str, as_alice: Api, body: dict[str, Any], message: str) -> None:
    response = as_alice("PUT", PATH, body=body)
    assert response.status == 400, response.text
    assert message in response.text
    assert as_alice("GET", PATH).json()["budget"] is None  # nothing stored


def test_switch_and_strict_round_trip(world: str, as_alice: Api) -> None:
    body = {**BUDGET, "action": "switch", "switchTo": {"provider": "openai", "model": "gpt-5-mini"}, "strict": True}
    stored = as_alice("PUT", PATH, body=body).json()["budget"]
    assert stored["switchTo"] == {"provider": "openai", "model": "gpt-5-mini"}
    assert stored["strict"] is True


def test_delete_removes_the_budget_and_the_webhook(world: str, as_alice: Api) -> None:
    as_alice("PUT", PATH, body={**BUDGET, "slackWebhookUrl": WEBHOOK})
    assert as_alice("DELETE", PATH).json() == {"deleted": True}
    assert as_alice("GET", PATH).json() == {
        "budget": None,
        "hasSlackWebhook": False,
        "status": None,
        "alertEmail": None,
        "alertEmailAvailable": False,
    }
    assert as_alice("DELETE", PATH).json() == {"deleted": False}


def test_another_tenants_budget_is_forbidden(world: str) -> None:
    for method, path in (("GET", PATH), ("PUT", PATH), ("DELETE", PATH), ("GET", f"{PATH}/alerts")):
        response = request(method, path, claims={"sub": BOB}, body=BUDGET if method == "PUT" else None)
        assert response.status == 403, (method, path)


def test_unknown_query_parameters_are_refused(world: str, as_alice: Api) -> None:
    assert as_alice("GET", PATH, query={"x": "1"}).status == 400
    assert as_alice("GET", f"{PATH}/alerts", query={"limit": "0"}).status == 400

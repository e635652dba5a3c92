"""Users' own alert e-mails on moto: the address given in the budget form becomes an SNS e-mail
subscription filtered on the user, confirmation is said to be pending, the notifier publishes each
alert with the `user_id` attribute, and SNS hands it only to that user's subscription."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from llmtally.budgets import BudgetAction, BudgetAlert, TagScope
from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE, BOB, Api
from tests.support.lambda_events import FakeLambdaContext

pytestmark = pytest.mark.integration

PATH = f"/api/llm-settings/{ALICE}/budget"
BUDGET = {"monthlyLimitUsd": "1.00", "timezone": "UTC"}
ADDRESS = "alice.ops@example.com"


@pytest.fixture
def topic(stack: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The user-alerts topic, named to the API and the notifier through the settings."""
    from api import deps
    from llmtally.aws import reset_clients
    from notify import handler

    sns: Any = stack.client("sns")
    arn = str(sns.create_topic(Name="mantissa-log-user-alerts")["TopicArn"])
    monkeypatch.setenv("LLMTALLY_USER_ALERTS_TOPIC_ARN", arn)
    reset_clients()
    deps.reset()
    handler.reset()
    yield arn
    deps.reset()
    handler.reset()


def subscriptions(arn: str) -> list[dict[str, Any]]:
    from llmtally import aws

    sns: Any = aws.client("sns")
    found = []
    for sub in sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]:
        attributes = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
        found.append({**sub, **attributes})
    return found


def test_an_address_in_the_budget_form_subscribes_it_to_the_users_alerts_only(topic: str, as_alice: Api) -> None:
    # When Alice saves her budget with an alert address
    response = as_alice("PUT", PATH, body={**BUDGET, "alertEmail": f"  {ADDRESS} "})
    # Then the API says where alerts go and that SNS asks the address to confirm first
    assert response.status == 200, response.text
    body = response.json()
    assert body["alertEmailAvailable"] is True
    assert body["alertEmail"]["address"] == ADDRESS
    assert body["alertEmail"]["status"] in {"pending_confirmation", "confirmed"}  # moto confirms at once
    # And the topic has one e-mail subscription for it, filtered on her user id
    (sub,) = subscriptions(topic)
    assert (sub["Protocol"], sub["Endpoint"]) == ("email", ADDRESS)
    assert json.loads(sub["FilterPolicy"]) == {"user_id": [ALICE]}
    assert sub["FilterPolicyScope"] == "MessageAttributes"


def test_a_new_address_replaces_the_old_and_removal_unsubscribes(topic: str, as_alice: Api) -> None:
    as_alice("PUT", PATH, body={**BUDGET, "alertEmail": ADDRESS})
    # When she gives another address
    as_alice("PUT", PATH, body={**BUDGET, "alertEmail": "alice@example.org"})
    # Then only the new one is subscribed
    assert [s["Endpoint"] for s in subscriptions(topic)] == ["alice@example.org"]
    # When she removes it: no subscription, no address
    body = as_alice("PUT", PATH, body={**BUDGET, "removeAlertEmail": True}).json()
    assert body["alertEmail"] is None
    assert subscriptions(topic) == []
    # And removing the budget removes a stored address too
    as_alice("PUT", PATH, body={**BUDGET, "alertEmail": ADDRESS})
    assert as_alice("DELETE", PATH).json() == {"deleted": True}
    assert subscriptions(topic) == []


@pytest.mark.parametrize(
    "address", ["not-an-address", "a@b", "two@example.com, three@example.com", "x" * 250 + "@e.com"]
)
def test_a_bad_address_is_refused_without_being_echoed(topic: str, as_alice: Api, address: str) -> None:
    response = as_alice("PUT", PATH, body={**BUDGET, "alertEmail": address})
    assert response.status in (400, 422)
    assert address not in response.text
    assert subscriptions(topic) == []


def test_without_a_user_alerts_topic_an_address_is_refused_clearly(stack: MotoServer, as_alice: Api) -> None:
    response = as_alice("PUT", PATH, body={**BUDGET, "alertEmail": ADDRESS})
    assert response.status == 400
    assert "alert e-mails are not set up on this deployment" in response.text
    assert as_alice("GET", PATH).json()["alertEmailAvailable"] is False


def alert_event(user: str, tag: TagScope | None = None) -> dict[str, Any]:
    alert = BudgetAlert(
        user_id=user,
        period="2026-11",
        timezone="UTC",
        threshold_percent=80,
        limit_nanos=30 * 10**9,
        spent_nanos=24_120_000_000,
        action=BudgetAction.BLOCK,
        crossed_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        tag=tag,
    )
    return {"version": "0", "id": f"e-{user}", "detail-type": "BudgetThresholdCrossed", "source": "llmtally",
            "detail": alert.detail()}  # fmt: skip


def test_the_notifier_publishes_each_users_alert_so_only_their_subscription_gets_it(
    topic: str, stack: MotoServer, as_alice: Api
) -> None:
    # Given Alice's address, and — standing in for the two addresses — a queue per user subscribed
    # with the same filter policy the API gives e-mail subscriptions (moto does not send e-mail)
    from llmtally.repositories.alert_email import filter_policy
    from notify.handler import lambda_handler

    as_alice("PUT", PATH, body={**BUDGET, "alertEmail": ADDRESS})
    sns: Any = stack.client("sns")
    sqs: Any = stack.client("sqs")
    inbox: dict[str, str] = {}
    for user in (ALICE, BOB):
        url = sqs.create_queue(QueueName=f"inbox-{user}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"FilterPolicy": filter_policy(user), "RawMessageDelivery": "true"},
        )
        inbox[user] = url
    # When Alice's 80% alert reaches the notifier, twice (a re-published event), and her tag budget's
    first = lambda_handler(alert_event(ALICE), FakeLambdaContext())
    again = lambda_handler(alert_event(ALICE), FakeLambdaContext())
    tagged = lambda_handler(alert_event(ALICE, TagScope(key="customer", value="c-42")), FakeLambdaContext())
    # Then each alert's e-mail was published once
    assert first == {"outcome": "no_webhook", "email": "sent"}
    assert again == {"outcome": "no_webhook"}
    assert tagged == {"outcome": "no_webhook", "email": "sent"}
    # And only Alice's subscription received them, as the e-mail text
    got = sqs.receive_message(QueueUrl=inbox[ALICE], MaxNumberOfMessages=10)["Messages"]
    texts = sorted(m["Body"] for m in got)
    assert len(texts) == 2
    assert texts[0].startswith(f"llmtally budget alert: user {ALICE} reached 80% of the 2026-11 customer=c-42 budget")
    assert texts[1].startswith(f"llmtally budget alert: user {ALICE} reached 80% of the 2026-11 monthly budget")
    assert sqs.receive_message(QueueUrl=inbox[BOB], MaxNumberOfMessages=10).get("Messages", []) == []
    # And Bob, who gave no address, gets no e-mail published at all
    assert lambda_handler(alert_event(BOB), FakeLambdaContext()) == {"outcome": "no_webhook"}

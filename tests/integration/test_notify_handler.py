"""The notifier function on moto: a stored webhook is posted to (a stand-in Slack on loopback), once
per alert; no webhook, no post; retryable failures raise; the URL never reaches a log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from llmtally.budgets import BudgetAction, BudgetAlert, TagScope
from tests.conftest import MotoServer
from tests.support.lambda_events import FakeLambdaContext
from tests.support.slack import WEBHOOK_PATH, WEBHOOK_SECRET, FakeSlack, fake_slack

pytestmark = pytest.mark.integration


def alert_event(user: str = "alice", percent: int = 80, tag: TagScope | None = None) -> dict[str, Any]:
    alert = BudgetAlert(
        user_id=user,
        period="2026-11",
        timezone="UTC",
        threshold_percent=percent,
        limit_nanos=30 * 10**9,
        spent_nanos=24_120_000_000,
        action=BudgetAction.BLOCK,
        crossed_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        tag=tag,
    )
    return {
        "version": "0",
        "id": f"evt-{user}-{percent}",
        "detail-type": "BudgetThresholdCrossed",
        "source": "llmtally",
        "account": "123456789012",
        "time": "2026-11-20T09:30:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": alert.detail(),
    }


@pytest.fixture
def slack(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    """moto with the tables, and the allowed webhook prefix pointed at a stand-in Slack on loopback."""
    from llmtally.aws import reset_clients
    from llmtally.settings import get_settings
    from llmtally.tables import create_tables
    from notify import handler

    with fake_slack() as fake:
        monkeypatch.setenv("LLMTALLY_SLACK_WEBHOOK_ALLOWED_PREFIX", fake.allowed_prefix)
        reset_clients()
        handler.reset()
        create_tables(moto.client("dynamodb"), get_settings().names)
        yield fake
        handler.reset()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything the Powertools handler (handler and library lines) and the root logger wrote."""
    from llmtally.observability import logger

    handler = logger.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    root = logging.StreamHandler(buffer)
    logging.getLogger().addHandler(root)
    try:
        yield buffer
    finally:
        logging.getLogger().removeHandler(root)
        handler.setStream(previous)


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    from notify.handler import lambda_handler

    result: dict[str, Any] = lambda_handler(event, FakeLambdaContext())
    return result


def store_webhook(user: str, url: str) -> None:
    from llmtally.repositories.secrets import SecretsRepository

    SecretsRepository().put_slack_webhook(user, SecretStr(url))


def test_a_stored_webhook_gets_the_alert_once(slack: FakeSlack, logs: io.StringIO) -> None:
    # Given alice stored her Slack webhook
    store_webhook("alice", slack.webhook_url)
    # When her 80% alert arrives, and then arrives again (a re-published event)
    first = invoke(alert_event())
    again = invoke(alert_event())
    # Then Slack got exactly one message, the alert line
    assert first == {"outcome": "posted"}
    assert again == {"outcome": "duplicate"}
    ((path, body),) = slack.posts
    assert path == f"/{WEBHOOK_PATH}"
    assert body["text"] == (
        "llmtally budget alert: 80% of your $30.00 November 2026 budget used ($24.12) — action at 100%: block"
    )
    # And the next threshold is a new alert
    assert invoke(alert_event(percent=100)) == {"outcome": "posted"}
    assert len(slack.posts) == 2
    # And the URL never reached a log line
    text = logs.getvalue()
    assert "budget alert posted" in text
    assert WEBHOOK_SECRET not in text
    assert slack.base_url not in text


def test_a_tag_budgets_alert_is_its_own_delivery(slack: FakeSlack) -> None:
    # Given alice's webhook, and her tenant budget's 80% alert of November delivered
    store_webhook("alice", slack.webhook_url)
    assert invoke(alert_event()) == {"outcome": "posted"}
    # When customer c-42's budget crosses 80% in the same period (same user, period and threshold)
    c42 = TagScope(key="customer", value="c-42")
    first = invoke(alert_event(tag=c42))
    again = invoke(alert_event(tag=c42))
    # Then it is posted once, naming the tag, and not mistaken for the tenant's
    assert (first, again) == ({"outcome": "posted"}, {"outcome": "duplicate"})
    assert len(slack.posts) == 2
    body = slack.posts[1][1]
    assert body["text"] == (
        "llmtally budget alert: 80% of your $30.00 November 2026 customer=c-42 budget used ($24.12)"
        " — action at 100%: block"
    )
    assert {"type": "mrkdwn", "text": "*Tag*\ncustomer=c-42"} in body["blocks"][1]["fields"]


def test_no_webhook_no_post(slack: FakeSlack, logs: io.StringIO) -> None:
    store_webhook("bob", slack.webhook_url)
    assert invoke(alert_event("alice")) == {"outcome": "no_webhook"}
    assert slack.posts == []
    assert "no webhook" in logs.getvalue()


def test_a_deleted_webhook_is_no_longer_posted_to(slack: FakeSlack) -> None:
    from llmtally.repositories.secrets import SecretsRepository

    repo = SecretsRepository()
    store_webhook("alice", slack.webhook_url)
    assert repo.has_slack_webhook("alice") is True
    assert repo.delete_slack_webhook("alice") is True
    assert repo.delete_slack_webhook("alice") is False
    assert repo.has_slack_webhook("alice") is False
    assert invoke(alert_event()) == {"outcome": "no_webhook"}
    assert slack.posts == []


def test_a_failing_slack_raises_for_a_retry_then_delivers(slack: FakeSlack, logs: io.StringIO) -> None:
    from llmtally.notify import SlackDeliveryError

    store_webhook("alice", slack.webhook_url)
    # Given Slack answers 503 / When the alert arrives / Then the invocation fails (Lambda retries it)
    slack.status = 503
    with pytest.raises(SlackDeliveryError, match="HTTP 503"):
        invoke(alert_event())
    # When Slack is back, the retry posts (the failure was not recorded as a delivery)
    slack.status = 200
    assert invoke(alert_event()) == {"outcome": "posted"}
    assert len(slack.posts) == 2
    assert WEBHOOK_SECRET not in logs.getvalue()


def test_a_revoked_webhook_is_reported_not_retried(slack: FakeSlack, logs: io.StringIO) -> None:
    store_webhook("alice", slack.webhook_url)
    slack.status = 404
    assert invoke(alert_event()) == {"outcome": "refused"}
    text = logs.getvalue()
    assert "Slack refused the alert" in text
    assert WEBHOOK_SECRET not in text


def test_a_stored_url_outside_the_allowed_prefix_is_never_posted(slack: FakeSlack, logs: io.StringIO) -> None:
    # Given a value stored by hand (or under an earlier setting) that points elsewhere
    store_webhook("alice", f"http://127.0.0.1:9/{WEBHOOK_PATH}")
    # Then the notifier refuses it without a request, and says so without the URL
    assert invoke(alert_event()) == {"outcome": "refused"}
    assert slack.posts == []
    assert WEBHOOK_SECRET not in logs.getvalue()


def test_an_event_that_breaks_the_contract_fails_the_invocation(slack: FakeSlack) -> None:
    event = alert_event()
    event["detail"]["limit_usd"] = 30.0
    with pytest.raises(ValidationError):
        invoke(event)


def test_another_detail_type_is_ignored(slack: FakeSlack) -> None:
    event = alert_event()
    event["detail-type"] = "LLMUsage"
    assert invoke(event) == {"outcome": "ignored"}
    assert slack.posts == []


def test_the_secret_is_encrypted_storage_only_the_notifier_reads(slack: FakeSlack, moto: MotoServer) -> None:
    # The webhook is a secret under the user's prefix, tagged, and its value is what was stored.
    store_webhook("alice", slack.webhook_url)
    client: Any = moto.client("secretsmanager")
    described = client.describe_secret(SecretId="mantissa-log/users/alice/alerts/slack-webhook")
    assert {t["Key"]: t["Value"] for t in described["Tags"]} == {
        "llmtally:user": "alice",
        "llmtally:kind": "slack-webhook",
    }
    from llmtally.repositories.secrets import SecretsRepository

    assert SecretsRepository().get_slack_webhook("alice") == SecretStr(slack.webhook_url)
    assert SecretsRepository().get_slack_webhook("bob") is None


def test_local_wiring_bus_rule_queue_to_the_notifier(slack: FakeSlack, moto: MotoServer) -> None:
    """The local stack's alerts wiring: the rule on the usage bus → the local queue → the notifier."""
    import json

    from llmtally.local.lambda_events import LambdaContext, sqs_event
    from llmtally.local.stack import _alert_events_via_queue
    from llmtally.resources import ResourceNames
    from llmtally.topology import alerts_topology, provision_alerts, provision_messaging, topology
    from notify.handler import lambda_handler

    names = ResourceNames()
    events: Any = moto.client("events")
    sqs: Any = moto.client("sqs")
    provision_messaging(events, sqs, topology(names))
    alerts = provision_alerts(events, moto.client("sns"), sqs, alerts_topology(names))
    store_webhook("alice", slack.webhook_url)
    # Given an alert published as the aggregator publishes it (and a usage event, which must not match)
    detail = alert_event()["detail"]
    answer = events.put_events(
        Entries=[
            {
                "EventBusName": names.event_bus,
                "Source": "llmtally",
                "DetailType": "BudgetThresholdCrossed",
                "Detail": json.dumps(detail),
            },
            {"EventBusName": names.event_bus, "Source": "llmtally", "DetailType": "LLMUsage", "Detail": "{}"},
        ]
    )
    assert answer["FailedEntryCount"] == 0
    # When the local queue is drained into the notifier
    messages = sqs.receive_message(QueueUrl=alerts.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])[
        "Messages"
    ]
    assert len(messages) == 1
    invoke_local = _alert_events_via_queue(lambda_handler)
    invoke_local(sqs_event(messages, queue_arn=alerts.queue_arn), LambdaContext.for_function("llmtally-notify"))
    # Then Slack got the alert, and the topic exists under the deployed name
    assert [body["text"][:40] for _, body in slack.posts] == ["llmtally budget alert: 80% of your $30.0"]
    topics = [t["TopicArn"] for t in moto.client("sns").list_topics()["Topics"]]  # type: ignore[attr-defined]
    assert alerts.topic_arn in topics
    assert alerts.topic_arn.endswith(f":{names.alerts_topic}")


def test_the_local_stack_shows_the_alert_email_and_who_it_goes_to(
    slack: FakeSlack, moto: MotoServer, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run`: the alert's e-mail text, then the address the user gave (SNS sends nothing locally)."""
    import json

    from llmtally.aws import reset_clients
    from llmtally.local.lambda_events import LambdaContext, sqs_event
    from llmtally.local.stack import _alert_events_via_queue
    from llmtally.repositories.alert_email import AlertEmailRepository
    from llmtally.resources import ResourceNames
    from llmtally.topology import alerts_topology, provision_alerts, provision_messaging, topology
    from notify import handler

    names = ResourceNames()
    events: Any = moto.client("events")
    sqs: Any = moto.client("sqs")
    provision_messaging(events, sqs, topology(names))
    alerts = provision_alerts(events, moto.client("sns"), sqs, alerts_topology(names))
    topic = moto.client("sns").create_topic(Name=names.user_alerts_topic)["TopicArn"]  # type: ignore[attr-defined]
    monkeypatch.setenv("LLMTALLY_USER_ALERTS_TOPIC_ARN", topic)
    reset_clients()
    handler.reset()
    # Given alice gave an alert address
    AlertEmailRepository().subscribe("alice", "alice.ops@example.com")
    # When her alert goes through the local wiring
    events.put_events(
        Entries=[
            {
                "EventBusName": names.event_bus,
                "Source": "llmtally",
                "DetailType": "BudgetThresholdCrossed",
                "Detail": json.dumps(alert_event()["detail"]),
            }
        ]
    )
    messages = sqs.receive_message(QueueUrl=alerts.queue_url, MaxNumberOfMessages=10)["Messages"]
    invoke_local = _alert_events_via_queue(handler.lambda_handler)
    invoke_local(sqs_event(messages, queue_arn=alerts.queue_arn), LambdaContext.for_function("llmtally-notify"))
    # Then the terminal shows the e-mail's text and who it goes to
    text = logs.getvalue()
    assert "budget alert e-mail: llmtally budget alert: user alice reached 80% of the 2026-11 monthly budget" in text
    assert "budget alert e-mail goes to alice.ops@example.com (" in text

"""Reconciliation alerts through the existing alert path: the usage bus → (locally) the alerts queue →
the notifier → the user's Slack webhook, once per alert; the webhook URL never in a log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from llmtally.events import Provider
from llmtally.reconcile.alerts import ALERT_DETAIL_TYPE, AlertKind, alert_detail
from llmtally.reconcile.core import Cause, DayTotals, ReconciliationRow, TokenKind
from tests.conftest import MotoServer
from tests.support.lambda_events import FakeLambdaContext
from tests.support.slack import WEBHOOK_SECRET, FakeSlack, fake_slack

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 20)


def unmetered_detail() -> dict[str, Any]:
    kinds = dict.fromkeys(TokenKind, 0)
    row = ReconciliationRow(
        user_id="alice",
        provider=Provider.OPENAI,
        model="gpt-4o-mini-2024-07-18",
        day=DAY,
        billed_tokens=kinds,
        billed_cost_nanos=3_280_000_000,
        billed_cost_by_kind=kinds,
        billed_other_nanos=0,
        metered_tokens=kinds,
        metered_cost_nanos=580_000_000,
        metered_requests=100,
        unmetered_nanos=2_700_000_000,
        cause=Cause.UNMETERED,
        provisional=False,
        api_key_ids=("key_notebook",),
    )
    totals = DayTotals(Provider.OPENAI, DAY, 3_280_000_000, 580_000_000, 2_700_000_000, provisional=False)
    return alert_detail("alice", totals, AlertKind.UNMETERED, [row], datetime(2026, 11, 22, 6, tzinfo=UTC))


@pytest.fixture
def slack(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    from llmtally.aws import reset_clients
    from llmtally.repositories.secrets import SecretsRepository
    from llmtally.settings import get_settings
    from llmtally.tables import create_tables
    from notify import handler

    with fake_slack() as fake:
        monkeypatch.setenv("LLMTALLY_SLACK_WEBHOOK_ALLOWED_PREFIX", fake.allowed_prefix)
        reset_clients()
        handler.reset()
        create_tables(moto.client("dynamodb"), get_settings().names)
        SecretsRepository().put_slack_webhook("alice", SecretStr(fake.webhook_url))
        yield fake
        handler.reset()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
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


def test_the_local_route_delivers_a_reconciliation_alert_to_slack_once(slack: FakeSlack, logs: io.StringIO) -> None:
    from llmtally import aws
    from llmtally.local.stack import _alert_events_via_queue
    from llmtally.repositories.reconciliation import ReconciliationAlertBus
    from llmtally.settings import get_settings
    from llmtally.topology import (
        alerts_topology,
        provision_alerts,
        provision_messaging,
        provision_reconciliation_alerts,
        topology,
    )
    from notify.handler import lambda_handler

    # Given the bus and the alert routes as the local stack provisions them
    names = get_settings().names
    provision_messaging(aws.client("events"), aws.client("sqs"), topology(names))
    alerts = provision_alerts(aws.client("events"), aws.client("sns"), aws.client("sqs"), alerts_topology(names))
    provision_reconciliation_alerts(aws.client("events"), names, alerts.queue_arn)
    # When the job puts an unmetered-spend alert on the bus, twice (a re-publication)
    detail = unmetered_detail()
    bus = ReconciliationAlertBus()
    bus.publish("llmtally", ALERT_DETAIL_TYPE, detail)
    bus.publish("llmtally", ALERT_DETAIL_TYPE, detail)
    # And the local runner drains the alerts queue into the notifier
    sqs = aws.client("sqs")
    messages = sqs.receive_message(QueueUrl=alerts.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 2
    drain = _alert_events_via_queue(lambda_handler)
    for message in messages:
        drain({"Records": [{"body": message["Body"]}]}, FakeLambdaContext())
    # Then Slack got the alert once, with its message and amount
    ((_, body),) = slack.posts
    assert body["text"] == detail["message"]
    assert "unmetered spend $2.70" in body["text"]
    assert body["blocks"][1]["fields"][0]["text"] == "*Unmetered spend*\n$2.70"
    # And the terminal showed the alert, never the webhook URL
    text = logs.getvalue()
    assert "reconciliation alert: llmtally reconciliation: alice's openai bill for 2026-11-20" in text
    assert WEBHOOK_SECRET not in text
    assert slack.base_url not in text


def test_a_reconciliation_alert_without_a_webhook_posts_nothing(slack: FakeSlack) -> None:
    from notify.handler import lambda_handler

    detail = {**unmetered_detail(), "user_id": "bob", "alert_id": "bob:openai:2026-11-20:unmetered"}
    event = {"id": "e1", "source": "llmtally", "detail-type": ALERT_DETAIL_TYPE, "detail": detail}
    assert lambda_handler(event, FakeLambdaContext()) == {"outcome": "no_webhook"}
    assert slack.posts == []


def test_a_malformed_reconciliation_alert_is_refused_for_the_failure_queue(slack: FakeSlack) -> None:
    from pydantic import ValidationError

    from notify.handler import lambda_handler

    event = {"id": "e2", "source": "llmtally", "detail-type": ALERT_DETAIL_TYPE, "detail": {"schema_version": 1}}
    with pytest.raises(ValidationError):
        lambda_handler(event, FakeLambdaContext())
    assert slack.posts == []

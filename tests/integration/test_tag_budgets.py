"""Tag budgets end to end on moto: a budget on customer=c-42, its ledger from the rollups' tag
dimension, its alerts fired once (redelivery, a failed PutEvents), the local-month reset, and
the routes that set, list, read and remove it.

Events are written as the ingest writes them and fed to the aggregate handler from the usage
table's real stream (helpers of tests/integration/test_budgets.py); alerts are read from an SQS
queue fed by an EventBridge rule on the usage bus, as the deployed rule feeds SNS and the notifier.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmtally import aws
from llmtally.budgets import Budget, BudgetAction, TagScope
from llmtally.events import Provider, UsageEvent
from llmtally.money import usd_to_nanos
from llmtally.repositories.budgets import BudgetRepository
from tests.integration import test_budgets
from tests.integration.test_aggregate import cheap_transaction_backups, deliver  # noqa: F401
from tests.integration.test_budgets import PRIVATE_MODEL, StreamFeed, alerts_seen

# The budgets tier's fixtures: the usage bus with a rule into a queue, and the stream feed.
alert_queue = test_budgets.alert_queue
feed = test_budgets.feed

pytestmark = pytest.mark.integration

C42 = TagScope(key="customer", value="c-42")


def tagged(user_id: str, usd: str, at: datetime, **tags: str) -> UsageEvent:
    """An event costing exactly `usd`, carrying `tags`."""
    return UsageEvent(
        event_id=f"evt-{secrets.token_hex(8)}",
        user_id=user_id,
        timestamp=at,
        provider=Provider.ANTHROPIC,
        model=PRIVATE_MODEL,
        operation_type="conversation",
        input_tokens=100,
        output_tokens=10,
        reported_cost_usd=Decimal(usd),
        tags=tags,
    )


def put_tag_budget(user_id: str, usd: str, tag: TagScope = C42, tz: str = "UTC", **options: Any) -> Budget:
    budget = Budget(limit_nanos=usd_to_nanos(Decimal(usd)), timezone=tz, **options)
    BudgetRepository().put_budget(user_id, budget, tag=tag)
    return budget


def test_a_tag_budget_counts_only_its_tag_and_fires_each_threshold_once(alert_queue: str, feed: StreamFeed) -> None:
    # Given customer c-42 at $1 a month (block at 100%), and no tenant budget
    now = datetime.now(UTC)
    put_tag_budget("u-tags", "1.00", action=BudgetAction.BLOCK)
    repo = BudgetRepository()
    period = Budget(limit_nanos=1).period(now).key

    # When c-42 spends $0.60 beside $5 of other customers' and untagged calls
    first = feed.send(
        [
            tagged("u-tags", "0.30", now, customer="c-42", feature="chat"),
            tagged("u-tags", "0.30", now, customer="c-42"),
            tagged("u-tags", "2.00", now, customer="c-7"),
            tagged("u-tags", "3.00", now),
        ]
    )
    # Then the 50% alert of c-42's budget fires, with the tag in its detail and its own alert id
    (fifty,) = alerts_seen(alert_queue)
    assert (fifty["threshold_percent"], fifty["spent_usd"], fifty["limit_usd"]) == (50, "0.600000000", "1.000000000")
    assert (fifty["tag_key"], fifty["tag_value"], fifty["budget_label"]) == ("customer", "c-42", "customer=c-42 budget")
    assert fifty["alert_id"] == f"u-tags:tag:customer=c-42:{period}:50"
    assert fifty["action"] == "block"
    # And the same records delivered again fire nothing
    deliver(first, feed.arn)
    deliver(first, feed.arn)
    assert alerts_seen(alert_queue) == []

    # When c-42 passes 100% while the first PutEvents fails
    hits = [0]

    def fail_once(**_: Any) -> None:
        hits[0] += 1
        if hits[0] == 1:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "PutEvents")

    events_client = aws.client("events")
    events_client.meta.events.register("before-call.events.PutEvents", fail_once, unique_id="tag-budget-test")
    try:
        feed.send([tagged("u-tags", "0.45", now, customer="c-42")])
    finally:
        events_client.meta.events.unregister("before-call.events.PutEvents", unique_id="tag-budget-test")
    # Then 80% and 100% fire once each, on the retry
    assert sorted(a["threshold_percent"] for a in alerts_seen(alert_queue)) == [80, 100]
    deliver(first, feed.arn)
    assert alerts_seen(alert_queue) == []

    # And the ledger holds exactly c-42's spend; the tenant's alert list is untouched
    ledger = repo.get_ledger("u-tags", period, tag=C42)
    assert ledger.spent_nanos == usd_to_nanos(Decimal("1.05"))
    assert ledger.alerted == {50, 80, 100}
    assert [(a.threshold_percent, a.tag) for a in repo.list_alerts("u-tags", tags=True)] == [
        (100, C42),
        (80, C42),
        (50, C42),
    ]
    assert repo.list_alerts("u-tags") == []


def test_a_tag_budget_and_the_tenant_budget_alert_separately(alert_queue: str, feed: StreamFeed) -> None:
    # Given a $10 tenant budget and a $1 budget on feature=search
    now = datetime.now(UTC)
    BudgetRepository().put_budget("u-both", Budget(limit_nanos=usd_to_nanos(Decimal(10))))
    search = TagScope(key="feature", value="search")
    put_tag_budget("u-both", "1.00", tag=search, thresholds=(50,))
    # When search spends $0.50 and chat $5
    feed.send([tagged("u-both", "0.50", now, feature="search"), tagged("u-both", "5.00", now, feature="chat")])
    # Then the tenant's 50% (of $10, at $5.50) and search's 50% (of $1) fire, one each
    seen = sorted((a["budget_label"], a["threshold_percent"], a["spent_usd"]) for a in alerts_seen(alert_queue))
    assert seen == [("feature=search budget", 50, "0.500000000"), ("monthly budget", 50, "5.500000000")]


def test_a_tag_budget_resets_at_local_midnight_of_the_first(alert_queue: str, feed: StreamFeed) -> None:
    # Given a $1 budget on c-42 counted in Asia/Kolkata (+05:30)
    tz = "Asia/Kolkata"
    now = datetime.now(UTC)
    budget = put_tag_budget("u-tz", "1.00", tz=tz)
    period = budget.period(now)
    # When c-42 spent $0.90 just before this local month began, and $0.40 just after
    feed.send(
        [
            tagged("u-tz", "0.90", period.start_utc - timedelta(minutes=1), customer="c-42"),
            tagged("u-tz", "0.40", period.start_utc, customer="c-42"),
        ]
    )
    # Then this period's ledger holds only the $0.40 (no threshold of $1 at 50% is reached)
    assert BudgetRepository().get_ledger("u-tz", period.key, tag=C42).spent_nanos == usd_to_nanos(Decimal("0.40"))
    assert alerts_seen(alert_queue) == []

"""Budgets end to end on moto: the aggregator's ledger and alerts, the timezone reset, enforcement, strict mode.

Events are written as the ingest writes them and fed to the aggregate handler from the usage
table's real stream (helpers of tests/integration/test_aggregate.py). Alerts are read from an SQS
queue that an EventBridge rule on the usage bus fills with `BudgetThresholdCrossed` events, as the
deployed rule feeds SNS and the notifier. Calls go through the real Anthropic SDK with a mocked
HTTP transport.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from llmtally import aggregate, aws
from llmtally.budget_alerts import BudgetKeeper
from llmtally.budgets import (
    ALERT_DETAIL_TYPE,
    STRICT_PERIOD_METADATA,
    Budget,
    BudgetAction,
    BudgetExceededError,
    SwitchTarget,
)
from llmtally.events import Provider, UsageEvent
from llmtally.money import usd_to_nanos
from llmtally.pricing import PriceBook
from llmtally.providers import LLMProviderFactory, RetryPolicy, TrackedProvider
from llmtally.providers.budget import BudgetedProvider, BudgetGuard, worst_case_nanos
from llmtally.repositories.budgets import BudgetRepository
from llmtally.resources import ResourceNames
from llmtally.tables import create_tables
from tests.conftest import MotoServer
from tests.integration.test_aggregate import deliver, read_stream, store, stream_arn
from tests.support.lambda_events import stream_event_from_records
from tests.unit.providers.conftest import ANTHROPIC_KEY, MockAPI, fixture_json, json_reply, no_sleep

pytestmark = pytest.mark.integration

#: A model no catalog knows: its cost is exactly the producer's reported cost (`cost_source=reported`).
PRIVATE_MODEL = "claude-private-ft"


@pytest.fixture
def alert_queue(moto: MotoServer) -> str:
    """The tables, the usage bus, and a rule sending alert events to a queue the test reads."""
    names = ResourceNames()
    create_tables(moto.client("dynamodb"), names)
    events: Any = moto.client("events")
    sqs: Any = moto.client("sqs")
    events.create_event_bus(Name=names.event_bus)
    url = sqs.create_queue(QueueName="alerts-seen")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="alerts-to-test",
        EventBusName=names.event_bus,
        EventPattern=json.dumps({"source": ["llmtally"], "detail-type": [ALERT_DETAIL_TYPE]}),
    )
    events.put_targets(Rule="alerts-to-test", EventBusName=names.event_bus, Targets=[{"Id": "q", "Arn": arn}])
    return str(url)


def alerts_seen(url: str) -> list[dict[str, Any]]:
    sqs: Any = aws.client("sqs")
    seen: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return seen
        for message in got:
            seen.append(json.loads(message["Body"])["detail"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def spend(user_id: str, usd: str, at: datetime, **metadata: Any) -> UsageEvent:
    """An event costing exactly `usd` (an unknown model priced by its reported cost)."""
    import secrets

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
        metadata=metadata,
    )


def put_budget(user_id: str, usd: str, tz: str = "UTC", **options: Any) -> Budget:
    budget = Budget(limit_nanos=usd_to_nanos(Decimal(usd)), timezone=tz, **options)
    BudgetRepository().put_budget(user_id, budget)
    return budget


class StreamFeed:
    """Hands the usage table's new stream records to the aggregate handler, as Lambda would."""

    def __init__(self) -> None:
        self.arn = stream_arn()
        self.last: str | None = None

    def new_records(self) -> list[dict[str, Any]]:
        records = read_stream(self.arn, self.last)
        if records:
            self.last = records[-1]["dynamodb"]["SequenceNumber"]
        return records

    def send(self, events: list[UsageEvent]) -> list[dict[str, Any]]:
        store(events)
        records = self.new_records()
        deliver(records, self.arn)
        return records


@pytest.fixture
def feed(alert_queue: str) -> Iterator[StreamFeed]:
    from aggregate.handler import budget_keeper

    budget_keeper.cache_clear()  # its repositories must talk to this test's emulator
    yield StreamFeed()
    budget_keeper.cache_clear()


# -- alerts: exactly once ------------------------------------------------------------------------


def test_each_threshold_fires_exactly_once_under_redelivery_and_retries(alert_queue: str, feed: StreamFeed) -> None:
    now = datetime.now(UTC)
    put_budget("u-alerts", "1.00")
    repo = BudgetRepository()

    # 60% → the 50% alert
    first = feed.send([spend("u-alerts", "0.30", now), spend("u-alerts", "0.30", now)])
    assert [a["threshold_percent"] for a in alerts_seen(alert_queue)] == [50]
    # the same records delivered again (at-least-once), twice: nothing new
    deliver(first, feed.arn)
    deliver(first, feed.arn)
    assert alerts_seen(alert_queue) == []

    # 90% → the 80% alert, although the first PutEvents fails: the batch is retried, the alert sent once
    hits = [0]

    def fail_once(**_: Any) -> None:
        hits[0] += 1
        if hits[0] == 1:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "PutEvents")

    events_client = aws.client("events")
    events_client.meta.events.register("before-call.events.PutEvents", fail_once, unique_id="budget-test")
    try:
        attempts_before = hits[0]
        feed.send([spend("u-alerts", "0.30", now)])
    finally:
        events_client.meta.events.unregister("before-call.events.PutEvents", unique_id="budget-test")
    assert hits[0] - attempts_before == 2  # failed, then sent on the retry
    (eighty,) = alerts_seen(alert_queue)
    assert (eighty["threshold_percent"], eighty["spent_usd"], eighty["limit_usd"]) == (80, "0.900000000", "1.000000000")
    assert eighty["alert_id"] == f"u-alerts:{Budget(limit_nanos=1, timezone='UTC').period(now).key}:80"

    # 120% → the 100% alert; a stale retry of an old batch afterwards changes nothing
    feed.send([spend("u-alerts", "0.30", now)])
    deliver(first, feed.arn)
    assert [a["threshold_percent"] for a in alerts_seen(alert_queue)] == [100]

    listed = repo.list_alerts("u-alerts")
    assert [a.threshold_percent for a in listed] == [100, 80, 50]
    period = Budget(limit_nanos=1).period(now).key
    ledger = repo.get_ledger("u-alerts", period)
    assert ledger.spent_nanos == usd_to_nanos(Decimal("1.20"))
    assert ledger.alerted == {50, 80, 100}


def test_concurrent_evaluations_fire_a_threshold_once(alert_queue: str) -> None:
    now = datetime.now(UTC)
    budget = put_budget("u-race", "1.00")
    repo = BudgetRepository()
    repo.seed_spent("u-race", budget.period(now), usd_to_nanos(Decimal("0.55")))
    keepers = [BudgetKeeper() for _ in range(8)]
    barrier = threading.Barrier(len(keepers))

    def evaluate(keeper: BudgetKeeper) -> None:
        keeper.begin(["u-race"], None)
        barrier.wait()
        keeper.evaluate(["u-race"])

    threads = [threading.Thread(target=evaluate, args=(k,)) for k in keepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a["threshold_percent"] for a in alerts_seen(alert_queue)] == [50]
    assert len(repo.list_alerts("u-race")) == 1


# -- the timezone reset ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "tz"),
    [("u-pacific", "America/Los_Angeles"), ("u-kolkata", "Asia/Kolkata")],
)
def test_the_period_resets_at_local_midnight_of_the_first(alert_queue: str, user_id: str, tz: str) -> None:
    # Given a budget in a zone 8 h behind or 5.5 h ahead of UTC, and spend on both sides of
    # local midnight between the 31st of October and the 1st of November
    zone = ZoneInfo(tz)
    midnight = datetime(2026, 11, 1, tzinfo=zone)
    put_budget(user_id, "1.00", tz)
    before = spend(user_id, "0.70", (midnight - timedelta(minutes=20)).astimezone(UTC))
    after = spend(user_id, "0.20", (midnight + timedelta(minutes=20)).astimezone(UTC))
    arn = stream_arn()

    # When the aggregator applies the first at 23:50 local on the 31st, the second at 00:50 on the
    # 1st, and then gets the whole stream again (a redelivery)
    def run(at: datetime, records: list[dict[str, Any]]) -> None:
        keeper = BudgetKeeper(clock=lambda: at.astimezone(UTC))
        response, _ = aggregate.handle_stream_event(stream_event_from_records(records, stream_arn=arn), budgets=keeper)
        assert response == {"batchItemFailures": []}

    store([before])
    run(midnight - timedelta(minutes=10), read_stream(arn))
    store([after])
    run(midnight + timedelta(minutes=50), read_stream(arn))
    run(midnight + timedelta(minutes=55), read_stream(arn))

    repo = BudgetRepository()
    october, november = repo.get_ledger(user_id, "2026-10"), repo.get_ledger(user_id, "2026-11")
    # Then October holds what was spent before local midnight, November only what came after
    assert october.spent_nanos == usd_to_nanos(Decimal("0.70"))
    assert november.spent_nanos == usd_to_nanos(Decimal("0.20"))
    # and October's 50% alert fired; November is under every threshold
    assert [(a.period, a.threshold_percent) for a in repo.list_alerts(user_id)] == [("2026-10", 50)]
    # the API's status at 00:50 local counts November only
    from llmtally.api.budgets import BudgetService
    from llmtally.repositories.rollups import RollupRepository
    from llmtally.repositories.secrets import SecretsRepository

    service = BudgetService(
        repo, SecretsRepository(), RollupRepository, clock=lambda: (midnight + timedelta(minutes=50)).astimezone(UTC)
    )
    status = service.get(user_id).status
    assert status is not None
    assert (status.period, status.spentUsd, status.state) == ("2026-11", Decimal("0.200000000"), "ok")
    assert status.periodStart == midnight


# -- enforcement -----------------------------------------------------------------------------------


class Sink:
    """Collects the usage events a tracked provider publishes (the publisher's `publish` contract)."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self._lock = threading.Lock()

    def publish(self, event: UsageEvent) -> bool:
        with self._lock:
            self.events.append(event)
        return True


def anthropic(api: MockAPI, sink: Sink, user_id: str) -> TrackedProvider:
    provider = LLMProviderFactory.create(
        "anthropic",
        api_key=ANTHROPIC_KEY,
        model="claude-sonnet-4-6",
        http_client=api.client(),
        price_book=PriceBook(),
        retry=RetryPolicy(max_attempts=1),
        sleep=no_sleep,
    )
    return TrackedProvider(provider, sink, user_id=user_id)


def plain_api() -> MockAPI:
    return MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))])


def test_block_refuses_calls_without_reaching_the_provider(alert_queue: str) -> None:
    budget = put_budget("u-block", "0.01", action=BudgetAction.BLOCK)
    BudgetRepository().seed_spent("u-block", budget.period(datetime.now(UTC)), usd_to_nanos(Decimal("0.0125")))
    api, sink = plain_api(), Sink()
    provider = BudgetedProvider(anthropic(api, sink, "u-block"), guard=BudgetGuard())
    with pytest.raises(BudgetExceededError, match=r"monthly budget of \$0.01 for \d{4}-\d\d is used up"):
        provider.generate("q")
    assert api.requests == []
    assert sink.events == []
    assert provider.blocked_calls == 1


def test_switch_sends_calls_to_the_cheaper_model_once_spent(alert_queue: str) -> None:
    target = SwitchTarget(provider=Provider.ANTHROPIC, model="claude-haiku-4-5-20251001")
    budget = put_budget("u-switch", "0.01", action=BudgetAction.SWITCH, switch_to=target)
    guard = BudgetGuard()
    api, sink = plain_api(), Sink()
    provider = BudgetedProvider(anthropic(api, sink, "u-switch"), guard=guard)
    provider.generate("q")  # under budget: the configured model
    BudgetRepository().seed_spent("u-switch", budget.period(datetime.now(UTC)), usd_to_nanos(Decimal("0.02")))
    guard.invalidate()
    provider.generate("q")  # spent: switched
    assert [api.body(i)["model"] for i in range(2)] == ["claude-sonnet-4-6", "claude-haiku-4-5-20251001"]
    assert provider.switched_calls == 1
    assert len(sink.events) == 2


def test_notify_lets_calls_through(alert_queue: str) -> None:
    budget = put_budget("u-notify", "0.01")
    BudgetRepository().seed_spent("u-notify", budget.period(datetime.now(UTC)), usd_to_nanos(Decimal("5")))
    api, sink = plain_api(), Sink()
    BudgetedProvider(anthropic(api, sink, "u-notify"), guard=BudgetGuard()).generate("q")
    assert len(api.requests) == 1


# -- strict mode -----------------------------------------------------------------------------------


def test_strict_mode_never_overshoots_with_twenty_concurrent_callers(alert_queue: str) -> None:
    # Given a $0.10 budget and calls costing $0.012 each (1,500 input + 500 output tokens at $3/$15)
    budget = put_budget("u-strict", "0.10", action=BudgetAction.BLOCK, strict=True)
    api, sink = plain_api(), Sink()
    prompt = "x" * 1500  # the fixture bills 1,500 input tokens: a prompt of at least as many bytes
    worst = worst_case_nanos(
        Provider.ANTHROPIC, "claude-sonnet-4-6", prompt=prompt, messages=None, system=None, max_tokens=500
    )
    assert worst >= usd_to_nanos(Decimal("0.012"))
    callers, barrier = 20, threading.Barrier(20)
    succeeded: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def caller(index: int) -> None:
        provider = BudgetedProvider(anthropic(api, sink, "u-strict"), guard=BudgetGuard())
        barrier.wait()
        for _ in range(3):
            try:
                response = provider.generate(prompt, max_tokens=500)
            except BudgetExceededError:
                with lock:
                    refused.append(index)
                return
            with lock:
                succeeded.append(response.usage.cost_nanos)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then what was spent never passes the limit (each call's real cost ≤ its reservation), the
    # budget was actually used (not refused wholesale), and every provider request was reserved
    spent = sum(succeeded)
    assert spent <= budget.limit_nanos
    assert budget.limit_nanos - spent < worst  # nothing left that another call could have used
    assert len(api.requests) == len(succeeded) == len(sink.events)
    assert refused
    # and the ledger holds exactly the settled cost, no hold left behind
    ledger = BudgetRepository().get_ledger("u-strict", budget.period(datetime.now(UTC)).key)
    assert ledger.outstanding_nanos == spent
    assert ledger.holds == {}
    # each call's event names the ledger its cost is outstanding in
    assert {e.metadata[STRICT_PERIOD_METADATA] for e in sink.events} == {budget.period(datetime.now(UTC)).key}


def test_the_aggregator_moves_a_settled_strict_call_from_outstanding_to_spent(
    alert_queue: str, feed: StreamFeed
) -> None:
    budget = put_budget("u-settle", "1.00", action=BudgetAction.BLOCK, strict=True)
    period = budget.period(datetime.now(UTC))
    repo = BudgetRepository()
    reservation = repo.reserve(
        "u-settle", period, usd_to_nanos(Decimal("0.05")), limit_nanos=budget.limit_nanos, hold_seconds=60
    )
    repo.settle(reservation, usd_to_nanos(Decimal("0.03")))
    assert repo.get_ledger("u-settle", period.key).outstanding_nanos == usd_to_nanos(Decimal("0.03"))
    event = spend("u-settle", "0.03", datetime.now(UTC), **{STRICT_PERIOD_METADATA: period.key})
    feed.send([event])
    feed.send([event])  # the publisher's retry: deduplicated by the ingest, nothing released twice
    ledger = repo.get_ledger("u-settle", period.key)
    assert (ledger.spent_nanos, ledger.outstanding_nanos) == (usd_to_nanos(Decimal("0.03")), 0)


def test_an_expired_hold_of_a_crashed_caller_is_swept(alert_queue: str) -> None:
    budget = put_budget("u-crash", "0.10", action=BudgetAction.BLOCK, strict=True)
    period = budget.period(datetime.now(UTC))
    repo = BudgetRepository()
    repo.reserve("u-crash", period, usd_to_nanos(Decimal("0.08")), limit_nanos=budget.limit_nanos, hold_seconds=-1)
    # the crashed caller's hold has expired: a new reservation sweeps it and fits
    repo.reserve("u-crash", period, usd_to_nanos(Decimal("0.08")), limit_nanos=budget.limit_nanos, hold_seconds=60)
    ledger = repo.get_ledger("u-crash", period.key)
    assert ledger.outstanding_nanos == usd_to_nanos(Decimal("0.08"))
    assert len(ledger.holds) == 1


def test_a_users_provider_switches_to_another_provider_with_their_stored_key(alert_queue: str) -> None:
    # Given a user on Anthropic with keys for Anthropic and OpenAI, whose budget is spent and says
    # "switch to gpt-5-mini"
    from pydantic import SecretStr

    from llmtally.providers import SecretKeyStore, provider_for_user
    from llmtally.repositories.secrets import SecretsRepository
    from tests.unit.providers.conftest import OPENAI_KEY

    SecretsRepository().put_key("u-user", Provider.ANTHROPIC, SecretStr(ANTHROPIC_KEY))
    SecretsRepository().put_key("u-user", Provider.OPENAI, SecretStr(OPENAI_KEY))
    target = SwitchTarget(provider=Provider.OPENAI, model="gpt-5-mini")
    budget = put_budget("u-user", "0.01", action=BudgetAction.SWITCH, switch_to=target)
    BudgetRepository().seed_spent("u-user", budget.period(datetime.now(UTC)), usd_to_nanos(Decimal("0.02")))
    api, sink = MockAPI([json_reply(fixture_json("openai", "chat_plain.json"))]), Sink()
    provider = provider_for_user(
        "u-user",
        preferences={"defaultProvider": "anthropic", "queryModel": "claude-sonnet-4-6"},
        key_store=SecretKeyStore(),
        publisher=sink,
        budget_guard=BudgetGuard(),
        http_client=api.client(),
        price_book=PriceBook(),
    )
    # When the service calls it
    response = provider.generate("q")
    # Then the call went to OpenAI with the user's OpenAI key, and was tracked as an OpenAI call
    (request,) = api.requests
    assert request.url.host == "api.openai.com"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert api.body()["model"] == "gpt-5-mini"
    assert response.usage.cost_nanos > 0
    (event,) = sink.events
    assert (event.provider, event.model, event.user_id) == (Provider.OPENAI, response.model, "u-user")


def test_a_strict_stream_is_reserved_and_settled_when_it_ends_or_is_closed(alert_queue: str) -> None:
    from tests.unit.providers.conftest import fixture_text, sse_reply

    budget = put_budget("u-stream", "0.10", action=BudgetAction.BLOCK, strict=True)
    period = budget.period(datetime.now(UTC)).key
    repo = BudgetRepository()
    api, sink = MockAPI([sse_reply(fixture_text("anthropic", "stream_cache.sse"))]), Sink()
    provider = BudgetedProvider(anthropic(api, sink, "u-stream"), guard=BudgetGuard())

    # consumed to the end: the hold becomes the stream's real cost
    stream = provider.stream("hi", max_tokens=100)
    assert next(stream) == "Hello"
    assert len(repo.get_ledger("u-stream", period).holds) == 1  # reserved while it runs
    list(stream)
    assert stream.usage is not None
    ledger = repo.get_ledger("u-stream", period)
    assert (ledger.outstanding_nanos, ledger.holds) == (stream.usage.cost_nanos, {})
    assert sink.events[-1].metadata[STRICT_PERIOD_METADATA] == period

    # closed early: the hold is released, nothing is left outstanding for it
    with provider.stream("hi", max_tokens=100) as early:
        assert next(early) == "Hello"
    ledger_after = repo.get_ledger("u-stream", period)
    assert (ledger_after.outstanding_nanos, ledger_after.holds) == (stream.usage.cost_nanos, {})
    assert sink.events[-1].error_type == "cancelled"

    # no room for the worst case: refused before any request
    requests = len(api.requests)
    with pytest.raises(BudgetExceededError):
        provider.stream("hi", max_tokens=100_000)
    assert len(api.requests) == requests


def test_a_settlement_resent_by_the_sdk_after_it_applied_counts_once(alert_queue: str) -> None:
    # Given a strict budget, and an SDK that sends the settlement's update a second time after the
    # first was applied (its answer lost: botocore retries a 500 or a timeout)
    budget = put_budget("u-resent", "0.10", action=BudgetAction.BLOCK, strict=True)
    period = budget.period(datetime.now(UTC))
    repo = BudgetRepository()
    resent: list[bytes] = []

    def resend_once(attempts: int, request_dict: dict[str, Any], **_: Any) -> int | None:
        body = request_dict.get("body", b"")
        body = body.encode() if isinstance(body, str) else body
        if attempts == 1 and b"REMOVE #h.#id" in body:
            resent.append(body)
            return 0  # retry at once: the same request again
        return None

    client = aws.client("dynamodb")
    client.meta.events.register("needs-retry.dynamodb.UpdateItem", resend_once, unique_id="resend-once")
    try:
        # When a call reserves $0.03 and settles at $0.02
        reservation = repo.reserve(
            "u-resent", period, usd_to_nanos(Decimal("0.03")), limit_nanos=budget.limit_nanos, hold_seconds=900
        )
        held = repo.get_ledger("u-resent", period.key)
        repo.settle(reservation, usd_to_nanos(Decimal("0.02")))
    finally:
        client.meta.events.unregister("needs-retry.dynamodb.UpdateItem", unique_id="resend-once")
    settled = repo.get_ledger("u-resent", period.key)

    # Then the settlement was sent twice and counted once: the call's real cost stays outstanding
    assert len(resent) == 1
    assert (held.outstanding_nanos, len(held.holds)) == (usd_to_nanos(Decimal("0.03")), 1)
    assert (settled.outstanding_nanos, len(settled.holds)) == (usd_to_nanos(Decimal("0.02")), 0)

"""Strict tag budgets on moto: each call under `llmtally.attribution(tags=...)` reserves its worst
case on the tag value's ledger, is refused when it does not fit (no request, no event), settles to
its real cost, and the aggregator releases the settled cost exactly once after rolling the event
up — under redelivery, an injected failure, concurrent evaluations and the event arriving before
the settle; a crashed caller's hold is swept. With a strict tenant budget too, a call holds on
every ledger or on none. Calls go through the real Anthropic and OpenAI SDKs at their HTTP
transport (docs/budgets.md, "Strict tag budgets")."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmtally
from llmtally import aws
from llmtally.budget_alerts import BudgetKeeper
from llmtally.budgets import (
    STRICT_PERIOD_METADATA,
    TAG_HOLD_METADATA,
    Budget,
    BudgetAction,
    BudgetExceededError,
    SwitchTarget,
    TagScope,
    parse_tag_hold,
)
from llmtally.entries import RawEntry
from llmtally.events import Provider, UsageEvent
from llmtally.ingest import raw_entry_item
from llmtally.money import usd_to_nanos
from llmtally.pricing import PriceBook
from llmtally.providers import SecretKeyStore, aprovider_for_user, client_for_user
from llmtally.providers.budget import BudgetedProvider, BudgetGuard
from llmtally.providers.native import guard_of
from llmtally.repositories import budgets as budget_repository
from llmtally.repositories.budgets import BudgetRepository, Ledger, Reservation
from tests.integration import test_budgets, test_native_clients
from tests.integration.test_aggregate import deliver
from tests.integration.test_budgets import Sink, StreamFeed, anthropic
from tests.integration.test_native_clients import MESSAGES
from tests.unit.providers.conftest import MockAPI, fixture_json, fixture_text, json_reply, sse_reply

pytestmark = pytest.mark.integration

alert_queue = test_budgets.alert_queue
stored = test_native_clients.stored
C42 = TagScope(key="customer", value="c-42")
SEARCH = TagScope(key="feature", value="search")


@pytest.fixture
def feed(alert_queue: str) -> Iterator[StreamFeed]:
    from aggregate.handler import budget_keeper

    budget_keeper.cache_clear()  # its repositories must talk to this test's emulator
    yield StreamFeed()
    budget_keeper.cache_clear()


def put_tag_budget(user_id: str, usd: str, tag: TagScope = C42, **options: Any) -> Budget:
    budget = Budget(limit_nanos=usd_to_nanos(Decimal(usd)), **{"action": BudgetAction.BLOCK, "strict": True, **options})
    repository = BudgetRepository()
    repository.put_budget(user_id, budget, tag=tag)
    repository.seed_spent(user_id, budget.period(datetime.now(UTC)), 0, tag=tag)
    return budget


def reserve(user_id: str, budget: Budget, usd: str, hold_seconds: int) -> Reservation:
    return BudgetRepository().reserve(
        user_id,
        budget.period(datetime.now(UTC)),
        usd_to_nanos(Decimal(usd)),
        limit_nanos=budget.limit_nanos,
        hold_seconds=hold_seconds,
        tag=C42,
    )


def ledger(user_id: str, tag: TagScope | None = C42) -> Ledger:
    return BudgetRepository().get_ledger(user_id, Budget(limit_nanos=1).period(datetime.now(UTC)).key, tag=tag)


def plain(count: int = 1) -> MockAPI:
    return MockAPI([json_reply(fixture_json("anthropic", "message_plain.json")) for _ in range(count)])


def test_concurrent_strict_callers_never_overshoot_and_the_aggregator_releases_each_call_once(
    feed: StreamFeed,
) -> None:
    # Given customer c-42's strict $0.05 budget and calls costing $0.012 each (1,500 in + 500 out
    # on Sonnet), reserved at their worst case; 12 callers at once, 3 calls each
    budget = put_tag_budget("u-tags", "0.05")
    api, sink = plain(), Sink()
    prompt = "x" * 1500
    callers, barrier = 12, threading.Barrier(12)
    costs: list[int] = []
    refused: list[str] = []
    lock = threading.Lock()

    def caller() -> None:
        provider = BudgetedProvider(anthropic(api, sink, "u-tags"), guard=BudgetGuard())
        barrier.wait()
        with llmtally.attribution(tags={"customer": "c-42"}):
            for _ in range(3):
                try:
                    response = provider.generate(prompt, max_tokens=500)
                except BudgetExceededError as exc:
                    with lock:
                        refused.append(str(exc))
                    return
                with lock:
                    costs.append(response.usage.cost_nanos)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the calls made never pass the limit, every request was reserved, refusals name the tag
    # budget, and the ledger holds each call's settled cost under its hold, outstanding
    spent = sum(costs)
    assert 0 < spent <= budget.limit_nanos
    assert len(api.requests) == len(costs) == len(sink.events)
    assert refused
    assert all("customer=c-42 budget of $0.05" in said for said in refused)
    held = ledger("u-tags")
    assert held.outstanding_nanos == spent == sum(h.nanos for h in held.holds.values())
    assert all(h.settled for h in held.holds.values())
    hold_ids = {parse_tag_hold(e.metadata[TAG_HOLD_METADATA]) for e in sink.events}
    assert {h[0] for h in hold_ids if h} == set(held.holds)
    assert all(STRICT_PERIOD_METADATA not in e.metadata for e in sink.events)  # no tenant ledger holds them

    # When the events reach the aggregator, then again (redelivery) and once more as a stale retry
    records = feed.send(list(sink.events))
    deliver(records, feed.arn)
    deliver(records, feed.arn)
    # Then each settled cost moved from outstanding to spent exactly once
    after = ledger("u-tags")
    assert (after.spent_nanos, after.outstanding_nanos, dict(after.holds)) == (spent, 0, {})


def test_a_release_that_fails_once_is_finished_by_the_retry_and_counted_once(feed: StreamFeed) -> None:
    # Given a settled strict call for c-42 whose event is about to be aggregated
    put_tag_budget("u-inject", "1.00")
    api, sink = plain(), Sink()
    provider = BudgetedProvider(anthropic(api, sink, "u-inject"), guard=BudgetGuard())
    with llmtally.attribution(tags={"customer": "c-42"}):
        cost = provider.generate("q", max_tokens=500).usage.cost_nanos
    assert ledger("u-inject").outstanding_nanos == cost
    # When the aggregator's release fails the first time (a throttled UpdateItem)
    failures = [0]

    def fail_first_release(params: dict[str, Any], **_: Any) -> None:
        if "REMOVE #h.#i0" in str(params.get("UpdateExpression")) and failures[0] == 0:
            failures[0] += 1
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "UpdateItem")

    client = aws.client("dynamodb")
    client.meta.events.register("provide-client-params.dynamodb.UpdateItem", fail_first_release, unique_id="inj")
    try:
        records = feed.send(list(sink.events))  # deliver() retries the failed batch, as Lambda does
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb.UpdateItem", unique_id="inj")
    deliver(records, feed.arn)  # and a redelivery afterwards
    # Then it failed once, and the retry released the call's cost once
    assert failures == [1]
    after = ledger("u-inject")
    assert (after.spent_nanos, after.outstanding_nanos, dict(after.holds)) == (cost, 0, {})


def test_concurrent_evaluations_of_one_batch_release_each_hold_once(alert_queue: str) -> None:
    # Given three settled $0.03 holds on c-42's ledger and their events in one batch, evaluated by
    # 8 aggregators at once (the first hold also by one before them: a partly released batch)
    budget = put_tag_budget("u-race", "1.00")
    repo = BudgetRepository()
    entries = []
    for _ in range(3):
        hold = reserve("u-race", budget, "0.05", 900)
        repo.settle(hold, usd_to_nanos(Decimal("0.03")))
        event = test_budgets.spend(
            "u-race", "0.03", datetime.now(UTC), **{TAG_HOLD_METADATA: f"{hold.hold_id}@{hold.reserved_at}"}
        ).model_copy(update={"tags": {"customer": "c-42"}})
        entries.append(
            RawEntry.from_item(
                raw_entry_item(event, PriceBook().price_event(event), ttl_days=90, now=datetime.now(UTC))
            )
        )
    spent = usd_to_nanos(Decimal("0.09"))
    first = BudgetKeeper(tag_total=lambda *_: spent)
    first.begin(["u-race"], None, entries=entries[:1])
    first.evaluate(["u-race"])
    keepers = [BudgetKeeper(tag_total=lambda *_: spent) for _ in range(8)]
    barrier = threading.Barrier(len(keepers))

    def evaluate(keeper: BudgetKeeper) -> None:
        keeper.begin(["u-race"], None, entries=entries)
        barrier.wait()
        keeper.evaluate(["u-race"])

    threads = [threading.Thread(target=evaluate, args=(k,)) for k in keepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each hold left the ledger once: outstanding is 0, never negative
    after = ledger("u-race")
    assert (after.spent_nanos, after.outstanding_nanos, dict(after.holds)) == (spent, 0, {})


def test_an_event_rolled_up_before_its_settle_is_released_by_the_settle(alert_queue: str) -> None:
    # Given a hold whose call's event the aggregator sees before the caller settles
    budget = put_tag_budget("u-early", "1.00")
    period = budget.period(datetime.now(UTC))
    repo = BudgetRepository()
    hold = reserve("u-early", budget, "0.05", 900)
    assert repo.release_rolled_holds("u-early", period.key, C42, [hold.hold_id]) == (0, 0)
    assert ledger("u-early").holds[hold.hold_id].rolled
    # When the caller settles (twice: the SDK resends it)
    repo.settle(hold, usd_to_nanos(Decimal("0.03")))
    repo.settle(hold, usd_to_nanos(Decimal("0.03")))
    # Then the hold is gone with its whole amount: the cost is in spent, not outstanding
    after = ledger("u-early")
    assert (after.outstanding_nanos, dict(after.holds)) == (0, {})


def test_holds_of_a_crashed_caller_and_of_an_event_that_never_came_are_swept(
    alert_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given c-42's $0.10 ledger with a settled $0.03 hold whose event never arrives (its wait made
    # over at once) and a crashed caller's $0.06 hold, expired
    budget = put_tag_budget("u-crash", "0.10")
    lost = reserve("u-crash", budget, "0.03", 900)
    reserve("u-crash", budget, "0.06", -1)
    monkeypatch.setattr(budget_repository, "SETTLED_HOLD_S", -1)
    BudgetRepository().settle(lost, usd_to_nanos(Decimal("0.03")))
    assert ledger("u-crash").outstanding_nanos == usd_to_nanos(Decimal("0.09"))
    # When the next call reserves $0.08: it fits only once both are swept
    reserve("u-crash", budget, "0.08", 900)
    # Then both are gone and only the new hold is outstanding
    after = ledger("u-crash")
    assert (after.outstanding_nanos, len(after.holds)) == (usd_to_nanos(Decimal("0.08")), 1)


def test_a_call_holds_on_every_strict_budget_or_on_none(alert_queue: str) -> None:
    # Given a strict tenant budget with room, c-42's strict budget with room, and feature=search's
    # strict budget nearly spent
    user = "u-all"
    tenant = Budget(limit_nanos=usd_to_nanos(Decimal("10")), action=BudgetAction.BLOCK, strict=True)
    BudgetRepository().put_budget(user, tenant)
    put_tag_budget(user, "10.00")
    put_tag_budget(user, "0.01", tag=SEARCH)
    api, sink = plain(2), Sink()
    provider = BudgetedProvider(anthropic(api, sink, user), guard=BudgetGuard())
    # When a call is tagged with both: refused by the search budget, before any request
    tagged = llmtally.attribution(tags={"customer": "c-42", "feature": "search"})
    with tagged, pytest.raises(BudgetExceededError, match=r"feature=search budget of \$0.01 .* has no room"):
        provider.generate("q", max_tokens=1000)
    # Then nothing is held anywhere: the tenant's and c-42's holds were given back
    assert (api.requests, sink.events) == ([], [])
    for tag in (None, C42, SEARCH):
        assert (ledger(user, tag).outstanding_nanos, dict(ledger(user, tag).holds)) == (0, {})
    # When c-42 alone calls: it holds on the tenant's ledger and c-42's, under one id in its event
    with llmtally.attribution(tags={"customer": "c-42"}):
        cost = provider.generate("q", max_tokens=500).usage.cost_nanos
    (event,) = sink.events
    parsed = parse_tag_hold(event.metadata[TAG_HOLD_METADATA])
    assert parsed is not None
    assert event.metadata[STRICT_PERIOD_METADATA] == tenant.period(datetime.now(UTC)).key
    assert (ledger(user, None).outstanding_nanos, dict(ledger(user, None).holds)) == (cost, {})
    assert set(ledger(user, C42).holds) == {parsed[0]}
    assert ledger(user, C42).outstanding_nanos == cost


def test_a_strict_tag_stream_settles_when_it_ends_and_when_it_is_closed(alert_queue: str) -> None:
    put_tag_budget("u-stream", "0.10")
    reply = fixture_text("anthropic", "stream_cache.sse")
    api, sink = MockAPI([sse_reply(reply), sse_reply(reply)]), Sink()
    provider = BudgetedProvider(anthropic(api, sink, "u-stream"), guard=BudgetGuard())
    with llmtally.attribution(tags={"customer": "c-42"}):
        # consumed to the end: the hold becomes the stream's real cost
        stream = provider.stream("hi", max_tokens=100)
        assert next(stream) == "Hello"
        (running,) = ledger("u-stream").holds.values()
        assert not running.settled
        list(stream)
        assert stream.usage is not None
        (done,) = ledger("u-stream").holds.values()
        assert (done.settled, done.nanos) == (True, stream.usage.cost_nanos)
        # closed early: settled to nothing (its partial tokens reach spent through the rollups)
        with provider.stream("hi", max_tokens=100) as early:
            assert next(early) == "Hello"
    assert sorted(h.nanos for h in ledger("u-stream").holds.values()) == [0, stream.usage.cost_nanos]
    assert ledger("u-stream").outstanding_nanos == stream.usage.cost_nanos
    assert all(TAG_HOLD_METADATA in e.metadata for e in sink.events)


def test_native_clients_reserve_on_the_tag_budget_sync_and_async_streaming(stored: str) -> None:
    # Given c-42's strict $0.01 budget and native clients (Anthropic sync, OpenAI async streaming)
    put_tag_budget(stored, "0.01")
    api, sink = MockAPI([json_reply(fixture_json("anthropic", "message_tool_use.json"))]), Sink()
    client = test_native_clients.anthropic_client(api, sink, stored)
    with llmtally.attribution(tags={"customer": "c-42"}):
        # When a call's worst case does not fit: refused before the request, no event
        with pytest.raises(BudgetExceededError, match="customer=c-42 budget"):
            client.messages.create(model="claude-sonnet-4-6", max_tokens=4096, messages=MESSAGES)
        assert (api.requests, sink.events) == ([], [])
        # When one fits: reserved, made, settled to its real cost and named in its event
        client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    (event,) = sink.events
    (hold,) = ledger(stored).holds.values()
    assert hold.settled
    assert hold.nanos == usd_to_nanos(test_native_clients.TOOL_CALL_COST)
    assert TAG_HOLD_METADATA in event.metadata

    stream_sink = Sink()

    async def main() -> None:
        streaming = MockAPI([sse_reply(fixture_text("openai", "responses_stream.sse"))])
        aclient = client_for_user(
            stored,
            "openai",
            asynchronous=True,
            publisher=stream_sink,
            preferences={},
            key_store=SecretKeyStore(),
            budget_guard=BudgetGuard(),
            price_book=PriceBook(),
            http_client=streaming.aclient(),
            tags={"customer": "c-42"},
        )
        stream = await aclient.responses.create(model="gpt-5-mini", input="hi", max_output_tokens=300, stream=True)
        async for _ in stream:
            pass
        guard = guard_of(aclient)
        assert guard is not None
        await guard.settled()

    asyncio.run(main())
    (streamed,) = stream_sink.events
    parsed = parse_tag_hold(streamed.metadata[TAG_HOLD_METADATA])
    assert parsed is not None
    assert ledger(stored).holds[parsed[0]].settled
    assert ledger(stored).outstanding_nanos == sum(h.nanos for h in ledger(stored).holds.values())


def test_events_carry_the_hold_so_redelivered_ingests_release_nothing_more(feed: StreamFeed) -> None:
    # Given two strict calls' events for c-42, each published twice (the publisher's retry)
    put_tag_budget("u-dup", "1.00")
    api, sink = plain(2), Sink()
    provider = BudgetedProvider(anthropic(api, sink, "u-dup"), guard=BudgetGuard())
    with llmtally.attribution(tags={"customer": "c-42"}):
        costs = [provider.generate("q", max_tokens=500).usage.cost_nanos for _ in range(2)]
    events: list[UsageEvent] = list(sink.events)
    # When they are ingested twice (deduplicated) and aggregated
    feed.send(events + events)
    feed.send(events)
    # Then spent holds both once, nothing stays outstanding
    after = ledger("u-dup")
    assert (after.spent_nanos, after.outstanding_nanos, dict(after.holds)) == (sum(costs), 0, {})


_EXAMPLES = iter(range(10**6))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.permutations([("settle", i) for i in range(3)] + [("release", i) for i in range(3)]),
    # a repeat of index 3 releases all three at once (one batch naming every call; one update)
    repeats=st.lists(st.tuples(st.sampled_from(["settle", "release"]), st.integers(0, 3)), max_size=4),
    costs=st.lists(st.integers(0, 40_000_000), min_size=3, max_size=3),
)
def test_any_order_of_settles_releases_and_repeats_counts_each_call_once(
    alert_queue: str, order: list[tuple[str, int]], repeats: list[tuple[str, int]], costs: list[int]
) -> None:
    # Given three calls holding $0.05 each on c-42's ledger
    user = f"u-prop-{next(_EXAMPLES)}"
    budget = put_tag_budget(user, "1.00")
    holds = [reserve(user, budget, "0.05", 900) for _ in range(3)]
    repo = BudgetRepository()
    period = budget.period(datetime.now(UTC)).key
    # When their settles and the aggregator's releases come in any order, with repeats (SDK retries,
    # redelivered events) anywhere after the first
    for kind, index in [*order, *repeats]:
        chosen = holds if index == 3 else [holds[index]]
        if kind == "settle":
            for hold in chosen:
                repo.settle(hold, costs[holds.index(hold)])
        else:
            repo.release_rolled_holds(user, period, C42, [hold.hold_id for hold in chosen])
        # Then at every step what is outstanding is exactly what the holds left hold
        now = ledger(user)
        assert now.outstanding_nanos == sum(h.nanos for h in now.holds.values()) >= 0
    # and once every call was settled and rolled up, nothing is left
    final = ledger(user)
    assert (final.outstanding_nanos, dict(final.holds)) == (0, {})


def test_a_strict_tag_budget_with_switch_sends_a_call_that_does_not_fit_to_its_cheaper_target(
    alert_queue: str,
) -> None:
    # Given c-42's strict $0.01 budget that switches to Haiku: Sonnet's worst case for this call
    # ($0.0151) does not fit, Haiku's ($0.0050) does
    haiku = SwitchTarget(provider=Provider.ANTHROPIC, model="claude-haiku-4-5-20251001")
    put_tag_budget("u-switch", "0.01", action=BudgetAction.SWITCH, switch_to=haiku)
    api, sink = plain(), Sink()
    provider = BudgetedProvider(anthropic(api, sink, "u-switch"), guard=BudgetGuard())
    # When a call is made for c-42
    with llmtally.attribution(tags={"customer": "c-42"}):
        provider.generate("q", max_tokens=1000)
    # Then it went to Haiku, held on c-42's ledger and settled there
    assert api.body()["model"] == "claude-haiku-4-5-20251001"
    assert provider.switched_calls == 1
    (hold,) = ledger("u-switch").holds.values()
    assert hold.settled
    assert TAG_HOLD_METADATA in sink.events[0].metadata


def test_async_adapter_calls_and_streams_reserve_and_settle_off_the_event_loop(stored: str) -> None:
    # Given c-42's strict budget, and a guard whose storage calls note the thread they run on
    put_tag_budget(stored, "1.00")
    storage_threads: list[int] = []

    class Watched(BudgetRepository):
        def reserve(self, *args: Any, **kwargs: Any) -> Reservation:
            storage_threads.append(threading.get_ident())
            return super().reserve(*args, **kwargs)

        def settle(self, reservation: Reservation, actual_nanos: int) -> None:
            storage_threads.append(threading.get_ident())
            super().settle(reservation, actual_nanos)

    reply = fixture_text("anthropic", "stream_cache.sse")
    api, sink = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json")), sse_reply(reply)]), Sink()

    async def main() -> int:
        provider = await aprovider_for_user(
            stored,
            preferences={"defaultProvider": "anthropic", "queryModel": "claude-sonnet-4-6"},
            key_store=SecretKeyStore(),
            publisher=sink,
            budget_guard=BudgetGuard(Watched()),
            http_client=api.client(),
            async_http_client=api.aclient(),
            price_book=PriceBook(),
        )
        # When an agenerate and an astream are made for c-42
        with llmtally.attribution(tags={"customer": "c-42"}):
            await provider.agenerate("q", max_tokens=500)
            async for _ in provider.astream("hi", max_tokens=100):
                pass
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    # Then both reserved and settled on c-42's ledger, each storage call off the loop's thread
    assert len(storage_threads) == 4
    assert loop_thread not in storage_threads
    holds = ledger(stored).holds
    assert len(holds) == 2
    assert all(h.settled for h in holds.values())
    assert {parse_tag_hold(e.metadata[TAG_HOLD_METADATA]) is not None for e in sink.events} == {True}


def test_a_native_async_call_cancelled_while_reserving_gives_every_hold_back(stored: str) -> None:
    # Given the tenant's strict budget and c-42's, and a ledger slow to answer the first reservation
    BudgetRepository().put_budget(
        stored, Budget(limit_nanos=usd_to_nanos(Decimal("10")), action=BudgetAction.BLOCK, strict=True)
    )
    put_tag_budget(stored, "1.00")
    reserving, answer = threading.Event(), threading.Event()

    class Slow(BudgetRepository):
        def reserve(self, *args: Any, **kwargs: Any) -> Reservation:
            taken = super().reserve(*args, **kwargs)
            reserving.set()
            answer.wait(10)
            return taken

    api, sink = MockAPI([json_reply(fixture_json("anthropic", "message_tool_use.json"))]), Sink()

    async def main() -> None:
        client = client_for_user(
            stored,
            "anthropic",
            asynchronous=True,
            publisher=sink,
            preferences={"trackUsage": True},
            key_store=SecretKeyStore(),
            budget_guard=BudgetGuard(Slow()),
            price_book=PriceBook(),
            http_client=api.aclient(),
        )

        async def call() -> None:
            with llmtally.attribution(tags={"customer": "c-42"}):
                await client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)

        # When the caller's task is cancelled while its holds are being taken
        task = asyncio.create_task(call())
        await asyncio.to_thread(reserving.wait, 10)
        task.cancel()
        answer.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        guard = guard_of(client)
        assert guard is not None
        for _ in range(500):  # until the worker thread has reserved and the holds are given back
            await guard.settled()
            held = [(await asyncio.to_thread(ledger, stored, tag)).holds for tag in (None, C42)]
            if not any(held):
                return
            await asyncio.sleep(0.01)

    asyncio.run(main())
    # Then no request, no event, and nothing held on either ledger
    assert (api.requests, sink.events) == ([], [])
    for tag in (None, C42):
        assert (ledger(stored, tag).outstanding_nanos, dict(ledger(stored, tag).holds)) == (0, {})


def test_an_agenerate_cancelled_while_reserving_gives_every_hold_back(alert_queue: str) -> None:
    # Given the tenant's strict budget and c-42's, and a ledger slow to answer the first reservation
    user = "u-acancel"
    BudgetRepository().put_budget(
        user, Budget(limit_nanos=usd_to_nanos(Decimal("10")), action=BudgetAction.BLOCK, strict=True)
    )
    put_tag_budget(user, "1.00")
    reserving, answer = threading.Event(), threading.Event()

    class Slow(BudgetRepository):
        def reserve(self, *args: Any, **kwargs: Any) -> Reservation:
            taken = super().reserve(*args, **kwargs)
            reserving.set()
            answer.wait(10)
            return taken

    api, sink = plain(), Sink()
    provider = BudgetedProvider(anthropic(api, sink, user), guard=BudgetGuard(Slow()))

    async def main() -> None:
        async def call() -> None:
            with llmtally.attribution(tags={"customer": "c-42"}):
                await provider.agenerate("q", max_tokens=500)

        # When the caller's task is cancelled while its holds are being taken
        task = asyncio.create_task(call())
        await asyncio.to_thread(reserving.wait, 10)
        task.cancel()
        answer.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(500):  # until the worker thread has reserved and the holds are given back
            held = [(await asyncio.to_thread(ledger, user, tag)).holds for tag in (None, C42)]
            if not any(held):
                return
            await asyncio.sleep(0.01)

    asyncio.run(main())
    # Then no request, no event, and nothing held on either ledger
    assert (api.requests, sink.events) == ([], [])
    for tag in (None, C42):
        assert (ledger(user, tag).outstanding_nanos, dict(ledger(user, tag).holds)) == (0, {})

"""Tag budgets enforced on native clients (`client_for_user`) on moto: a call made under
`llmtally.attribution(tags={"customer": "c-42"})`, or by a client tagged c-42, is refused before
the request once c-42's budget is spent with action block (switch acts as block on a native
client); other customers' calls and notify budgets go through; sync and async."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

import llmtally
from llmtally.budgets import Budget, BudgetAction, BudgetExceededError, SwitchTarget, TagScope
from llmtally.events import Provider
from llmtally.money import usd_to_nanos
from llmtally.pricing import PriceBook
from llmtally.providers import LLMProviderFactory, RetryPolicy, SecretKeyStore, TrackedProvider, client_for_user
from llmtally.providers.budget import BudgetedProvider, BudgetGuard
from llmtally.repositories.budgets import BudgetRepository
from tests.integration import test_native_clients
from tests.integration.test_budgets import Sink, anthropic
from tests.integration.test_native_clients import MESSAGES, anthropic_client
from tests.unit.providers.conftest import ANTHROPIC_KEY, MockAPI, fixture_json, json_reply

pytestmark = pytest.mark.integration

stored = test_native_clients.stored
C42 = TagScope(key="customer", value="c-42")


def put_tag_budget(user_id: str, usd: str, spent: str, tag: TagScope = C42, **options: Any) -> None:
    budget = Budget(limit_nanos=usd_to_nanos(Decimal(usd)), **options)
    repository = BudgetRepository()
    repository.put_budget(user_id, budget, tag=tag)
    repository.seed_spent(user_id, budget.period(datetime.now(UTC)), usd_to_nanos(Decimal(spent)), tag=tag)


def replies(count: int) -> MockAPI:
    return MockAPI([json_reply(fixture_json("anthropic", "message_tool_use.json")) for _ in range(count)])


def test_a_call_under_a_spent_tag_budget_is_refused_before_the_request(stored: str) -> None:
    # Given c-42's $1 budget spent (block), and a native client for the user
    put_tag_budget(stored, "1.00", "1.00", action=BudgetAction.BLOCK)
    api, sink = replies(2), Sink()
    client = anthropic_client(api, sink, stored)
    # When a call is made for customer c-42
    with llmtally.attribution(tags={"customer": "c-42"}), pytest.raises(BudgetExceededError) as refused:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    # Then no request reached the provider and the refusal names the tag budget
    assert api.requests == []
    assert "customer=c-42 budget of $1" in str(refused.value)
    assert sink.events == []
    # When another customer calls, and an untagged call is made: both go through
    with llmtally.attribution(tags={"customer": "c-7"}):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    assert len(api.requests) == 2
    assert [e.tags for e in sink.events] == [{"customer": "c-7"}, {}]


def test_a_client_tagged_for_the_customer_is_refused_and_switch_acts_as_block(stored: str) -> None:
    # Given c-42's budget spent with action switch (a native client cannot switch)
    put_tag_budget(
        stored,
        "1.00",
        "1.50",
        action=BudgetAction.SWITCH,
        switch_to=SwitchTarget(provider=Provider.ANTHROPIC, model="claude-haiku-4-5-20251001"),
    )
    api, sink = replies(1), Sink()
    client = anthropic_client(api, sink, stored, tags={"customer": "c-42"})
    # When the client's own tag names c-42: refused
    with pytest.raises(BudgetExceededError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    # And an attribution for another customer wins over the client's tag
    with llmtally.attribution(tags={"customer": "c-7"}):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    assert len(api.requests) == 1


def test_a_notify_tag_budget_lets_calls_through(stored: str) -> None:
    put_tag_budget(stored, "1.00", "3.00", action=BudgetAction.NOTIFY)
    api, sink = replies(1), Sink()
    client = anthropic_client(api, sink, stored)
    with llmtally.attribution(tags={"customer": "c-42"}):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    assert len(api.requests) == 1


def test_an_async_call_under_the_attribution_is_refused_too(stored: str) -> None:
    # Given c-42's budget spent (block), and an async native client
    put_tag_budget(stored, "1.00", "1.00", action=BudgetAction.BLOCK)
    api, sink = replies(1), Sink()
    client = client_for_user(
        stored,
        "anthropic",
        asynchronous=True,
        publisher=sink,
        preferences={"trackUsage": True},
        key_store=SecretKeyStore(),
        budget_guard=BudgetGuard(),
        price_book=PriceBook(),
        http_client=api.aclient(),
    )

    async def call(customer: str) -> None:
        with llmtally.attribution(tags={"customer": customer}):
            await client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)

    # When c-42 calls: refused (the attribution is read on the caller's side, not in a worker thread)
    with pytest.raises(BudgetExceededError):
        asyncio.run(call("c-42"))
    # And c-7 goes through
    asyncio.run(call("c-7"))
    assert len(api.requests) == 1


# -- llmtally's providers (provider_for_user's BudgetedProvider around a TrackedProvider) ----------


def plain(count: int) -> MockAPI:
    return MockAPI([json_reply(fixture_json("anthropic", "message_plain.json")) for _ in range(count)])


def test_a_tracked_providers_events_carry_the_attributions_tags(stored: str) -> None:
    # Given a tracked provider (llmtally's adapter)
    api, sink = plain(2), Sink()
    provider = anthropic(api, sink, stored)
    # When one call is made under an attribution with tags and one without
    with llmtally.attribution(tags={"customer": "c-42", "feature": "chat"}):
        provider.generate("q")
    provider.generate("q")
    # Then the first event carries the tags (so breakdowns and tag budgets count it), the second none
    assert [e.tags for e in sink.events] == [{"customer": "c-42", "feature": "chat"}, {}]


def test_a_budgeted_provider_blocks_or_switches_calls_under_a_spent_tag_budget(stored: str) -> None:
    # Given c-42's budget spent with block, and feature=search's spent with switch to Haiku
    put_tag_budget(stored, "1.00", "1.00", action=BudgetAction.BLOCK)
    haiku = SwitchTarget(provider=Provider.ANTHROPIC, model="claude-haiku-4-5-20251001")
    search = TagScope(key="feature", value="search")
    put_tag_budget(stored, "1.00", "2.00", tag=search, action=BudgetAction.SWITCH, switch_to=haiku)
    api, sink = plain(2), Sink()
    provider = BudgetedProvider(anthropic(api, sink, stored), guard=BudgetGuard())
    # When c-42 calls: refused before the request
    with llmtally.attribution(tags={"customer": "c-42"}), pytest.raises(BudgetExceededError, match="customer=c-42"):
        provider.generate("q")
    assert api.requests == []
    # When a search call is made: it goes to the cheaper model, and its event says so
    with llmtally.attribution(tags={"feature": "search", "customer": "c-7"}):
        provider.generate("q")
    # And an untagged call goes as configured
    provider.generate("q")
    assert [api.body(i)["model"] for i in range(2)] == ["claude-haiku-4-5-20251001", "claude-sonnet-4-6"]
    assert (provider.blocked_calls, provider.switched_calls) == (1, 1)
    assert [e.tags for e in sink.events] == [{"feature": "search", "customer": "c-7"}, {}]


def test_an_async_budgeted_call_under_a_spent_tag_budget_is_refused(stored: str) -> None:
    put_tag_budget(stored, "1.00", "1.00", action=BudgetAction.BLOCK)
    api, sink = plain(1), Sink()
    inner = LLMProviderFactory.create(
        "anthropic",
        api_key=ANTHROPIC_KEY,
        model="claude-sonnet-4-6",
        **api.clients(),
        price_book=PriceBook(),
        retry=RetryPolicy(max_attempts=1),
    )
    provider = BudgetedProvider(TrackedProvider(inner, sink, user_id=stored), guard=BudgetGuard())

    async def call(customer: str) -> None:
        with llmtally.attribution(tags={"customer": customer}):
            await provider.agenerate("q")

    with pytest.raises(BudgetExceededError):
        asyncio.run(call("c-42"))
    asyncio.run(call("c-7"))
    assert len(api.requests) == 1

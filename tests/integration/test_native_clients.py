"""`client_for_user` on moto: the native SDK client on the user's stored key, metered, attributed, budgeted.

The key is stored in Secrets Manager (moto server), the budget and its ledger in DynamoDB; the SDKs
are the real ones answered at their HTTP transport (httpx2.MockTransport) with provider payloads.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anthropic
import pytest
from pydantic import SecretStr

from llmtally.budgets import STRICT_PERIOD_METADATA, Budget, BudgetAction, BudgetExceededError, SwitchTarget
from llmtally.events import Provider, Status, UsageSource
from llmtally.money import usd_to_nanos
from llmtally.pricing import PriceBook
from llmtally.providers import SecretKeyStore, client_for_user
from llmtally.providers.budget import BudgetGuard
from llmtally.providers.native import guard_of
from llmtally.repositories.budgets import BudgetRepository
from llmtally.repositories.secrets import SecretsRepository
from llmtally.resources import ResourceNames
from llmtally.tables import create_tables
from tests.conftest import MotoServer
from tests.integration.test_budgets import Sink
from tests.unit.providers.conftest import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    MockAPI,
    error_reply,
    fixture_json,
    fixture_text,
    json_reply,
)

pytestmark = pytest.mark.integration

TOOLS = [
    {
        "name": "get_weather",
        "description": "The current weather in a city",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    }
]
MESSAGES = [{"role": "user", "content": "How many errors today?"}]
#: message_tool_use.json on claude-sonnet-4-6: 472 in + 1,024 cache read + 89 out at $3 / $0.30 / $15.
TOOL_CALL_COST = Decimal("0.0030582")


@pytest.fixture
def stored(moto: MotoServer) -> str:
    """Tables, and the user's Anthropic and OpenAI keys in Secrets Manager."""
    create_tables(moto.client("dynamodb"), ResourceNames())
    secrets = SecretsRepository()
    secrets.put_key("u-native", Provider.ANTHROPIC, SecretStr(ANTHROPIC_KEY))
    secrets.put_key("u-native", Provider.OPENAI, SecretStr(OPENAI_KEY))
    return "u-native"


def put_budget(user_id: str, usd: str, **options: Any) -> Budget:
    budget = Budget(limit_nanos=usd_to_nanos(Decimal(usd)), **options)
    BudgetRepository().put_budget(user_id, budget)
    return budget


def spend(user_id: str, budget: Budget, usd: str) -> None:
    BudgetRepository().seed_spent(user_id, budget.period(datetime.now(UTC)), usd_to_nanos(Decimal(usd)))


def anthropic_client(api: MockAPI, sink: Sink, user_id: str, **options: Any) -> Any:
    return client_for_user(
        user_id,
        "anthropic",
        publisher=sink,
        preferences={"trackUsage": True},
        key_store=SecretKeyStore(),
        budget_guard=BudgetGuard(),
        price_book=PriceBook(),
        http_client=api.client(),
        **options,
    )


def test_a_native_client_uses_the_stored_key_and_meters_a_tool_call_for_the_user(stored: str) -> None:
    # Given the user's stored Anthropic key and no budget
    api, sink = MockAPI([json_reply(fixture_json("anthropic", "message_tool_use.json"))]), Sink()
    client = anthropic_client(api, sink, stored, tags={"feature": "triage"})
    # When the service makes a tool call with the native SDK
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=512, tools=TOOLS, messages=MESSAGES)
    # Then the SDK's own answer reaches it (the tool call), sent with the user's key
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert api.requests[0].headers["authorization"] == f"Bearer {ANTHROPIC_KEY}"
    assert api.body()["tools"] == TOOLS
    # and one event, attributed to the user, with the exact ledger
    (event,) = sink.events
    assert (event.user_id, event.provider, event.model, event.status) == (
        stored,
        Provider.ANTHROPIC,
        "claude-sonnet-4-6",
        Status.OK,
    )
    assert (event.input_tokens, event.cache_read_tokens, event.output_tokens) == (472, 1024, 89)
    assert event.tags == {"feature": "triage"}
    assert ANTHROPIC_KEY not in repr(client)


def test_block_refuses_before_the_request_and_switch_acts_as_block(stored: str) -> None:
    for action, extra in (
        (BudgetAction.BLOCK, {}),
        (BudgetAction.SWITCH, {"switch_to": SwitchTarget(provider=Provider.OPENAI, model="gpt-5-mini")}),
    ):
        # Given a spent budget whose action is block, then switch
        budget = put_budget(stored, "0.01", action=action, **extra)
        spend(stored, budget, "0.02")
        api, sink = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))]), Sink()
        client = anthropic_client(api, sink, stored)
        # When called, Then refused without a request and without an event
        with pytest.raises(BudgetExceededError, match="is used up") as refused:
            client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
        assert (api.requests, sink.events) == ([], [])
        if action is BudgetAction.SWITCH:
            assert "cannot switch provider" in str(refused.value)
        guard = guard_of(client)
        assert guard is not None
        assert guard.blocked_calls == 1


def test_notify_lets_the_call_through(stored: str) -> None:
    budget = put_budget(stored, "0.01", action=BudgetAction.NOTIFY)
    spend(stored, budget, "5")
    api, sink = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))]), Sink()
    anthropic_client(api, sink, stored).messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    assert len(api.requests) == len(sink.events) == 1


def test_strict_reserves_the_requests_worst_case_and_settles_to_the_real_cost(stored: str) -> None:
    # Given a strict $1 budget
    budget = put_budget(stored, "1.00", action=BudgetAction.BLOCK, strict=True)
    period = budget.period(datetime.now(UTC)).key
    holds: list[int] = []

    def seen_holds(request: Any) -> Any:
        holds.append(len(BudgetRepository().get_ledger(stored, period).holds))
        return json_reply(fixture_json("anthropic", "message_tool_use.json"))

    api, sink = MockAPI([seen_holds]), Sink()
    client = anthropic_client(api, sink, stored)
    # When a tool call is made
    client.messages.create(model="claude-sonnet-4-6", max_tokens=512, tools=TOOLS, messages=MESSAGES)
    # Then it was reserved while it ran, and settled to its real cost (outstanding until aggregated)
    assert holds == [1]
    ledger = BudgetRepository().get_ledger(stored, period)
    assert (ledger.outstanding_nanos, ledger.holds) == (usd_to_nanos(TOOL_CALL_COST), {})
    (event,) = sink.events
    assert event.metadata[STRICT_PERIOD_METADATA] == period
    assert event.reported_cost_usd == TOOL_CALL_COST  # what the aggregator releases from outstanding


def test_strict_refuses_a_request_without_an_output_limit_or_beyond_the_room_left(stored: str) -> None:
    put_budget(stored, "0.01", action=BudgetAction.BLOCK, strict=True)
    api, sink = MockAPI([json_reply(fixture_json("openai", "responses_plain.json"))]), Sink()
    client = client_for_user(
        stored,
        "openai",
        publisher=sink,
        preferences={},
        key_store=SecretKeyStore(),
        budget_guard=BudgetGuard(),
        http_client=api.client(),
    )
    with pytest.raises(BudgetExceededError, match="no output limit"):
        client.responses.create(model="gpt-5-codex", input="q")
    with pytest.raises(BudgetExceededError, match="is used up"):
        client.responses.create(model="gpt-5-codex", input="q", max_output_tokens=100_000)
    assert (api.requests, sink.events) == ([], [])
    client.responses.create(model="gpt-5-codex", input="q", max_output_tokens=200)
    assert len(api.requests) == len(sink.events) == 1


def test_an_async_stream_cancelled_mid_way_settles_and_publishes_one_missing_event(stored: str) -> None:
    # Given a strict budget and an async Responses stream the service's task is cancelled during
    budget = put_budget(stored, "1.00", action=BudgetAction.BLOCK, strict=True)
    period = budget.period(datetime.now(UTC)).key
    sink = Sink()
    first_chunk = asyncio.Event()

    async def main() -> None:
        gate = asyncio.Event()

        async def slow_tail(request: Any) -> Any:
            import httpx2

            text = fixture_text("openai", "responses_stream.sse")
            head, _, tail = text.partition("event: response.output_text.delta")

            async def body() -> Any:
                yield head.encode()
                yield ("event: response.output_text.delta" + tail.split("\n\n", 1)[0] + "\n\n").encode()
                await gate.wait()  # never set: the task is cancelled here
                yield b""

            return httpx2.Response(200, content=body(), headers={"content-type": "text/event-stream"})

        api = MockAPI([slow_tail])
        client = client_for_user(
            stored,
            "openai",
            asynchronous=True,
            publisher=sink,
            preferences={},
            key_store=SecretKeyStore(),
            budget_guard=BudgetGuard(),
            http_client=api.aclient(),
        )

        async def consume() -> None:
            stream = await client.responses.create(model="gpt-5", input="hi", max_output_tokens=300, stream=True)
            async for event in stream:
                if event.type == "response.output_text.delta":
                    first_chunk.set()

        task = asyncio.create_task(consume())
        await first_chunk.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        guard = guard_of(client)
        assert guard is not None
        await guard.settled()

    asyncio.run(main())
    # Then one event, cancelled, usage missing, no reported cost; and the hold is released
    (event,) = sink.events
    assert (event.status, event.error_type, event.usage_source) == (Status.ERROR, "cancelled", UsageSource.MISSING)
    assert event.reported_cost_usd is None
    ledger = BudgetRepository().get_ledger(stored, period)
    assert (ledger.outstanding_nanos, ledger.holds) == (0, {})


def test_the_key_never_appears_in_a_repr_a_log_an_exception_or_an_event(
    stored: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    put_budget(stored, "1.00", action=BudgetAction.BLOCK, strict=True)
    spec = fixture_json("anthropic", "errors.json")["authentication"]
    api, sink = MockAPI([error_reply(spec), json_reply(fixture_json("anthropic", "message_plain.json"))]), Sink()
    client = anthropic_client(api, sink, stored)
    seen: list[str] = [repr(client), repr(guard_of(client))]
    with pytest.raises(anthropic.AuthenticationError) as failed:  # the SDK's own error, unchanged
        client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    seen += [str(failed.value), repr(failed.value)]
    client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    seen += [e.model_dump_json() for e in sink.events]
    seen += [caplog.text]
    assert len(sink.events) == 2
    for text in seen:
        assert ANTHROPIC_KEY not in text
        assert ANTHROPIC_KEY[-12:] not in text

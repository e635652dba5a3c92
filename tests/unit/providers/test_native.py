"""Native clients: the instrumentation's guard hook contract, and how a strict reservation sizes a native request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import anthropic
import pytest
from google.genai import types
from hypothesis import given, settings
from hypothesis import strategies as st

from llmtally.budgets import BudgetExceededError
from llmtally.events import Provider, UsageSource
from llmtally.instrumentation import instrument, stats, uninstrument
from llmtally.instrumentation._core import Amendment, Outcome
from llmtally.providers import client_for_user
from llmtally.providers.native import REFERENCED_MEDIA_TOKENS, input_size, output_limit
from tests.unit.providers.conftest import ANTHROPIC_KEY, MockAPI, fixture_json, json_reply
from tests.unit.providers.test_tracking import RecordingSink

MESSAGES = [{"role": "user", "content": "q"}]


class Refused(Exception):
    pass


class ScriptedGuard:
    """A guard whose `before` does what the test says, recording what the hook hands it."""

    refusals: tuple[type[BaseException], ...] = (Refused,)

    def __init__(self, before: BaseException | None = None, after: BaseException | None = None) -> None:
        self.raise_before = before
        self.raise_after = after
        self.seen: list[tuple[str, Any]] = []

    def before(self, provider: Provider, model: str | None, kwargs: Mapping[str, Any]) -> Any:
        self.seen.append(("before", (provider, model, kwargs["max_tokens"])))
        if self.raise_before is not None:
            raise self.raise_before
        return "ticket-1"

    async def abefore(self, provider: Provider, model: str | None, kwargs: Mapping[str, Any]) -> Any:
        return self.before(provider, model, kwargs)

    def after(self, ticket: Any, outcome: Outcome, model: str | None) -> Amendment | None:
        self.seen.append(("after", (ticket, outcome.usage_source, model)))
        if self.raise_after is not None:
            raise self.raise_after
        return Amendment(metadata={"guarded": True})


def metered(guard: ScriptedGuard, sink: RecordingSink, *, asynchronous: bool = False) -> tuple[Any, MockAPI]:
    api = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))])
    if asynchronous:
        client: Any = anthropic.AsyncAnthropic(api_key=ANTHROPIC_KEY, http_client=api.aclient(), max_retries=0)
    else:
        client = anthropic.Anthropic(api_key=ANTHROPIC_KEY, http_client=api.client(), max_retries=0)
    return instrument(client, publisher=sink, user_id="u-guard", guard=guard), api


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_the_guard_runs_before_the_request_and_amends_the_event(asynchronous: bool) -> None:
    guard, sink = ScriptedGuard(), RecordingSink()
    client, api = metered(guard, sink, asynchronous=asynchronous)
    call = client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    if asynchronous:
        asyncio.run(call)
    assert guard.seen == [
        ("before", (Provider.ANTHROPIC, "claude-sonnet-4-6", 64)),
        ("after", ("ticket-1", UsageSource.REPORTED, "claude-sonnet-4-6")),
    ]
    (event,) = sink.events
    assert event.metadata["guarded"] is True
    assert len(api.requests) == 1
    uninstrument(client)


def test_a_declared_refusal_reaches_the_caller_before_any_request_and_publishes_nothing() -> None:
    guard, sink = ScriptedGuard(before=Refused("over budget")), RecordingSink()
    client, api = metered(guard, sink)
    with pytest.raises(Refused, match="over budget"):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    assert (api.requests, sink.events) == ([], [])
    uninstrument(client)


def test_any_other_guard_failure_lets_the_call_through_and_is_counted() -> None:
    failures = stats().failures
    guard, sink = ScriptedGuard(before=RuntimeError("table gone"), after=RuntimeError("again")), RecordingSink()
    client, api = metered(guard, sink)
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    assert message.usage.output_tokens == 500
    assert len(api.requests) == len(sink.events) == 1
    assert stats().failures == failures + 2
    uninstrument(client)


def test_an_async_bedrock_native_client_is_refused_with_the_way_out() -> None:
    with pytest.raises(ValueError, match="provider_for_user"):
        client_for_user("u-1", "bedrock", asynchronous=True)


# -- sizing a native request for a strict reservation ---------------------------------------------------


def test_the_output_limit_is_found_wherever_each_sdk_puts_it() -> None:
    assert output_limit(Provider.ANTHROPIC, {"max_tokens": 512}) == 512
    assert output_limit(Provider.OPENAI, {"max_output_tokens": 300}) == 300
    assert output_limit(Provider.OPENAI, {"max_completion_tokens": 200}) == 200
    assert output_limit(Provider.GOOGLE, {"config": types.GenerateContentConfig(max_output_tokens=99)}) == 99
    assert output_limit(Provider.GOOGLE, {"config": {"max_output_tokens": 98}}) == 98
    assert output_limit(Provider.BEDROCK, {"inferenceConfig": {"maxTokens": 77}}) == 77
    assert output_limit(Provider.BEDROCK, {"body": json.dumps({"max_tokens": 66, "messages": []})}) == 66
    assert output_limit(Provider.OPENAI, {"input": "q"}) is None
    assert output_limit(Provider.BEDROCK, {"body": b"not json"}) is None


def test_the_input_bound_counts_every_byte_sent_and_an_allowance_per_referenced_medium() -> None:
    inline = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 4000}}
    by_url = {"type": "input_image", "image_url": "https://example.com/chart.png"}
    data_url = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "B" * 100}}
    kwargs = {
        "model": "m",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "é" * 10}, inline, by_url, data_url]}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "raw": b"\x00" * 300,
    }
    text, media = input_size(kwargs)
    assert media == 1  # only the image referenced by URL: the others carry their bytes
    assert len(text.encode()) > 4000 + 100 + 300 + 20  # every inline byte is counted
    document = json.loads(text)
    assert set(document) == {"messages", "tools", "raw"}  # model, output limit and stream are not input
    assert REFERENCED_MEDIA_TOKENS >= 1600  # above one high-detail image's bill


def test_a_strict_request_without_an_output_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from llmtally.budgets import Budget, BudgetAction, BudgetStatus
    from llmtally.providers.budget import BudgetGuard
    from llmtally.providers.native import BudgetClientGuard

    budget = Budget(limit_nanos=10**9, strict=True, action=BudgetAction.BLOCK)
    status = BudgetStatus(budget, budget.period(datetime.now(UTC)), 0, 0)
    guard = BudgetClientGuard("u-1", BudgetGuard())
    monkeypatch.setattr(guard.guard, "status", lambda user_id: status)
    with pytest.raises(BudgetExceededError, match="no output limit"):
        guard.before(Provider.OPENAI, "gpt-5", {"input": "q"})
    with pytest.raises(BudgetExceededError, match="no price is known"):
        guard.before(Provider.OPENAI, "gpt-unknown-model", {"input": "q", "max_output_tokens": 5})
    assert guard.blocked_calls == 2


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from([("anthropic", "claude-sonnet-4-6"), ("openai", "gpt-5"), ("google", "gemini-2.5-flash")]),
    text=st.text(min_size=1, max_size=400),
    limit=st.integers(min_value=1, max_value=4000),
    split=st.tuples(*(st.floats(min_value=0, max_value=1) for _ in range(4))),
)
def test_a_strict_reservation_covers_any_bill_the_request_can_produce(
    model: tuple[str, str], text: str, limit: int, split: tuple[float, float, float, float]
) -> None:
    # Given a native request, and any bill within its bounds: at most one input token per byte of the
    # request's input (shared between plain input, cache reads and cache writes) and at most its
    # output limit (shared between output and reasoning)
    from llmtally.events import TokenCounts
    from llmtally.pricing import PriceBook
    from llmtally.providers.budget import worst_case_nanos

    provider, name = model
    kwargs = {"messages": [{"role": "user", "content": text}], "max_tokens": limit}
    document, media = input_size(kwargs)
    input_budget = len(document.encode())
    read = int(input_budget * split[0])
    write = int((input_budget - read) * split[1])
    plain = input_budget - read - write
    reasoning = int(limit * split[2]) if provider != "anthropic" else 0
    output = int((limit - reasoning) * split[3])
    tokens = TokenCounts(
        input_tokens=plain,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=output,
        reasoning_tokens=reasoning,
    )
    # When its worst case is reserved, Then the reservation covers the bill
    worst = worst_case_nanos(
        Provider(provider),
        name,
        prompt=document,
        messages=None,
        system=None,
        max_tokens=limit,
        extra_input_tokens=media * REFERENCED_MEDIA_TOKENS,
    )
    assert PriceBook().price(Provider(provider), name, tokens).cost_nanos <= worst

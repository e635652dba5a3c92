"""An async service on moto: a plain ASGI app (FastAPI-style routes) serving concurrent requests.

`POST /ask` builds the user's provider with `aprovider_for_user` and calls `agenerate`;
`POST /tools` builds the user's native Anthropic client with `aclient_for_user` and makes a tool
call. Both obey one strict budget on the same ledger. The app is driven by httpx2's ASGITransport
with 200 concurrent requests per route, against the real SDKs answered at their HTTP transport.
Also here: the async forms of the budget actions (block, switch to another provider, notify), a
strict stream settled when it ends, is closed or its task is cancelled, and the response cache
through `agenerate`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from llmtally.budgets import STRICT_PERIOD_METADATA, Budget, BudgetAction, BudgetExceededError, SwitchTarget
from llmtally.events import Provider, Status, UsageSource
from llmtally.money import usd_to_nanos
from llmtally.pricing import PriceBook
from llmtally.providers import SecretKeyStore, aclient_for_user, aprovider_for_user
from llmtally.providers.budget import BudgetedProvider, BudgetGuard
from llmtally.providers.native import guard_of
from llmtally.repositories.budgets import BudgetRepository
from llmtally.repositories.response_cache import ResponseCacheRepository
from llmtally.repositories.secrets import SecretsRepository
from llmtally.resources import ResourceNames
from llmtally.response_cache import ResponseCache
from llmtally.tables import create_tables
from tests.conftest import MotoServer
from tests.integration.test_budgets import Sink
from tests.unit.providers.conftest import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    MockAPI,
    fixture_json,
    fixture_text,
    json_reply,
    sse_reply,
)

pytestmark = pytest.mark.integration

USER = "u-service"
PREFERENCES = {"defaultProvider": "anthropic", "queryModel": "claude-sonnet-4-6", "temperature": 0.2}
TOOLS = [
    {
        "name": "get_weather",
        "description": "The current weather in a city",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    }
]
PROMPT = "x" * 1500  # message_plain.json bills 1,500 input tokens: a prompt of at least as many bytes
#: The service's 400 requests, in the order they are sent.
PATHS = ["/ask", "/tools"] * 200

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def answering(body: Any) -> Callable[[httpx2.Request], Awaitable[httpx2.Response]]:
    """An upstream that answers `body` after yielding to the loop (so requests really overlap)."""

    async def reply(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(0.001)
        return httpx2.Response(200, json=body, headers={"request-id": "req_async"})

    return reply


class Service:
    """The app under test: two routes, the library's async entry points, budget refusals as 429."""

    def __init__(self, sink: Sink, ask_api: MockAPI, tools_api: MockAPI) -> None:
        self.sink = sink
        self.ask_api = ask_api
        self.tools_api = tools_api
        self.key_store = SecretKeyStore()
        self.budget_guard = BudgetGuard()
        self.price_book = PriceBook()
        self.clients: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        try:
            if scope["path"] == "/ask":
                answer = await self.ask(request)
            else:
                answer = await self.tools(request)
            status = 200
        except BudgetExceededError as exc:
            status, answer = 429, {"error": str(exc)}
        payload = json.dumps(answer).encode()
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": payload})

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        provider = await aprovider_for_user(
            request["user"],
            preferences=PREFERENCES,
            key_store=self.key_store,
            publisher=self.sink,
            budget_guard=self.budget_guard,
            http_client=self.ask_api.client(),
            async_http_client=self.ask_api.aclient(),
            price_book=self.price_book,
        )
        assert isinstance(provider, BudgetedProvider)
        response = await provider.agenerate(request["prompt"], max_tokens=500)
        return {"content": response.content, "cost_nanos": response.usage.cost_nanos}

    async def tools(self, request: dict[str, Any]) -> dict[str, Any]:
        client = await aclient_for_user(
            request["user"],
            "anthropic",
            preferences=PREFERENCES,
            key_store=self.key_store,
            publisher=self.sink,
            budget_guard=self.budget_guard,
            price_book=self.price_book,
            http_client=self.tools_api.aclient(),
        )
        self.clients.append(client)
        message = await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=512,
            tools=TOOLS,
            messages=[{"role": "user", "content": request["prompt"]}],
        )
        tool = next(block for block in message.content if block.type == "tool_use")
        return {"stop_reason": message.stop_reason, "tool": tool.name}


@pytest.fixture
def stored(moto: MotoServer) -> str:
    create_tables(moto.client("dynamodb"), ResourceNames())
    SecretsRepository().put_key(USER, Provider.ANTHROPIC, SecretStr(ANTHROPIC_KEY))
    SecretsRepository().put_key(USER, Provider.OPENAI, SecretStr(OPENAI_KEY))
    return USER


def put_budget(usd: str, **options: Any) -> Budget:
    budget = Budget(limit_nanos=usd_to_nanos(Decimal(usd)), **options)
    BudgetRepository().put_budget(USER, budget)
    return budget


def test_two_hundred_concurrent_requests_per_route_never_overshoot_a_strict_budget(
    stored: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a strict $0.25 budget, and calls costing $0.012 (/ask) and $0.0030582 (/tools): 200 of each
    # would cost $3, so most must be refused
    caplog.set_level(logging.INFO)
    budget = put_budget("0.25", action=BudgetAction.BLOCK, strict=True)
    period = budget.period(datetime.now(UTC)).key
    sink = Sink()
    ask_api = MockAPI([answering(fixture_json("anthropic", "message_plain.json"))])
    tools_api = MockAPI([answering(fixture_json("anthropic", "message_tool_use.json"))])
    service = Service(sink, ask_api, tools_api)

    async def main() -> list[httpx2.Response]:
        # The storage calls the library makes off the loop go to one worker thread: the moto server
        # is not thread-safe for concurrent updates of one item (it answers 500 mid-update and
        # botocore's retry then applies a reservation twice), where DynamoDB serializes them. The
        # 400 requests, their budget decisions and their provider calls still all overlap.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        transport = httpx2.ASGITransport(app=service)
        async with httpx2.AsyncClient(transport=transport, base_url="http://service") as http:

            def call(path: str) -> Awaitable[httpx2.Response]:
                return http.post(path, json={"user": USER, "prompt": PROMPT if path == "/ask" else "errors today?"})

            # One /ask first, alone: which of 400 racing requests reserve first is the scheduler's
            # choice, and 200 /tools worst cases can hold the whole budget (then every /ask is refused,
            # rightly); the first one makes sure the /ask route is served at least once.
            first = await call(PATHS[0])
            responses = [first, *await asyncio.gather(*(call(path) for path in PATHS[1:]))]
        for client in service.clients:
            guard = guard_of(client)
            assert guard is not None
            await guard.settled()
        return list(responses)

    # When the 400 requests arrive at once
    responses = asyncio.run(main())

    # Then every request is answered (200) or refused by the budget (429), never anything else
    ask = [r for path, r in zip(PATHS, responses, strict=True) if path == "/ask"]
    tools = [r for path, r in zip(PATHS, responses, strict=True) if path == "/tools"]
    assert {r.status_code for r in responses} == {200, 429}
    ok_ask = [r.json() for r in ask if r.status_code == 200]
    ok_tools = [r for r in tools if r.status_code == 200]
    assert ok_ask
    assert ok_tools
    assert {r.text for r in ok_tools} == {json.dumps({"stop_reason": "tool_use", "tool": "get_weather"})}
    # each answered request made one provider request and published exactly one event; refusals none
    assert len(ask_api.requests) == len(ok_ask)
    assert len(tools_api.requests) == len(ok_tools)
    assert len(sink.events) == len(ok_ask) + len(ok_tools)
    assert [(e.status, e.error_type) for e in sink.events if e.status is not Status.OK] == []
    assert {e.user_id for e in sink.events} == {USER}
    assert {e.metadata[STRICT_PERIOD_METADATA] for e in sink.events} == {period}
    # the money committed never passes the limit, and the ledger holds exactly it, no hold left
    tool_cost = usd_to_nanos(Decimal("0.0030582"))
    spent = sum(a["cost_nanos"] for a in ok_ask) + tool_cost * len(ok_tools)
    assert spent == sum(usd_to_nanos(e.reported_cost_usd or Decimal(0)) for e in sink.events)
    assert spent <= budget.limit_nanos
    ledger = BudgetRepository().get_ledger(USER, period)
    assert (ledger.outstanding_nanos, ledger.holds) == (spent, {})
    # and the keys appear in no response, event or log line
    seen = [r.text for r in responses] + [e.model_dump_json() for e in sink.events] + [caplog.text]
    for text in seen:
        assert ANTHROPIC_KEY not in text
        assert OPENAI_KEY not in text


# -- the async budget actions, as the sync ones (tests/integration/test_budgets.py) -------------------


def user_provider(api: MockAPI, sink: Sink, preferences: dict[str, Any] = PREFERENCES, **options: Any) -> Any:
    return aprovider_for_user(
        USER,
        preferences=preferences,
        key_store=SecretKeyStore(),
        publisher=sink,
        budget_guard=BudgetGuard(),
        http_client=api.client(),
        async_http_client=api.aclient(),
        price_book=PriceBook(),
        **options,
    )


def spent(budget: Budget, usd: str) -> None:
    BudgetRepository().seed_spent(USER, budget.period(datetime.now(UTC)), usd_to_nanos(Decimal(usd)))


def test_block_refuses_switch_goes_to_the_other_provider_notify_lets_through(stored: str) -> None:
    async def main() -> None:
        # block: refused before any request, no event
        budget = put_budget("0.01", action=BudgetAction.BLOCK)
        spent(budget, "0.02")
        api, sink = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))]), Sink()
        provider = await user_provider(api, sink)
        with pytest.raises(BudgetExceededError, match="is used up"):
            await provider.agenerate("q")
        assert (api.requests, sink.events, provider.blocked_calls) == ([], [], 1)
        # switch to another provider: built from the user's OpenAI key, metered as an OpenAI call
        put_budget(
            "0.01", action=BudgetAction.SWITCH, switch_to=SwitchTarget(provider=Provider.OPENAI, model="gpt-5-mini")
        )
        api, sink = MockAPI([json_reply(fixture_json("openai", "chat_plain.json"))]), Sink()
        provider = await user_provider(api, sink)
        response = await provider.agenerate("q")
        (request,) = api.requests
        assert (request.url.host, request.headers["authorization"]) == ("api.openai.com", f"Bearer {OPENAI_KEY}")
        assert api.body()["model"] == "gpt-5-mini"
        (event,) = sink.events
        assert (event.provider, event.model, provider.switched_calls) == (Provider.OPENAI, response.model, 1)
        # notify: through
        put_budget("0.01", action=BudgetAction.NOTIFY)
        api, sink = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))]), Sink()
        await (await user_provider(api, sink)).agenerate("q")
        assert len(api.requests) == len(sink.events) == 1

    asyncio.run(main())


def test_a_strict_async_stream_is_settled_when_it_ends_is_closed_or_its_task_is_cancelled(stored: str) -> None:
    budget = put_budget("0.10", action=BudgetAction.BLOCK, strict=True)
    period = budget.period(datetime.now(UTC)).key
    repo = BudgetRepository()

    async def main() -> None:
        api, sink = MockAPI([sse_reply(fixture_text("anthropic", "stream_cache.sse"))]), Sink()
        provider = await user_provider(api, sink)
        # consumed to the end: the hold becomes the stream's real cost
        stream = provider.astream("hi", max_tokens=100)
        assert await anext(stream) == "Hello"
        assert len((await asyncio.to_thread(repo.get_ledger, USER, period)).holds) == 1
        async for _ in stream:
            pass
        assert stream.usage is not None
        cost = stream.usage.cost_nanos
        ledger = await asyncio.to_thread(repo.get_ledger, USER, period)
        assert (ledger.outstanding_nanos, ledger.holds) == (cost, {})
        # closed early (aclose): released, one cancelled event
        async with provider.astream("hi", max_tokens=100) as early:
            assert await anext(early) == "Hello"
        assert sink.events[-1].error_type == "cancelled"
        # its task cancelled while waiting for the next chunk: released, one cancelled event, usage missing
        gate = asyncio.Event()

        async def stalled(request: httpx2.Request) -> httpx2.Response:
            head, _, _ = fixture_text("anthropic", "stream_cache.sse").partition("event: content_block_delta")

            async def body() -> Any:
                yield head.encode()
                yield _first_delta().encode()
                await gate.wait()  # never set: the consuming task is cancelled while waiting here
                yield b""

            return httpx2.Response(200, content=body(), headers={"content-type": "text/event-stream"})

        api.replies[:] = [stalled]
        got_first = asyncio.Event()

        async def consume() -> None:
            async for _ in provider.astream("hi", max_tokens=100):
                got_first.set()

        task = asyncio.create_task(consume())
        await got_first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sink.events[-1].error_type == "cancelled"
        assert sink.events[-1].usage_source is UsageSource.MISSING
        assert len(sink.events) == 3
        ledger = await asyncio.to_thread(repo.get_ledger, USER, period)
        assert (ledger.outstanding_nanos, ledger.holds) == (cost, {})
        # no room for the worst case: refused on the first anext, before any request
        requests = len(api.requests)
        with pytest.raises(BudgetExceededError):
            await anext(provider.astream("hi", max_tokens=100_000))
        assert len(api.requests) == requests

    asyncio.run(main())


def _first_delta() -> str:
    """The first text delta event of stream_cache.sse (its SSE block)."""
    blocks = fixture_text("anthropic", "stream_cache.sse").split("\n\n")
    return next(b for b in blocks if '"text_delta"' in b) + "\n\n"


def test_agenerate_answers_a_repeated_deterministic_call_from_the_cache(stored: str) -> None:
    async def main() -> None:
        api, sink = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))]), Sink()
        cache = ResponseCache(ResponseCacheRepository())
        provider = await user_provider(
            api, sink, preferences={**PREFERENCES, "temperature": 0, "enableCaching": True}, response_cache=cache
        )
        first = await provider.agenerate("which hosts?")
        second = await provider.agenerate(messages=[{"role": "user", "content": "which hosts?"}])
        assert len(api.requests) == 1
        assert (first.cache_hit, second.cache_hit, second.content) == (False, True, first.content)
        assert (cache.stats.hits, cache.stats.stores) == (1, 1)
        assert [e.cache_hit for e in sink.events] == [False, True]

    asyncio.run(main())


def test_a_strict_agenerate_whose_task_is_cancelled_releases_its_hold_and_publishes_one_event(stored: str) -> None:
    # Given a strict budget and an upstream that never answers
    budget = put_budget("0.10", action=BudgetAction.BLOCK, strict=True)
    period = budget.period(datetime.now(UTC)).key

    async def main() -> Sink:
        sent = asyncio.Event()

        async def never(request: httpx2.Request) -> httpx2.Response:
            sent.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        api, sink = MockAPI([never]), Sink()
        provider = await user_provider(api, sink)
        # When the caller's task is cancelled while the request is in flight (its hold is on the ledger)
        task = asyncio.create_task(provider.agenerate("q", max_tokens=100))
        await sent.wait()
        assert len((await asyncio.to_thread(BudgetRepository().get_ledger, USER, period)).holds) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return sink

    sink = asyncio.run(main())
    # Then the hold is released (nothing known was billed) and one cancelled, usage-missing event is published
    ledger = BudgetRepository().get_ledger(USER, period)
    assert (ledger.outstanding_nanos, ledger.holds) == (0, {})
    (event,) = sink.events
    assert (event.error_type, event.usage_source) == ("cancelled", UsageSource.MISSING)
    assert event.metadata[STRICT_PERIOD_METADATA] == period

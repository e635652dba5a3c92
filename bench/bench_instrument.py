"""Instrumentation overhead: instrumented vs bare SDK calls on the same mocked transport, and event-loop lag.

    .venv/bin/python -m bench instrument

1. Per SDK and entry point (sync, async, stream), the median wall time of a call through a bare
   client and through an instrumented one, both on the same httpx2 MockTransport answering with
   the test fixtures: the overhead in µs and the ratio. The publisher is a real `UsagePublisher`
   in Lambda mode (publish only enqueues; nothing is sent), so publishing is measured as in a service.
2. Event-loop lag: 1,000 concurrent async calls (`asyncio.gather`) while a ticker task measures how
   late its 1 ms sleeps wake up (max and p99), bare vs instrumented.

Figures print; nothing is asserted (docs/BENCHMARKS.md records them).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai

import llmtally
from llmtally.publisher import UsagePublisher

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "providers"
CALLS = 400
CONCURRENT = 1_000


def _reply(path: str) -> Callable[[httpx2.Request], httpx2.Response]:
    data = (FIXTURES / path).read_bytes()
    kind = "text/event-stream" if path.endswith(".sse") else "application/json"
    return lambda _: httpx2.Response(200, content=data, headers={"content-type": kind})


def _publisher() -> UsagePublisher:
    return UsagePublisher.for_sqs("https://sqs.us-east-1.amazonaws.com/1/bench", client=object(), background=False)


def _clients(kind: str, path: str, is_async: bool) -> tuple[Any, Any]:
    def make() -> Any:
        transport = httpx2.MockTransport(_reply(path))
        http: Any = httpx2.AsyncClient(transport=transport) if is_async else httpx2.Client(transport=transport)
        if kind == "anthropic":
            cls: Any = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
            return cls(api_key="k", base_url="http://a.test", http_client=http, max_retries=0)
        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        return cls(api_key="k", base_url="http://o.test/v1", http_client=http, max_retries=0)

    bare, metered = make(), make()
    llmtally.instrument(metered, publisher=_publisher(), user_id="bench")
    return bare, metered


MSGS: Any = [{"role": "user", "content": "Hi"}]
CASES: list[tuple[str, str, str, Callable[[Any], Any]]] = [
    (
        "anthropic",
        "messages.create",
        "anthropic/message_cache.json",
        lambda c: c.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=MSGS),
    ),
    (
        "anthropic",
        "messages.create stream",
        "anthropic/stream_cache.sse",
        lambda c: c.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=MSGS, stream=True),
    ),
    (
        "openai",
        "chat.completions.create",
        "openai/chat_cached.json",
        lambda c: c.chat.completions.create(model="gpt-4o", messages=MSGS),
    ),
    (
        "openai",
        "chat.completions stream",
        "openai/stream_usage.sse",
        lambda c: c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True),
    ),
    (
        "openai",
        "responses.create",
        "openai/responses_reasoning.json",
        lambda c: c.responses.create(model="o4-mini", input="Hi"),
    ),
    (
        "openai",
        "responses stream",
        "openai/responses_stream.sse",
        lambda c: c.responses.create(model="gpt-5", input="Hi", stream=True),
    ),
]


def _sync_once(client: Any, call: Callable[[Any], Any], stream: bool) -> float:
    started = time.perf_counter()
    result = call(client)
    if stream:
        for _ in result:
            pass
    return time.perf_counter() - started


async def _async_once(client: Any, call: Callable[[Any], Any], stream: bool) -> float:
    started = time.perf_counter()
    result = await call(client)
    if stream:
        async for _ in result:
            pass
    return time.perf_counter() - started


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def overhead() -> None:
    print(
        f"{'sdk':10} {'entry point':28} {'mode':6} {'bare µs':>9} {'metered µs':>11} {'overhead µs':>12} {'ratio':>6}"
    )
    with llmtally.attribution(user_id="bench"):
        for kind, name, path, call in CASES:
            stream = "stream" in name
            for is_async in (False, True):
                bare, metered = _clients(kind, path, is_async)
                if is_async:

                    async def run(client: Any, call: Callable[[Any], Any] = call, stream: bool = stream) -> list[float]:
                        return [await _async_once(client, call, stream) for _ in range(CALLS)]

                    asyncio.run(run(bare))  # warm up
                    b = _median_us(asyncio.run(run(bare)))
                    m = _median_us(asyncio.run(run(metered)))
                else:
                    for _ in range(50):
                        _sync_once(bare, call, stream)
                        _sync_once(metered, call, stream)
                    b = _median_us([_sync_once(bare, call, stream) for _ in range(CALLS)])
                    m = _median_us([_sync_once(metered, call, stream) for _ in range(CALLS)])
                mode = "async" if is_async else "sync"
                print(f"{kind:10} {name:28} {mode:6} {b:9.0f} {m:11.0f} {m - b:12.0f} {m / b:6.2f}")


async def _lag(client: Any) -> tuple[float, float, float]:
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - started - 0.001)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await asyncio.gather(
        *(client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=MSGS) for _ in range(CONCURRENT))
    )
    elapsed = time.perf_counter() - started
    done = True
    await tick
    lags.sort()
    return max(lags) * 1e3, lags[int(len(lags) * 0.99)] * 1e3, elapsed


def loop_lag() -> None:
    bare, metered = _clients("anthropic", "anthropic/message_cache.json", True)
    with llmtally.attribution(user_id="bench"):
        asyncio.run(_lag(bare))  # warm up
        for label, client in (("bare", bare), ("instrumented", metered)):
            worst, p99, elapsed = asyncio.run(_lag(client))
            print(
                f"{CONCURRENT} concurrent async calls, {label:12}: loop lag max {worst:6.1f} ms, p99 {p99:6.1f} ms; "
                f"all done in {elapsed * 1e3:6.0f} ms"
            )


def main() -> None:
    import logging

    # The bench publisher never sends (no real client): its exit flush would log each batch.
    logging.getLogger("llmtally.publisher").setLevel(logging.CRITICAL)
    overhead()
    loop_lag()


if __name__ == "__main__":
    main()

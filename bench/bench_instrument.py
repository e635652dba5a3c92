"""Instrumentation overhead: instrumented vs bare SDK calls on the same mocked transport, and event-loop lag.

    .venv/bin/python -m bench instrument

1. Per SDK and entry point (sync, async, stream), the median wall time of a call through a bare
   client and through an instrumented one, both on the same httpx2 MockTransport answering with
   the test fixtures: the overhead in µs and the ratio. The publisher is a real `UsagePublisher`
   in Lambda mode (publish only enqueues; nothing is sent), so publishing is measured as in a service.
2. Event-loop lag: 1,000 concurrent async calls (`asyncio.gather`) to a mocked provider that answers
   after 50 ms, while a ticker task measures how late its 1 ms sleeps wake up (p99, max), bare vs
   instrumented, in alternating rounds.

Figures print; nothing is asserted (docs/BENCHMARKS.md records them).
"""

from __future__ import annotations

import asyncio
import json
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
WARMUP = 50
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
        if kind == "google":
            from google import genai
            from google.genai import types

            options = types.HttpOptions(
                base_url="http://g.test",
                httpx_client=httpx2.Client(transport=transport),
                httpx_async_client=httpx2.AsyncClient(transport=transport),
                retry_options=types.HttpRetryOptions(attempts=1),
            )
            client = genai.Client(api_key="k", http_options=options)
            return client.aio if is_async else client
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
    (
        "google",
        "generate_content",
        "google/generate_cached_thinking.json",
        lambda c: c.models.generate_content(model="gemini-2.5-flash", contents="Hi"),
    ),
    (
        "google",
        "generate_content_stream",
        "google/stream.sse",
        lambda c: c.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi"),
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


def _bedrock_clients(operation: str, body: bytes, content_type: str) -> tuple[Any, Any]:
    import boto3
    from tests.unit.providers.conftest import answer_bedrock_http

    clients = []
    for _ in range(2):
        client = boto3.client(
            "bedrock-runtime", region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
        )
        answer_bedrock_http(client, operation, 200, body, content_type)
        clients.append(client)
    llmtally.instrument(clients[1], publisher=_publisher(), user_id="bench")
    return clients[0], clients[1]


def bedrock_overhead() -> None:
    from tests.unit.providers.conftest import bedrock_stream_body

    model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    msgs = [{"role": "user", "content": [{"text": "Hi"}]}]
    converse = (FIXTURES / "bedrock" / "converse_cache.json").read_bytes()
    events = bedrock_stream_body(json.loads((FIXTURES / "bedrock" / "stream_events.json").read_text()))
    cases: list[tuple[str, tuple[Any, Any], Callable[[Any], Any]]] = [
        (
            "converse",
            _bedrock_clients("Converse", converse, "application/json"),
            lambda c: c.converse(modelId=model, messages=msgs),
        ),
        (
            "converse_stream",
            _bedrock_clients("ConverseStream", events, "application/vnd.amazon.eventstream"),
            lambda c: list(c.converse_stream(modelId=model, messages=msgs)["stream"]),
        ),
    ]
    for name, (bare, metered), call in cases:
        for _ in range(WARMUP):
            _sync_once(bare, call, False)
            _sync_once(metered, call, False)
        pairs = [(_sync_once(bare, call, False), _sync_once(metered, call, False)) for _ in range(CALLS)]
        b, m = _median_us([p[0] for p in pairs]), _median_us([p[1] for p in pairs])
        print(f"{'bedrock':10} {name:28} {'sync':6} {b:9.0f} {m:11.0f} {m - b:12.0f} {m / b:6.2f}")


def overhead() -> None:
    print(
        f"{'sdk':10} {'entry point':28} {'mode':6} {'bare µs':>9} {'metered µs':>11} {'overhead µs':>12} {'ratio':>6}"
    )
    with llmtally.attribution(user_id="bench"):
        for kind, name, path, call in CASES:
            stream = "stream" in name
            for is_async in (False, True):
                bare, metered = _clients(kind, path, is_async)
                # Bare and metered calls alternate, so the machine's noise hits both alike.
                if is_async:

                    async def run(
                        bare: Any = bare, metered: Any = metered, call: Any = call, stream: bool = stream
                    ) -> Any:
                        for _ in range(WARMUP):
                            await _async_once(bare, call, stream)
                            await _async_once(metered, call, stream)
                        pairs = [
                            (await _async_once(bare, call, stream), await _async_once(metered, call, stream))
                            for _ in range(CALLS)
                        ]
                        return [p[0] for p in pairs], [p[1] for p in pairs]

                    bare_times, metered_times = asyncio.run(run())
                else:
                    for _ in range(WARMUP):
                        _sync_once(bare, call, stream)
                        _sync_once(metered, call, stream)
                    pairs = [(_sync_once(bare, call, stream), _sync_once(metered, call, stream)) for _ in range(CALLS)]
                    bare_times, metered_times = [p[0] for p in pairs], [p[1] for p in pairs]
                b, m = _median_us(bare_times), _median_us(metered_times)
                mode = "async" if is_async else "sync"
                print(f"{kind:10} {name:28} {mode:6} {b:9.0f} {m:11.0f} {m - b:12.0f} {m / b:6.2f}")


#: The simulated provider answers each request after this long (without it, no call ever waits
#: and the ticker could only run after the whole batch).
PROVIDER_LATENCY = 0.05
ROUNDS = 5


def _lag_clients() -> tuple[Any, Any]:
    body = (FIXTURES / "anthropic" / "message_cache.json").read_bytes()

    async def provider(_: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(PROVIDER_LATENCY)
        return httpx2.Response(200, content=body, headers={"content-type": "application/json"})

    def make() -> Any:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(provider))
        return anthropic.AsyncAnthropic(api_key="k", base_url="http://a.test", http_client=http, max_retries=0)

    bare, metered = make(), make()
    llmtally.instrument(metered, publisher=_publisher(), user_id="bench")
    return bare, metered


async def _lag(client: Any) -> tuple[float, float, float]:
    """Ticker lateness (p99, max, ms) while CONCURRENT calls run, and the batch's wall time (ms)."""
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - started - 0.001)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    started = time.perf_counter()
    await asyncio.gather(
        *(client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=MSGS) for _ in range(CONCURRENT))
    )
    elapsed = time.perf_counter() - started
    done = True
    await tick
    lags.sort()
    return lags[int(len(lags) * 0.99)] * 1e3, lags[-1] * 1e3, elapsed * 1e3


def loop_lag() -> None:
    bare, metered = _lag_clients()
    results: dict[str, list[tuple[float, float, float]]] = {"bare": [], "instrumented": []}
    with llmtally.attribution(user_id="bench"):
        asyncio.run(_lag(bare))  # warm up
        asyncio.run(_lag(metered))
        for _ in range(ROUNDS):  # alternate, so machine noise hits both alike
            results["bare"].append(asyncio.run(_lag(bare)))
            results["instrumented"].append(asyncio.run(_lag(metered)))
    print(
        f"event-loop lag: {CONCURRENT} concurrent async calls, provider latency {PROVIDER_LATENCY * 1e3:.0f} ms, "
        f"1 ms ticker; median of {ROUNDS} alternating rounds"
    )
    for label, rounds in results.items():
        p99, worst, elapsed = (statistics.median(r[i] for r in rounds) for i in range(3))
        print(f"  {label:12}: lag p99 {p99:6.1f} ms, max {worst:6.1f} ms; batch done in {elapsed:6.0f} ms")


def main() -> None:
    import logging

    # The bench publisher never sends (no real client): its exit flush would log each batch.
    logging.getLogger("llmtally.publisher").setLevel(logging.CRITICAL)
    overhead()
    bedrock_overhead()
    loop_lag()


if __name__ == "__main__":
    main()

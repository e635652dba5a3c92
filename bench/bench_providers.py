"""Provider adapter benchmarks: per-call overhead over the bare SDK, and import cost.

    .venv/bin/python bench/bench_providers.py

1. Overhead: the same canned response through the same mocked transport (httpx2.MockTransport;
   botocore Stubber for Bedrock), called N times through the bare SDK and through the adapter
   (request shaping, usage mapping, exact pricing, raw_response dump). Reported per call and as a ratio.
2. Import time of `llmtally.providers` in fresh interpreters: alone, and after each SDK is already
   loaded; plus what the first use of each provider costs (its SDK import). Medians of several runs.
3. Async (issue #16): `agenerate` against the bare async SDK on the same mocked transport (per call,
   sequential on one loop); throughput of 1,000 concurrent `agenerate` calls on one event loop
   against the sync adapter's `generate` in a thread pool, both against an upstream that answers
   after 50 ms (same run, same machine); `client_for_user`'s native client (instrumented, budget
   guard) against the bare native client, per call, and what building one costs.
Figures print; nothing is asserted (docs/BENCHMARKS.md records them).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "providers"
CALLS = 300
IMPORT_RUNS = 5


def _fixture(provider: str, name: str) -> Any:
    return json.loads((FIXTURES / provider / name).read_text(encoding="utf-8"))


def _http(body: Any) -> httpx2.Client:
    raw = json.dumps(body).encode()
    return httpx2.Client(
        transport=httpx2.MockTransport(
            lambda _: httpx2.Response(200, content=raw, headers={"content-type": "application/json"})
        )
    )


def _per_call_us(fn: Callable[[], object], calls: int = CALLS) -> float:
    for _ in range(20):  # warm up (first calls build clients, caches, price lookups)
        fn()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def overhead() -> list[tuple[str, float, float]]:
    import anthropic
    import boto3
    import openai
    from botocore.stub import Stubber
    from google import genai
    from google.genai import types

    from llmtally.pricing import PriceBook
    from llmtally.providers import LLMProviderFactory, RetryPolicy

    book = PriceBook()
    once = RetryPolicy(max_attempts=1)
    rows: list[tuple[str, float, float]] = []

    body = _fixture("anthropic", "message_cache.json")
    bare_a = anthropic.Anthropic(api_key="sk-ant-bench", http_client=_http(body), max_retries=0)
    ours_a = LLMProviderFactory.create(
        "anthropic", api_key="sk-ant-bench", http_client=_http(body), price_book=book, retry=once
    )
    rows.append(
        (
            "anthropic",
            _per_call_us(
                lambda: bare_a.messages.create(
                    model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "q"}]
                )
            ),
            _per_call_us(lambda: ours_a.generate(prompt="q", max_tokens=100)),
        )
    )

    body = _fixture("openai", "chat_cached.json")
    bare_o = openai.OpenAI(api_key="sk-bench", http_client=_http(body), max_retries=0)
    ours_o = LLMProviderFactory.create(
        "openai", api_key="sk-bench", http_client=_http(body), price_book=book, retry=once
    )
    rows.append(
        (
            "openai",
            _per_call_us(
                lambda: bare_o.chat.completions.create(
                    model="gpt-4o", max_completion_tokens=100, messages=[{"role": "user", "content": "q"}]
                )
            ),
            _per_call_us(lambda: ours_o.generate(prompt="q", max_tokens=100)),
        )
    )

    body = _fixture("google", "generate_cached_thinking.json")
    bare_g = genai.Client(
        api_key="AIza-bench", vertexai=False, http_options=types.HttpOptions(httpx_client=_http(body))
    )
    ours_g = LLMProviderFactory.create(
        "google", api_key="AIza-bench", http_client=_http(body), price_book=book, retry=once
    )
    config = types.GenerateContentConfig(max_output_tokens=100)
    rows.append(
        (
            "google",
            _per_call_us(lambda: bare_g.models.generate_content(model="gemini-2.5-flash", contents="q", config=config)),
            _per_call_us(lambda: ours_g.generate(prompt="q", max_tokens=100)),
        )
    )

    body = _fixture("bedrock", "converse_cache.json")
    model = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    total = 20 + 3 * CALLS
    bare_b = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    ours_client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    ours_b = LLMProviderFactory.create("bedrock", client=ours_client, model=model, price_book=book, retry=once)
    with Stubber(bare_b) as bare_stub, Stubber(ours_client) as ours_stub:
        for _ in range(total):
            bare_stub.add_response("converse", body)
            ours_stub.add_response("converse", body)
        rows.append(
            (
                "bedrock",
                _per_call_us(
                    lambda: bare_b.converse(
                        modelId=model,
                        messages=[{"role": "user", "content": [{"text": "q"}]}],
                        inferenceConfig={"maxTokens": 100},
                    )
                ),
                _per_call_us(lambda: ours_b.generate(prompt="q", max_tokens=100)),
            )
        )
    return rows


def _import_ms(preload: str | None, target: str) -> float:
    pre = f"import {preload}; " if preload else ""
    code = f"{pre}import time; t = time.perf_counter(); import {target}; print((time.perf_counter() - t) * 1000)"
    runs = []
    for _ in range(IMPORT_RUNS):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def imports() -> list[tuple[str, float]]:
    rows = [("llmtally.providers (no SDK loaded)", _import_ms(None, "llmtally.providers"))]
    for sdk in ("anthropic", "openai", "google.genai", "boto3"):
        rows.append((f"llmtally.providers ({sdk} already loaded)", _import_ms(sdk, "llmtally.providers")))
    for sdk in ("anthropic", "openai", "google.genai", "boto3"):
        rows.append((f"first use: import {sdk} (after llmtally.providers)", _import_ms("llmtally.providers", sdk)))
    return rows


# -- async (issue #16) -----------------------------------------------------------------------------------

UPSTREAM_S = 0.05
CONCURRENT = 1000
THREADS = 64
MESSAGES: Any = [{"role": "user", "content": "q"}]


def _ahttp(body: Any, delay: float = 0.0) -> httpx2.AsyncClient:
    raw = json.dumps(body).encode()

    async def reply(_: httpx2.Request) -> httpx2.Response:
        if delay:
            await asyncio.sleep(delay)
        return httpx2.Response(200, content=raw, headers={"content-type": "application/json"})

    return httpx2.AsyncClient(transport=httpx2.MockTransport(reply))


ROUNDS = 9
BATCH = 60


def _paired_us(*fns: Callable[[], object]) -> list[float]:
    """Per-call µs of each function, measured in alternating batches (median of ROUNDS): on a busy
    machine the load hits every function alike, so their ratio stays meaningful."""
    for fn in fns:
        for _ in range(10):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(ROUNDS):
        for fn, seen in zip(fns, samples, strict=True):
            started = time.perf_counter()
            for _ in range(BATCH):
                fn()
            seen.append((time.perf_counter() - started) / BATCH * 1e6)
    return [statistics.median(seen) for seen in samples]


async def _apaired_us(*fns: Callable[[], Any]) -> list[float]:
    """`_paired_us` for coroutine functions, awaited one after another on one loop."""
    for fn in fns:
        for _ in range(10):
            await fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(ROUNDS):
        for fn, seen in zip(fns, samples, strict=True):
            started = time.perf_counter()
            for _ in range(BATCH):
                await fn()
            seen.append((time.perf_counter() - started) / BATCH * 1e6)
    return [statistics.median(seen) for seen in samples]


def async_overhead() -> list[tuple[str, float, float]]:
    import anthropic
    import openai

    from llmtally.pricing import PriceBook
    from llmtally.providers import LLMProviderFactory, RetryPolicy

    book, once = PriceBook(), RetryPolicy(max_attempts=1)

    async def run() -> list[tuple[str, float, float]]:
        rows = []
        body = _fixture("anthropic", "message_cache.json")
        bare_a = anthropic.AsyncAnthropic(api_key="sk-ant-bench", http_client=_ahttp(body), max_retries=0)
        ours_a = LLMProviderFactory.create(
            "anthropic", api_key="sk-ant-bench", async_http_client=_ahttp(body), price_book=book, retry=once
        )
        bare, ours = await _apaired_us(
            lambda: bare_a.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES),
            lambda: ours_a.agenerate(prompt="q", max_tokens=100),
        )
        rows.append(("anthropic", bare, ours))
        body = _fixture("openai", "chat_cached.json")
        bare_o = openai.AsyncOpenAI(api_key="sk-bench", http_client=_ahttp(body), max_retries=0)
        ours_o = LLMProviderFactory.create(
            "openai", api_key="sk-bench", async_http_client=_ahttp(body), price_book=book, retry=once
        )
        bare, ours = await _apaired_us(
            lambda: bare_o.chat.completions.create(model="gpt-4o", max_completion_tokens=100, messages=MESSAGES),
            lambda: ours_o.agenerate(prompt="q", max_tokens=100),
        )
        rows.append(("openai chat", bare, ours))
        body = _fixture("openai", "responses_plain.json")
        bare_r = openai.AsyncOpenAI(api_key="sk-bench", http_client=_ahttp(body), max_retries=0)
        ours_r = LLMProviderFactory.create(
            "openai", api_key="sk-bench", async_http_client=_ahttp(body), price_book=book, retry=once
        )
        bare, ours = await _apaired_us(
            lambda: bare_r.responses.create(model="gpt-5-codex", max_output_tokens=100, input=MESSAGES),
            lambda: ours_r.agenerate(prompt="q", model="gpt-5-codex", max_tokens=100),
        )
        rows.append(("openai responses", bare, ours))
        return rows

    return asyncio.run(run())


def throughput() -> tuple[float, float, float]:
    """Calls per second: 1,000 concurrent calls on one loop — the bare async SDK, then `agenerate` —
    and 1,000 `generate` on THREADS threads."""
    from concurrent.futures import ThreadPoolExecutor

    import anthropic

    from llmtally.pricing import PriceBook
    from llmtally.providers import LLMProviderFactory, RetryPolicy

    body = _fixture("anthropic", "message_cache.json")
    raw = json.dumps(body).encode()
    book, once = PriceBook(), RetryPolicy(max_attempts=1)

    def slow(_: httpx2.Request) -> httpx2.Response:
        time.sleep(UPSTREAM_S)
        return httpx2.Response(200, content=raw, headers={"content-type": "application/json"})

    sync_http = httpx2.Client(transport=httpx2.MockTransport(slow))
    provider = LLMProviderFactory.create(
        "anthropic",
        api_key="sk-ant-bench",
        http_client=sync_http,
        async_http_client=_ahttp(body, UPSTREAM_S),
        price_book=book,
        retry=once,
    )
    provider.generate(prompt="q", max_tokens=100)  # build the client and warm the price lookup

    async def concurrent() -> tuple[float, float]:
        bare = anthropic.AsyncAnthropic(api_key="sk-ant-bench", http_client=_ahttp(body, UPSTREAM_S), max_retries=0)

        def bare_call() -> Any:
            return bare.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES)

        await bare_call()
        await provider.agenerate(prompt="q", max_tokens=100)
        started = time.perf_counter()
        await asyncio.gather(*(bare_call() for _ in range(CONCURRENT)))
        bare_rate = CONCURRENT / (time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.gather(*(provider.agenerate(prompt="q", max_tokens=100) for _ in range(CONCURRENT)))
        return bare_rate, CONCURRENT / (time.perf_counter() - started)

    bare_rate, async_rate = asyncio.run(concurrent())
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: provider.generate(prompt="q", max_tokens=100), range(CONCURRENT)))
        sync_rate = CONCURRENT / (time.perf_counter() - started)
    return bare_rate, async_rate, sync_rate


class _Keys:
    """In-memory key repository (the bench measures the client path, not Secrets Manager)."""

    def get_key(self, user_id: str, provider: Any) -> Any:
        from pydantic import SecretStr

        return SecretStr("sk-ant-bench")


class _Budgets:
    """In-memory budget repository: no budget, or one under its limit (a cached status either way)."""

    def __init__(self, budget: Any = None) -> None:
        self.budget = budget

    def get_budget(self, user_id: str) -> Any:
        return self.budget

    def get_ledger(self, user_id: str, period: str) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(spent_nanos=0, outstanding_nanos=0)


def native_overhead() -> list[tuple[str, float]]:
    import anthropic

    from llmtally.budgets import Budget, BudgetAction
    from llmtally.pricing import PriceBook
    from llmtally.providers import SecretKeyStore, client_for_user
    from llmtally.providers.budget import BudgetGuard

    body = _fixture("anthropic", "message_cache.json")
    keys = SecretKeyStore(repository=_Keys())
    book = PriceBook()

    class Sink:
        def publish(self, event: Any) -> bool:
            return True

    def build(budget: Any = None, asynchronous: bool = False, http: Any = None) -> Any:
        return client_for_user(
            "u-bench",
            "anthropic",
            asynchronous=asynchronous,
            publisher=Sink(),
            preferences={},
            key_store=keys,
            budget_guard=BudgetGuard(_Budgets(budget)),
            price_book=book,
            http_client=http,
        )

    under = Budget(limit_nanos=10**12, action=BudgetAction.BLOCK)
    bare = anthropic.Anthropic(api_key="sk-ant-bench", http_client=_http(body), max_retries=0)
    plain, budgeted = build(http=_http(body)), build(under, http=_http(body))

    def call(client: Any) -> Callable[[], object]:
        return lambda: client.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES)

    figures = _paired_us(call(bare), call(plain), call(budgeted))
    labels = ["bare anthropic.Anthropic", "client_for_user, no budget", "client_for_user, block budget under its limit"]
    rows = list(zip(labels, figures, strict=True))

    async def arun() -> list[tuple[str, float]]:
        abare = anthropic.AsyncAnthropic(api_key="sk-ant-bench", http_client=_ahttp(body), max_retries=0)
        amine = build(under, asynchronous=True, http=_ahttp(body))
        bare_us, mine_us = await _apaired_us(call(abare), call(amine))
        return [
            ("bare anthropic.AsyncAnthropic", bare_us),
            ("client_for_user(asynchronous=True), block budget", mine_us),
        ]

    rows += asyncio.run(arun())
    started = time.perf_counter()
    for _ in range(100):
        build(under, http=_http(body))
    rows.append(("building a client_for_user client (key cached)", (time.perf_counter() - started) / 100 * 1e6))
    return rows


def main() -> None:
    print(f"Provider adapter overhead per call (best of 3 × {CALLS} calls, same mocked transport)")
    print(f"  {'provider':<10} {'bare SDK µs':>12} {'adapter µs':>12} {'overhead µs':>12} {'ratio':>7}")
    for name, bare, ours in overhead():
        print(f"  {name:<10} {bare:>12.0f} {ours:>12.0f} {ours - bare:>12.0f} {ours / bare:>7.2f}")
    print(
        f"\nAsync adapter overhead per call (median of {ROUNDS} alternating batches of {BATCH} awaits, "
        "same mocked transport)"
    )
    print(f"  {'call':<18} {'bare SDK µs':>12} {'adapter µs':>12} {'overhead µs':>12} {'ratio':>7}")
    for name, bare, ours in async_overhead():
        print(f"  {name:<18} {bare:>12.0f} {ours:>12.0f} {ours - bare:>12.0f} {ours / bare:>7.2f}")
    bare_rate, async_rate, sync_rate = throughput()
    print(f"\nThroughput, {CONCURRENT} calls, upstream answering after {UPSTREAM_S * 1000:.0f} ms (anthropic)")
    print(f"  bare AsyncAnthropic, {CONCURRENT} concurrent on one loop  {bare_rate:>8.0f} calls/s")
    print(f"  agenerate, {CONCURRENT} concurrent on one event loop   {async_rate:>8.0f} calls/s")
    print(f"  generate, {THREADS} threads (ThreadPoolExecutor)          {sync_rate:>8.0f} calls/s")
    print(f"  ratio agenerate / bare async SDK                   {async_rate / bare_rate:>8.2f}")
    print(f"  ratio agenerate / threads                          {async_rate / sync_rate:>8.2f}")
    print(
        f"\nclient_for_user per call (median of {ROUNDS} alternating batches of {BATCH} calls, same mocked transport)"
    )
    for label, us in native_overhead():
        print(f"  {label:<52} {us:>8.0f} µs")
    print(f"\nImport time in fresh interpreters (median of {IMPORT_RUNS})")
    for label, ms in imports():
        print(f"  {label:<55} {ms:>8.1f} ms")


if __name__ == "__main__":
    main()

"""Provider adapter benchmarks: per-call overhead over the bare SDK, and import cost.

    .venv/bin/python bench/bench_providers.py

1. Overhead: the same canned response through the same mocked transport (httpx2.MockTransport;
   botocore Stubber for Bedrock), called N times through the bare SDK and through the adapter
   (request shaping, usage mapping, exact pricing, raw_response dump). Reported per call and as a ratio.
2. Import time of `llmtally.providers` in fresh interpreters: alone, and after each SDK is already
   loaded; plus what the first use of each provider costs (its SDK import). Medians of several runs.
Figures print; nothing is asserted (docs/BENCHMARKS.md records them).
"""

from __future__ import annotations

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


def main() -> None:
    print(f"Provider adapter overhead per call (best of 3 × {CALLS} calls, same mocked transport)")
    print(f"  {'provider':<10} {'bare SDK µs':>12} {'adapter µs':>12} {'overhead µs':>12} {'ratio':>7}")
    for name, bare, ours in overhead():
        print(f"  {name:<10} {bare:>12.0f} {ours:>12.0f} {ours - bare:>12.0f} {ours / bare:>7.2f}")
    print(f"\nImport time in fresh interpreters (median of {IMPORT_RUNS})")
    for label, ms in imports():
        print(f"  {label:<55} {ms:>8.1f} ms")


if __name__ == "__main__":
    main()

"""Response-cache benchmark: what a hit costs against a miss, on a moto server.

    .venv/bin/python -m bench response_cache

A TrackedProvider (Anthropic SDK over httpx2.MockTransport, so the "provider" answers at once)
with a ResponseCache on the response-cache table of a moto server (ThreadedMotoServer on a free
loopback port). Measured per call, median and p99:

- miss: GetItem (nothing) + the provider call + PutItem — what the cache adds to a first call;
- hit: GetItem and rebuilding the answer, no provider call;
- no cache: the same call without a cache (the baseline of the adds).

The mocked provider answers in microseconds; a real one takes 0.5-30 s, which a hit saves.
Figures print; nothing is asserted (docs/BENCHMARKS.md records them).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_publisher import _percentiles, moto_server

ROOT = Path(__file__).resolve().parents[1]
CALLS = 300


class _NullSink:
    def publish(self, event: Any) -> bool:
        return True


def _provider(response_cache: Any) -> Any:
    import httpx2

    from llmtally.pricing import PriceBook
    from llmtally.providers import LLMProviderFactory, RetryPolicy, TrackedProvider

    body = json.loads((ROOT / "tests/fixtures/providers/anthropic/message_plain.json").read_text(encoding="utf-8"))
    raw = json.dumps(body).encode()
    client = httpx2.Client(
        transport=httpx2.MockTransport(
            lambda _: httpx2.Response(200, content=raw, headers={"content-type": "application/json"})
        )
    )
    inner = LLMProviderFactory.create(
        "anthropic",
        api_key="sk-ant-bench-0000000000000000000000",
        http_client=client,
        price_book=PriceBook(),
        retry=RetryPolicy(max_attempts=1),
    )
    return TrackedProvider(inner, _NullSink(), user_id="bench", response_cache=response_cache)


def _call(provider: Any, n: int) -> Callable[[], object]:
    return lambda: provider.generate(prompt=f"q {n}", temperature=0)


def _timed(calls: list[Callable[[], object]]) -> list[int]:
    samples = []
    for call in calls:
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
    return samples


def main() -> None:
    with moto_server() as endpoint:
        os.environ["LLMTALLY_ENDPOINT_URL"] = endpoint
        from llmtally import aws
        from llmtally.repositories.response_cache import ResponseCacheRepository
        from llmtally.resources import ResourceNames
        from llmtally.response_cache import ResponseCache
        from llmtally.tables import create_tables

        aws.reset_clients()
        create_tables(aws.client("dynamodb"), ResourceNames())
        cache = ResponseCache(ResponseCacheRepository())
        cached = _provider(cache)
        bare = _provider(None)
        for n in range(20):  # warm up: clients, connections, price lookups
            cached.generate(prompt=f"warm {n}", temperature=0)
            bare.generate(prompt=f"warm {n}", temperature=0)
        baseline = _timed([_call(bare, n) for n in range(CALLS)])
        misses = _timed([_call(cached, n) for n in range(CALLS)])
        hits = _timed([_call(cached, n) for n in range(CALLS)])
        assert cache.stats.hits == CALLS, cache.stats
        print(f"{CALLS} calls each, moto server on loopback; median / p99 per call (µs)")
        for label, samples in (("no cache", baseline), ("miss (get + call + put)", misses), ("hit (get)", hits)):
            median, p99 = _percentiles(samples)
            print(f"  {label:<26} {median:>9.0f} {p99:>9.0f}")
        os.environ.pop("LLMTALLY_ENDPOINT_URL", None)
        aws.reset_clients()


if __name__ == "__main__":
    main()

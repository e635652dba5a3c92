"""API benchmarks: cold import of the handler module, and route latency in-process.

    .venv/bin/python bench/bench_api.py

1. Cold import of `api.handler` in fresh interpreters (median of several runs), the heaviest
   modules it imports (`-X importtime`, cumulative), and proof that no provider SDK is among them.
2. Warm in-process latency of GET /api/llm-models and GET /api/llm-settings/{userId} on an
   in-process moto (`mock_aws`), per request.
Figures print; nothing is asserted (docs/BENCHMARKS.md records them).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for entry in (ROOT, ROOT / "shared", ROOT / "lambdas"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

IMPORT_RUNS = 7
REQUESTS = 200
PROVIDER_SDKS = ("anthropic", "openai", "google.genai", "google.generativeai", "httpx2", "httpx")
_PATH = f"import sys; sys.path[:0] = {[str(ROOT / 'shared'), str(ROOT / 'lambdas'), str(ROOT)]!r}"


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"}


def cold_import_ms() -> tuple[float, list[str]]:
    """Median wall time of `import api.handler` in a fresh interpreter, and its provider-SDK imports."""
    code = (
        f"{_PATH}\nimport json, sys, time\nt = time.perf_counter()\nimport api.handler\n"
        "print(json.dumps({'ms': (time.perf_counter() - t) * 1000, 'mods': sorted(sys.modules)}))"
    )
    runs, sdks = [], []
    for _ in range(IMPORT_RUNS):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
        data = json.loads(out.stdout)
        runs.append(data["ms"])
        sdks = [m for m in data["mods"] if m in PROVIDER_SDKS]
    return statistics.median(runs), sdks


def heaviest_imports(top: int = 12) -> list[tuple[str, float]]:
    """Top-level packages by their own import time (ms, `-X importtime` self times summed per package)."""
    code = f"{_PATH}\nimport api.handler"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, env=_env()
    )
    totals: dict[str, float] = {}
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            name = match.group(2).split(".")[0]
            totals[name] = totals.get(name, 0.0) + int(match.group(1)) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def _per_request_ms(fn: Callable[[], Any], n: int = REQUESTS) -> tuple[float, float]:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def route_latency() -> list[tuple[str, float, float]]:
    from moto import mock_aws

    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    from tests.support.apigw import request

    with mock_aws():
        from llmtally.aws import client
        from llmtally.settings import get_settings
        from llmtally.tables import create_tables

        create_tables(client("dynamodb"), get_settings().names)
        claims = {"sub": "bench-user"}
        request(
            "PUT", "/api/llm-settings/bench-user", claims=claims, body={"apiKeys": {"openai": "sk-proj-" + "b" * 40}}
        )
        rows = []
        for name, call in (
            ("GET /api/llm-models", lambda: request("GET", "/api/llm-models", claims=claims)),
            ("GET /api/llm-settings/{userId}", lambda: request("GET", "/api/llm-settings/bench-user", claims=claims)),
        ):
            median, p95 = _per_request_ms(call)
            rows.append((name, median, p95))
        return rows


def main() -> None:
    median, sdks = cold_import_ms()
    print(f"cold import of api.handler: {median:.0f} ms (median of {IMPORT_RUNS} fresh interpreters)")
    print(f"provider SDKs imported at cold start: {sdks or 'none'}")
    print("heaviest packages at cold start (own import time, ms):")
    for name, ms in heaviest_imports():
        print(f"  {name:<28} {ms:7.1f}")
    print(f"warm in-process latency, in-process moto ({REQUESTS} requests):")
    for name, med, p95 in route_latency():
        print(f"  {name:<34} median {med:6.2f} ms   p95 {p95:6.2f} ms")


if __name__ == "__main__":
    main()

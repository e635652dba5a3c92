"""API benchmarks: cold import of the handler module, and route latency in-process.

    .venv/bin/python bench/bench_api.py

1. Cold import of `api.handler` in fresh interpreters, as Lambda starts it (its environment
   variables set), with tracing on (Powertools' Tracer, hence the X-Ray SDK) and off
   (`POWERTOOLS_TRACE_DISABLED=true`, the `tracing` context off): runs interleaved, median of each,
   and their ratio; the heaviest modules it imports (`-X importtime`, own time summed per package),
   and proof that no provider SDK is among them.
2. Warm in-process latency of GET /api/llm-models and GET /api/llm-settings/{userId} on an
   in-process moto (`mock_aws`), per request.
3. GET /api/llm-usage/{userId}/summary (30 local days, UTC and Asia/Kolkata) and /daily at 10k and
   100k events of one tenant: the route's latency in-process and the rollup items it reads, against
   the seed's design (every raw entry of the range read and summed: items read = events; its
   in-memory summing time measured in the same run). Rollups are the events' packed items, served
   from memory indexed like DynamoDB (`IndexedRollups`; `items read` counts stored items): moto's
   Query scans a whole partition in Python (2.8–35 s per request at these sizes), which would time
   the emulator, not the API. On AWS add the Queries' round trips (they run concurrently, up to 8
   at a time).
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
from functools import partial
from typing import Any

from bench import ROOT

IMPORT_RUNS = 9
#: The environment Lambda gives the function (the Tracer exists only inside Lambda).
LAMBDA_ENV = {"AWS_LAMBDA_FUNCTION_NAME": "mantissa-log-api", "LAMBDA_TASK_ROOT": "/var/task"}
TRACING = {
    "on": {**LAMBDA_ENV, "POWERTOOLS_TRACE_DISABLED": "false"},
    "off": {**LAMBDA_ENV, "POWERTOOLS_TRACE_DISABLED": "true"},
}
REQUESTS = 200
PROVIDER_SDKS = ("anthropic", "openai", "google.genai", "google.generativeai", "httpx2", "httpx")
_PATH = f"import sys; sys.path[:0] = {[str(ROOT / 'shared'), str(ROOT / 'lambdas'), str(ROOT)]!r}"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", **(extra or {})}


def cold_imports_ms() -> tuple[dict[str, tuple[float, float]], dict[str, bool], list[str]]:
    """Median wall and CPU time of `import api.handler` in fresh interpreters with tracing on and off
    (runs interleaved, so the machine's noise falls on both alike; CPU time — the interpreter's own
    — moves far less than wall time on a busy machine); whether each imported the X-Ray SDK; the
    provider SDKs imported."""
    code = (
        f"{_PATH}\nimport json, sys, time\nt, c = time.perf_counter(), time.process_time()\nimport api.handler\n"
        "print(json.dumps({'ms': (time.perf_counter() - t) * 1000, 'cpu': (time.process_time() - c) * 1000, "
        "'mods': sorted(sys.modules)}))"
    )
    wall: dict[str, list[float]] = {name: [] for name in TRACING}
    cpu: dict[str, list[float]] = {name: [] for name in TRACING}
    xray: dict[str, bool] = {}
    sdks: set[str] = set()
    for _ in range(IMPORT_RUNS):
        for name, extra in TRACING.items():
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env(extra)
            )
            data = json.loads(out.stdout.strip().splitlines()[-1])
            wall[name].append(data["ms"])
            cpu[name].append(data["cpu"])
            xray[name] = "aws_xray_sdk" in data["mods"]
            sdks |= {m for m in data["mods"] if m in PROVIDER_SDKS}
    medians = {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in TRACING}
    return medians, xray, sorted(sdks)


def heaviest_imports(top: int = 12, *, tracing: str = "off") -> list[tuple[str, float]]:
    """Top-level packages by their own import time (ms, `-X importtime` self times summed per package)."""
    code = f"{_PATH}\nimport api.handler"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=_env(TRACING[tracing]),
    )
    totals: dict[str, float] = {}
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            name = match.group(2).split(".")[0]
            totals[name] = totals.get(name, 0.0) + int(match.group(1)) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def _per_request_ms(fn: Callable[[], Any], n: int = REQUESTS, *, warmup: int = 10) -> tuple[float, float]:
    for _ in range(warmup):
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


USAGE_EVENTS = (10_000, 100_000)
USAGE_REQUESTS = 100
USAGE_USER = "bench-usage"


class IndexedRollups:
    """The rollups table in memory as it is stored (packed items, `llmtally.packing`), indexed like
    DynamoDB (partition → sorted sort keys), behind the real `RollupRepository`: its Query is a
    bisect plus the items it returns (DynamoDB JSON), so the figure is the API's own cost (parsing,
    planning the buckets, decoding, composing, writing JSON) and `items_read` counts stored items.
    moto's in-process Query scans its whole partition in Python (seconds per summary at these
    sizes), which would measure the emulator instead."""

    def __init__(self, entries: list[Any]) -> None:
        from bench.bench_pipeline import RecordingRollups
        from llmtally.repositories.cell_codes import CELL_SK_PREFIX, DICTIONARY_PK_PREFIX
        from llmtally.repositories.rollups import RollupRepository

        table = RecordingRollups()
        table.load(entries)
        partitions: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for key, item in table.state.items():
            row = {"pk": {"S": key.pk}, "sk": {"S": key.sk}}
            row.update({name: {"N": str(value)} for name, value in item.attributes.items() if value})
            partitions.setdefault(key.pk, []).append((key.sk, row))
        for user, codes in table.codes.items():
            partitions[DICTIONARY_PK_PREFIX + user] = [
                (CELL_SK_PREFIX + cell, {"sk": {"S": CELL_SK_PREFIX + cell}, "code": {"N": str(code)}})
                for cell, code in codes.items()
            ]
        self.partitions = {pk: sorted(rows, key=lambda row: row[0]) for pk, rows in partitions.items()}
        self.sort_keys = {pk: [row[0] for row in rows] for pk, rows in self.partitions.items()}
        self.repository = RollupRepository(client=self)

    def read_runs(self, user_id: str, requests: Any, *, consistent: bool = False) -> Any:
        return self.repository.read_runs(user_id, requests, consistent=consistent)

    def query(self, **kwargs: Any) -> dict[str, Any]:
        """DynamoDB's Query, for the two key conditions the repository sends."""
        from bisect import bisect_left, bisect_right

        values = kwargs["ExpressionAttributeValues"]
        pk = values[":pk"]["S"]
        keys, rows = self.sort_keys.get(pk, []), self.partitions.get(pk, [])
        if ":low" in values:
            chosen = rows[bisect_left(keys, values[":low"]["S"]) : bisect_right(keys, values[":high"]["S"])]
        else:  # begins_with(sk, :c): the cell dictionary
            chosen = [row for row in rows if row[0].startswith(values[":c"]["S"])]
        return {"Items": [row for _, row in chosen]}


def _no_raw_table() -> Any:
    raise AssertionError("summary and daily never read raw entries")


def seed_style_summary(entries: list[Any], start: Any, end: Any) -> int:
    """The seed's design, in memory: every raw entry of the range read and summed. Returns items read."""
    totals: dict[str, int] = {}
    read = 0
    for entry in entries:
        if start <= entry.timestamp < end:
            read += 1
            for key in (f"p:{entry.provider}", f"o:{entry.operation_type}", f"m:{entry.model}", "total"):
                totals[key] = totals.get(key, 0) + entry.cost_nanos
    return read


def usage_routes() -> list[str]:
    """Summary and daily latency and items read at each size, with the seed's read-everything baseline."""
    import random
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from tests.support.apigw import request

    import api.routes.usage as usage_routes_module
    from api import deps
    from bench.bench_pipeline import events
    from llmtally.api.usage import UsageService

    lines = []
    claims = {"sub": USAGE_USER}
    today = datetime.now(UTC).date()
    first = today - timedelta(days=29)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = start + timedelta(days=30)
    path = f"/api/llm-usage/{USAGE_USER}"
    query = {"start": first.isoformat(), "end": today.isoformat()}
    namespace = vars(usage_routes_module)  # the route module's own binding of `usage_service`
    original = namespace["usage_service"]
    try:
        for count in USAGE_EVENTS:
            entries = [
                replace(e, user_id=USAGE_USER)
                for e in events(count, start, 30 * 86400 - 1, random.Random(11), tenants=1)
            ]
            store = IndexedRollups(entries)
            rollups: Any = partial(lambda store: store, store)
            service = UsageService(rollups, _no_raw_table, deps.api_settings())
            namespace["usage_service"] = partial(lambda service: service, service)
            for tz in ("UTC", "Asia/Kolkata"):
                summary_query = {**query, "tz": tz}
                answer = request("GET", f"{path}/summary", claims=claims, query=summary_query)
                assert answer.status == 200, answer.text
                body = answer.json()
                if tz == "UTC":  # the events fill these 30 UTC days; Kolkata's days are shifted 5.5 h
                    assert body["total_requests"] == count, body["total_requests"]
                med, p95 = _per_request_ms(
                    partial(request, "GET", f"{path}/summary", claims=claims, query=summary_query), USAGE_REQUESTS
                )
                lines.append(
                    f"  {count:>7,} events  summary 30 d {tz:<13} median {med:6.2f} ms  p95 {p95:6.2f} ms  "
                    f"items read {body['items_read']:>4,} in {body['queries']:>2} queries  "
                    f"(seed: {count:,} raw entries, {count / body['items_read']:.0f}x more)"
                )
            daily_query = {"days": "30", "tz": "Asia/Kolkata"}
            daily = request("GET", f"{path}/daily", claims=claims, query=daily_query).json()
            med, p95 = _per_request_ms(
                partial(request, "GET", f"{path}/daily", claims=claims, query=daily_query), USAGE_REQUESTS
            )
            lines.append(
                f"  {count:>7,} events  daily 30 d   Asia/Kolkata  median {med:6.2f} ms  p95 {p95:6.2f} ms  "
                f"items read {daily['items_read']:>4,} in {daily['queries']:>2} queries"
            )
            read = seed_style_summary(entries, start, end)
            med, p95 = _per_request_ms(partial(seed_style_summary, entries, start, end), 20, warmup=2)
            lines.append(
                f"  {count:>7,} events  seed design, in memory (sum every raw entry)   median {med:6.2f} ms  "
                f"p95 {p95:6.2f} ms  items read {read:,}  (+ reading {read:,} items from DynamoDB)"
            )
    finally:
        namespace["usage_service"] = original
    return lines


def _quiet_request_logs() -> None:
    """One JSON line per request would drown the figures."""
    from llmtally.observability import logger

    logger.setLevel("WARNING")


def main() -> None:
    _quiet_request_logs()
    medians, xray, sdks = cold_imports_ms()
    runs = f"median of {IMPORT_RUNS} fresh interpreters each, interleaved"
    print(f"cold import of api.handler as Lambda starts it ({runs}):")
    for name, (ms, cpu_ms) in medians.items():
        xray_note = "yes" if xray[name] else "no"
        print(f"  tracing {name:<3}  wall {ms:6.0f} ms   cpu {cpu_ms:6.0f} ms   X-Ray SDK imported: {xray_note}")
    (on_wall, on_cpu), (off_wall, off_cpu) = medians["on"], medians["off"]
    print(
        f"  tracing off / on: wall {off_wall / on_wall:.2f} ({on_wall - off_wall:.0f} ms saved per cold start), "
        f"cpu {off_cpu / on_cpu:.2f} ({on_cpu - off_cpu:.0f} ms saved)"
    )
    print(f"provider SDKs imported at cold start: {sdks or 'none'}")
    for tracing in ("off", "on"):
        print(f"heaviest packages at cold start, tracing {tracing} (own import time, ms):")
        for name, ms in heaviest_imports(8, tracing=tracing):
            print(f"  {name:<28} {ms:7.1f}")
    print(f"warm in-process latency, in-process moto ({REQUESTS} requests):")
    for name, med, p95 in route_latency():
        print(f"  {name:<34} median {med:6.2f} ms   p95 {p95:6.2f} ms")
    print(
        f"usage routes in-process, rollups indexed in memory, one tenant, events over 30 days "
        f"({USAGE_REQUESTS} requests each):"
    )
    for line in usage_routes():
        print(line)


if __name__ == "__main__":
    main()

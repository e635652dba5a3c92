"""HTTP ingest throughput on the local stack: `POST /api/usage-events` and the OTLP receiver against the library.

    .venv/bin/python -m bench ingest        (this is its second part; bench_ingest.main() calls `main()`)

Starts `llmtally local` in its own process (free ports, its own state dir), creates an ingest key
through the API, then hands the same number of events to the usage bus three ways, in the same run:

1. baseline — the library: `UsagePublisher.for_eventbridge(background=False)`, `publish()` each
   event, then `flush()` (PutEvents, 10 entries per call);
2. `POST /api/usage-events` — JSON batches of 500 with the key (parse, validate each event, key
   lookup, rate-limit counter, duplicate lookup on the raw table, PutEvents);
3. `POST /api/otel/v1/traces` — OTLP protobuf batches of 500 GenAI spans encoded by the real
   OpenTelemetry SDK encoder (decode, map, then as 2).

Each figure is events per second from the first call to the last answer ("accepted": the bus took
them); the route's ratio to the library baseline is printed. Afterwards, the time until the rollups
count all of them (the whole pipeline on the emulator). Nothing is asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import ROOT

EVENTS = 2_000
BATCH = 500
PREFIX = "benchhttp"
USER = "bench-http"
DRAIN_TIMEOUT = 240.0


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, response.read(), dict(response.headers.items())


def _events(tag: str, count: int, at: datetime) -> list[Any]:
    from llmtally.events import UsageEvent

    return [
        UsageEvent(
            event_id=f"bench-{tag}-{n:06d}",
            user_id=USER,
            timestamp=at,
            provider="openai",
            model="gpt-4o-mini",
            operation_type="conversation",
            input_tokens=100 + n % 50,
            cache_read_tokens=64,
            output_tokens=20,
            tags={"path": tag},
        )
        for n in range(count)
    ]


def _otlp_batches(count: int, at: datetime) -> list[bytes]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench", "llmtally.tags.path": "otlp"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    end_ns = int(at.timestamp() * 1e9)
    for n in range(count):
        span = tracer.start_span("chat gpt-4o-mini", start_time=end_ns - 800_000_000)
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 164 + n % 50,
                "gen_ai.usage.cache_read.input_tokens": 64,
                "gen_ai.usage.output_tokens": 20,
            }
        )
        span.end(end_time=end_ns)
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return [bytes(encode_spans(spans[i : i + BATCH]).SerializeToString()) for i in range(0, len(spans), BATCH)]


def _library(count: int, at: datetime) -> float:
    from llmtally.publisher import UsagePublisher

    events = _events("library", count, at)
    publisher = UsagePublisher.for_eventbridge(background=False)
    started = time.perf_counter()
    for event in events:
        publisher.publish(event)
    publisher.flush(timeout=300)
    elapsed = time.perf_counter() - started
    stats = publisher.stats()
    publisher.close()
    print(f"  library publisher: {stats.published} published in {elapsed:.2f} s = {count / elapsed:,.0f} events/s")
    return count / elapsed


def _http(api: str, key: str, count: int, at: datetime) -> float:
    events = _events("http", count, at)
    bodies = [
        json.dumps({"events": [e.to_detail() for e in events[i : i + BATCH]]}).encode() for i in range(0, count, BATCH)
    ]
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    accepted = 0
    started = time.perf_counter()
    for body in bodies:
        _, raw, _ = _post(f"{api}/api/usage-events", body, headers)
        accepted += json.loads(raw)["accepted"]
    elapsed = time.perf_counter() - started
    print(f"  POST /api/usage-events: {accepted} accepted in {elapsed:.2f} s = {count / elapsed:,.0f} events/s")
    return count / elapsed


def _otlp(api: str, key: str, count: int, at: datetime) -> float:
    bodies = _otlp_batches(count, at)
    headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {key}"}
    accepted = 0
    started = time.perf_counter()
    for body in bodies:
        _, _, answer = _post(f"{api}/api/otel/v1/traces", body, headers)
        accepted += int(answer["X-LLMtally-Accepted"])
    elapsed = time.perf_counter() - started
    size = sum(len(b) for b in bodies) / len(bodies) / 1024
    print(
        f"  POST /api/otel/v1/traces: {accepted} accepted in {elapsed:.2f} s = {count / elapsed:,.0f} spans/s "
        f"(protobuf, {size:.0f} KiB per 500 spans)"
    )
    return count / elapsed


def _drain(total: int, today: date) -> float:
    from llmtally.queries import daily_usage

    started = time.perf_counter()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    seen = 0
    while time.monotonic() < deadline:
        seen = sum(row.requests for row in daily_usage(USER, days=2, today=today).days)
        if seen >= total:
            break
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    print(f"  all {seen}/{total} in the rollups {elapsed:.1f} s after the last answer")
    return elapsed


def main() -> None:
    from llmtally.aws import reset_clients

    state_dir = Path(tempfile.mkdtemp(prefix="llmtally-bench-http-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LLMTALLY_"))}
    env.update(
        LLMTALLY_STATE_DIR=str(state_dir), PYTHONPATH=os.pathsep.join([str(ROOT / "shared"), str(ROOT / "lambdas")])
    )
    log = (state_dir / "stack.log").open("wb")
    command = [sys.executable, "-m", "llmtally.cli", "local", "--port", "0", "--aws-port", "0", "--prefix", PREFIX]
    stack = subprocess.Popen([*command, "--user", USER], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        state_file = state_dir / "local.json"
        deadline = time.monotonic() + 60
        while not state_file.exists():
            if stack.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llmtally local did not start: see {state_dir / 'stack.log'}")
            time.sleep(0.1)
        time.sleep(0.2)
        state = json.loads(state_file.read_text())
        api = state["api_url"]
        os.environ.update(
            LLMTALLY_ENDPOINT_URL=state["aws_endpoint"],
            LLMTALLY_PREFIX=PREFIX,
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
        )
        reset_clients()
        _, raw, _ = _post(
            f"{api}/api/llm-settings/{USER}/ingest-keys", b'{"name": "bench"}', {"content-type": "application/json"}
        )
        key = json.loads(raw)["key"]
        at = datetime.now(UTC) - timedelta(minutes=1)
        print(f"HTTP ingest on the local stack ({api}), {EVENTS:,} events per path, batches of {BATCH}:")
        baseline = _library(EVENTS, at)
        http = _http(api, key, EVENTS, at)
        otlp = _otlp(api, key, EVENTS, at)
        print(f"  = HTTP route {http / baseline:.2f} × the library, OTLP receiver {otlp / baseline:.2f} × the library")
        _drain(3 * EVENTS, at.date())
    finally:
        stack.send_signal(signal.SIGTERM)
        try:
            code = stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.kill()
            code = stack.wait()
        log.close()
        print(f"local stack stopped (exit {code})")


if __name__ == "__main__":
    main()

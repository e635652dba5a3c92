"""Local stack benchmark: end-to-end throughput and freshness, from `publish()` to the rollups.

    .venv/bin/python -m bench local        (or: .venv/bin/python bench/bench_local.py)

Starts `llmtally local` in its own process (as `make run` does; free ports, its own state dir),
points this process at it and publishes through the real `UsagePublisher` (EventBridge → rule →
SQS → ingest runner → usage table → stream runner → aggregate → rollups), polling the tenant's
rollups (`llmtally.queries.daily_usage`, the total dimension) every 0.2 s.

1. Burst: 10,000 events published as fast as `publish()` takes them. Throughput = events / seconds
   from the first `publish()` to the moment the rollups count all of them.
2. Steady: 20 events/s for 10 s (200 events), a service's ordinary load, on the drained stack.

Freshness, for each phase: the k-th event published is taken to be visible at the first poll that
counts at least k events (the horizontal distance between the "published" and "visible" curves).
SQS does not keep order, so this is the latency distribution's estimate, not each event's own; p50
and p95 are read from it. Baseline, same run and same emulator: one client's PutItem rate on a
scratch table — the emulator's ceiling for the ingest's conditional writes. Nothing is asserted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench import ROOT
from llmtally.aws import client, reset_clients
from llmtally.events import Provider, UsageEvent
from llmtally.publisher import UsagePublisher
from llmtally.queries import daily_usage

BURST_EVENTS = 10_000
STEADY_RATE = 20
STEADY_SECONDS = 10
POLL_SECONDS = 0.2
PHASE_TIMEOUT = 200.0
BASELINE_PUTS = 300
PREFIX = "bench"
MODELS = (
    (Provider.ANTHROPIC, "claude-sonnet-4-6"),
    (Provider.ANTHROPIC, "claude-haiku-4-5-20251001"),
    (Provider.OPENAI, "gpt-5"),
    (Provider.OPENAI, "gpt-5-mini"),
    (Provider.GOOGLE, "gemini-2.5-flash"),
    (Provider.BEDROCK, "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
)
OPERATIONS = ("query_generation", "detection_rule", "conversation", "rule_enrichment")


def _event(rng: random.Random, tenant: str, n: int) -> UsageEvent:
    provider, model = rng.choice(MODELS)
    return UsageEvent(
        event_id=f"bench-{tenant}-{n:07d}",
        user_id=tenant,
        provider=provider,
        model=model,
        operation_type=rng.choice(OPERATIONS),
        input_tokens=rng.randint(200, 5000),
        cache_read_tokens=rng.choice((0, 0, rng.randint(500, 3000))),
        output_tokens=rng.randint(50, 1200),
        latency_ms=rng.randint(300, 4000),
    )


def _visible(tenant: str, today: date) -> int:
    return sum(row.requests for row in daily_usage(tenant, days=3, today=today).days)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _freshness(published_at: Sequence[float], polls: Sequence[tuple[float, int]]) -> list[float]:
    latencies: list[float] = []
    index = 0
    for k, sent in enumerate(published_at, start=1):
        while index < len(polls) and polls[index][1] < k:
            index += 1
        if index == len(polls):
            break
        latencies.append(polls[index][0] - sent)
    return latencies


def _run_phase(name: str, tenant: str, count: int, rate: float | None) -> dict[str, float]:
    rng = random.Random(42)
    events = [_event(rng, tenant, n) for n in range(count)]  # built before the clock starts
    today = datetime.now(UTC).date() + timedelta(days=1)
    publisher = UsagePublisher.for_eventbridge(max_buffer=count + 1)
    published_at: list[float] = []
    polls: list[tuple[float, int]] = []
    started = time.monotonic()
    for n, event in enumerate(events):
        if rate is not None:
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
        published_at.append(time.monotonic())
        publisher.publish(event)
        if rate is not None and n % STEADY_RATE == 0:
            polls.append((time.monotonic(), _visible(tenant, today)))
    publish_seconds = time.monotonic() - started
    deadline = started + PHASE_TIMEOUT
    while (not polls or polls[-1][1] < count) and time.monotonic() < deadline:
        polls.append((time.monotonic(), _visible(tenant, today)))
        time.sleep(POLL_SECONDS)
    publisher.close(timeout=30)
    stats = publisher.stats()
    visible = polls[-1][1]
    total = polls[-1][0] - started
    latencies = _freshness(published_at, polls)
    print(
        f"{name}: {count:,} events ({stats.published:,} delivered, {stats.dropped} dropped, {stats.failed} failed); "
        f"publish() loop {publish_seconds:.1f} s; {visible:,} visible after {total:.1f} s"
    )
    result = {
        "events": float(count),
        "visible": float(visible),
        "seconds": total,
        "throughput": visible / total,
        "p50": _percentile(latencies, 0.50) if latencies else float("nan"),
        "p95": _percentile(latencies, 0.95) if latencies else float("nan"),
        "max": max(latencies) if latencies else float("nan"),
    }
    print(
        f"  end to end {result['throughput']:.0f} events/s; freshness p50 {result['p50']:.1f} s, "
        f"p95 {result['p95']:.1f} s, max {result['max']:.1f} s"
    )
    return result


def _baseline_put_rate() -> float:
    dynamodb = client("dynamodb")
    table = f"{PREFIX}-baseline"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    started = time.perf_counter()
    for n in range(BASELINE_PUTS):
        dynamodb.put_item(
            TableName=table,
            Item={"pk": {"S": f"item-{n}"}, "n": {"N": str(n)}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    rate = BASELINE_PUTS / (time.perf_counter() - started)
    dynamodb.delete_table(TableName=table)
    return rate


def main() -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="llmtally-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LLMTALLY_"))}
    env.update(
        LLMTALLY_STATE_DIR=str(state_dir), PYTHONPATH=os.pathsep.join([str(ROOT / "shared"), str(ROOT / "lambdas")])
    )
    log = (state_dir / "stack.log").open("wb")
    command = [sys.executable, "-m", "llmtally.cli", "local", "--port", "0", "--aws-port", "0", "--prefix", PREFIX]
    stack = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        state_file = state_dir / "local.json"
        deadline = time.monotonic() + 60
        while not state_file.exists():
            if stack.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llmtally local did not start: see {state_dir / 'stack.log'}")
            time.sleep(0.1)
        time.sleep(0.2)
        endpoint = json.loads(state_file.read_text())["aws_endpoint"]
        os.environ.update(
            LLMTALLY_ENDPOINT_URL=endpoint,
            LLMTALLY_PREFIX=PREFIX,
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
        )
        reset_clients()
        print(f"local stack: {endpoint} (2 runners, ingest batch 10, aggregate batch 1,000, 0.5 s windows)")
        baseline = _baseline_put_rate()
        print(f"baseline: one client's conditional PutItem on the emulator, {baseline:.0f} items/s")
        burst = _run_phase("burst", "bench-burst", BURST_EVENTS, rate=None)
        print(f"  = {burst['throughput'] / baseline:.2f} × the PutItem baseline")
        if burst["visible"] < BURST_EVENTS:
            print("  (the burst had not drained within the phase's time limit; the steady phase is skipped)")
            return
        _run_phase("steady", "bench-steady", STEADY_RATE * STEADY_SECONDS, rate=STEADY_RATE)
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

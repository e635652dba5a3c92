"""Realistic synthetic usage: what `llmtally demo` publishes (through the real publisher).

Several tenants with uneven (Zipf) traffic, the four providers with the seed's models and current
ones, the four seed operations, cache reads and writes where providers cache, reasoning tokens for
reasoning models, a few errors, and a daily rhythm (busy working hours, quiet weekends) over the
last N days. Deterministic for a given seed, so a demo can be reproduced.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from llmtally.events import MAX_EVENT_AGE, SEED_OPERATION_TYPES, Provider, Status, UsageEvent
from llmtally.publisher import PublisherStats, UsagePublisher

DEMO_USERS: Final = ("demo-user", "acme-search", "acme-support", "globex-analytics", "initech-secops")
DEFAULT_EVENTS: Final = 1000
#: The contract refuses events older than 90 days; the demo stays a day inside that window.
MAX_DAYS: Final = MAX_EVENT_AGE.days - 1
DEFAULT_DAYS: Final = MAX_DAYS
#: The demo's publisher buffer; publishing pauses for room instead of letting publish() drop.
DEMO_BUFFER: Final = 2000


@dataclass(frozen=True, slots=True)
class DemoModel:
    provider: Provider
    model: str
    weight: float
    caches: bool = False
    reasons: bool = False
    base_latency_ms: int = 900


#: The seed's models (legacy now, still billed) and current ones, for each of the four providers.
MODELS = (
    DemoModel(Provider.ANTHROPIC, "claude-sonnet-4-6", 5, caches=True, base_latency_ms=1800),
    DemoModel(Provider.ANTHROPIC, "claude-haiku-4-5-20251001", 4, caches=True, base_latency_ms=600),
    DemoModel(Provider.ANTHROPIC, "claude-3-5-sonnet-20241022", 2, caches=True, base_latency_ms=1500),
    DemoModel(Provider.OPENAI, "gpt-5", 3, caches=True, reasons=True, base_latency_ms=4000),
    DemoModel(Provider.OPENAI, "gpt-5-mini", 4, caches=True, reasons=True, base_latency_ms=1500),
    DemoModel(Provider.OPENAI, "gpt-4o", 2, caches=True, base_latency_ms=1200),
    DemoModel(Provider.OPENAI, "gpt-4-turbo", 1, base_latency_ms=2500),
    DemoModel(Provider.GOOGLE, "gemini-2.5-flash", 4, caches=True, reasons=True, base_latency_ms=700),
    DemoModel(Provider.GOOGLE, "gemini-2.5-pro", 1, caches=True, reasons=True, base_latency_ms=3500),
    DemoModel(Provider.GOOGLE, "gemini-1.5-pro", 1, base_latency_ms=1600),
    DemoModel(Provider.BEDROCK, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", 2, caches=True, base_latency_ms=1900),
    DemoModel(Provider.BEDROCK, "anthropic.claude-3-5-sonnet-20241022-v2:0", 1, caches=True, base_latency_ms=1700),
    DemoModel(Provider.BEDROCK, "amazon.nova-pro-v1:0", 1, base_latency_ms=900),
)
#: Operation mix, and each operation's typical prompt / answer size in tokens.
OPERATIONS = {
    "query_generation": (0.45, 2500, 350),
    "detection_rule": (0.20, 4000, 900),
    "conversation": (0.25, 1800, 500),
    "rule_enrichment": (0.10, 6000, 1200),
}
ERROR_TYPES = ("rate_limit", "timeout", "unavailable", "invalid_request")
assert set(OPERATIONS) == set(SEED_OPERATION_TYPES)


def _hour_weight(local_hour: int, weekday: int) -> float:
    """Busy 9–18 on working days, a quiet night, a quieter weekend."""
    day = 1.0 if weekday < 5 else 0.35
    hour = 0.15 + math.exp(-((local_hour - 13.5) ** 2) / 18)
    return day * hour


def demo_events(
    *,
    count: int = DEFAULT_EVENTS,
    days: int = DEFAULT_DAYS,
    users: tuple[str, ...] = DEMO_USERS,
    seed: int = 7,
    now: datetime | None = None,
    error_rate: float = 0.02,
) -> Iterator[UsageEvent]:
    """`count` events spread over the last `days` days (at most 89, inside the contract's window).

    Traffic comes in sessions, as it does from a service: one tenant, one configured model, a few
    calls minutes apart, mostly of one operation, the prompt cache warming up after the first call.
    (It also keeps the local emulator quick: a session's calls share their rollup buckets.)
    """
    rng = random.Random(seed)  # noqa: S311 - synthetic traffic, not secrets
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    latest = now - timedelta(seconds=1)
    days = max(1, min(days, MAX_DAYS))
    hours = [now - timedelta(hours=h) for h in range(1, days * 24)]
    hour_weights = [_hour_weight(h.hour, h.weekday()) * (1 + 0.004 * (days * 24 - i)) for i, h in enumerate(hours)]
    user_weights = [1 / (rank + 1) for rank in range(len(users))]  # Zipf
    model_weights = [m.weight for m in MODELS]
    ops = list(OPERATIONS)
    op_weights = [OPERATIONS[o][0] for o in ops]
    index = 0
    while index < count:
        at = rng.choices(hours, hour_weights)[0] + timedelta(seconds=rng.randrange(3600))
        user = rng.choices(users, user_weights)[0]
        spec = rng.choices(MODELS, model_weights)[0]
        session_operation = rng.choices(ops, op_weights)[0]
        calls = min(count - index, 1 + int(rng.expovariate(1 / 4)))
        for call in range(calls):
            at = min(at + timedelta(seconds=rng.randint(5, 120)), latest)
            operation = session_operation if rng.random() < 0.8 else rng.choices(ops, op_weights)[0]
            yield _demo_event(rng, seed, index, user, spec, operation, at, warm=call > 0, error_rate=error_rate)
            index += 1


def _demo_event(
    rng: random.Random,
    seed: int,
    index: int,
    user: str,
    spec: DemoModel,
    operation: str,
    at: datetime,
    *,
    warm: bool,
    error_rate: float,
) -> UsageEvent:
    _, prompt, answer = OPERATIONS[operation]
    failed = rng.random() < error_rate
    prompt_tokens = max(50, int(rng.lognormvariate(math.log(prompt), 0.5)))
    cache_read = cache_write = reasoning = 0
    if spec.caches and not failed and rng.random() < (0.7 if warm else 0.1):
        cache_read = int(prompt_tokens * rng.uniform(0.5, 0.9))
    elif spec.caches and spec.provider in (Provider.ANTHROPIC, Provider.BEDROCK) and not warm and rng.random() < 0.3:
        cache_write = int(prompt_tokens * rng.uniform(0.2, 0.5))
    uncached = max(0, prompt_tokens - cache_read - cache_write)
    output = 0 if failed else max(1, int(rng.lognormvariate(math.log(answer), 0.6)))
    if spec.reasons and not failed:
        reasoning = int(output * rng.uniform(0.5, 3.0))
    return UsageEvent(
        event_id=f"demo-{seed}-{index:07d}",
        user_id=user,
        request_id=f"req-{seed}-{index}",
        timestamp=at,
        provider=spec.provider,
        model=spec.model,
        operation_type=operation,
        status=Status.ERROR if failed else Status.OK,
        error_type=rng.choice(ERROR_TYPES) if failed else None,
        input_tokens=0 if failed and rng.random() < 0.5 else uncached,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output,
        reasoning_tokens=reasoning,
        latency_ms=int(spec.base_latency_ms * rng.uniform(0.5, 2.0) + output * 0.8),
        metadata={"source": "demo"},
    )


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What one demo run did: the publisher's own counters, and the events handed to it per tenant."""

    attempted: int
    stats: PublisherStats
    per_user: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False

    @property
    def ok(self) -> bool:
        return self.stats.dropped == 0 and self.stats.failed == 0 and self.stats.queued == 0


def publish_demo(
    events: Iterable[UsageEvent],
    *,
    publisher: UsagePublisher | None = None,
    stop: threading.Event | None = None,
    flush_timeout: float = 120.0,
    on_progress: Callable[[int], None] | None = None,
) -> DemoReport:
    """Publish `events` through the real publisher (EventBridge, from settings), then flush and close it.

    `publish()` never blocks: when its buffer is full it drops the event (and counts it). A demo
    wants every event, so it waits for the buffer to drain before it would fill, and then reads
    what happened from the publisher's own counters — a drop or a failure is reported, never hidden.
    `stop` (set by Ctrl-C in `llmtally local --demo`) ends the run early; what was accepted is flushed.
    """
    publisher = publisher or UsagePublisher.for_eventbridge(max_buffer=DEMO_BUFFER)
    room = max(1, DEMO_BUFFER - 10)
    per_user: Counter[str] = Counter()
    attempted = 0
    stopped = False
    try:
        for event in events:
            if stop is not None and stop.is_set():
                stopped = True
                break
            if publisher.stats().queued >= room:
                publisher.flush(timeout=flush_timeout)
            publisher.publish(event)
            attempted += 1
            per_user[event.user_id] += 1
            if on_progress is not None and attempted % 500 == 0:
                on_progress(attempted)
    finally:
        publisher.close(timeout=flush_timeout)
    return DemoReport(attempted=attempted, stats=publisher.stats(), per_user=dict(per_user), stopped_early=stopped)

"""Publisher benchmarks: what tracking costs the caller, what a full buffer holds, how fast pricing is.

    .venv/bin/python -m bench publisher      (or: .venv/bin/python bench/bench_publisher.py)

In one run, on one moto server (ThreadedMotoServer on a free loopback port):

1. Caller-side cost of `UsagePublisher.publish()` per event (median, p99; the worker sends to
   EventBridge meanwhile, competing for the GIL as it would in a service), against the obvious
   alternative: a synchronous `put_events` call per event. The ratio is what fire-and-forget saves.
2. The publisher's memory with its buffer full (10,000 events, Lambda mode so nothing drains),
   measured with tracemalloc: the events the buffer keeps alive plus the buffer itself.
3. Events priced per second by `PriceBook().price_event` over a realistic mix of the curated
   models of all four providers, with cache and reasoning buckets on some calls.

Figures print; nothing is asserted (docs/BENCHMARKS.md records them).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE, Provider, UsageEvent
from llmtally.pricing import CostSource, PriceBook, known_models
from llmtally.publisher import UsagePublisher

PUBLISH_EVENTS = 5_000
SYNC_CALLS = 500
BUFFER_EVENTS = 10_000
PRICING_SECONDS = 2.0
BUS = "bench-llm-usage"


def _event(n: int, provider: Provider = Provider.ANTHROPIC, model: str = "claude-sonnet-4-5-20250929") -> UsageEvent:
    """A realistic event: a few thousand input tokens, some cached, sometimes reasoning, small metadata."""
    return UsageEvent(
        user_id=f"tenant-{n % 50}",
        request_id=f"req-{n}",
        provider=provider,
        model=model,
        operation_type=("query_generation", "conversation", "detection_rule", "rule_enrichment")[n % 4],
        input_tokens=800 + (n * 37) % 4000,
        cache_read_tokens=(n % 3) * 2048,
        cache_write_tokens=1024 if n % 11 == 0 else 0,
        output_tokens=150 + (n * 13) % 900,
        reasoning_tokens=256 if n % 5 == 0 else 0,
        latency_ms=400 + (n * 7) % 3000,
        metadata={"feature": "search", "attempt": n % 3},
    )


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    """Median and p99 in microseconds."""
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) / 1000, p99 / 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _events_client(endpoint: str) -> Any:
    import boto3

    client = boto3.client("events", endpoint_url=endpoint, region_name="us-east-1")
    client.create_event_bus(Name=BUS)
    return client


def _timed(calls: list[Callable[[], object]]) -> list[int]:
    samples: list[int] = []
    clock = time.perf_counter_ns
    for call in calls:
        started = clock()
        call()
        samples.append(clock() - started)
    return samples


def _publish_call(publisher: UsagePublisher, event: UsageEvent) -> Callable[[], object]:
    return lambda: publisher.publish(event)


def publish_cost(client: Any) -> tuple[tuple[float, float], dict[str, int]]:
    """publish() per event while the worker sends the same events to the bus."""
    publisher = UsagePublisher.for_eventbridge(BUS, client=client)
    for n in range(100):  # warm up: worker started, client connected
        publisher.publish(_event(n))
    publisher.flush(timeout=30)
    events = [_event(n) for n in range(PUBLISH_EVENTS)]
    samples = _timed([_publish_call(publisher, e) for e in events])
    publisher.flush(timeout=60)
    publisher.close(timeout=5)
    stats = publisher.stats()
    return _percentiles(samples), {"published": stats.published - 100, "dropped": stats.dropped}


def sync_put_events_cost(client: Any) -> tuple[float, float]:
    """The alternative: one synchronous PutEvents per event, on the caller's thread."""
    events = [_event(n) for n in range(SYNC_CALLS + 20)]

    def send(event: UsageEvent) -> Callable[[], object]:
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": event.to_json(),
            "EventBusName": BUS,
        }
        return lambda: client.put_events(Entries=[entry])

    calls = [send(e) for e in events]
    _timed(calls[:20])  # warm up
    return _percentiles(_timed(calls[20:]))


def _fill(publisher: UsagePublisher) -> int:
    """Publish one more than the buffer holds; only the buffer keeps the events alive."""
    return sum(publisher.publish(_event(n)) for n in range(BUFFER_EVENTS + 1))


def buffer_memory() -> tuple[int, int, int]:
    """Bytes held by a full buffer (events included), events accepted, and the mean JSON size."""
    publisher = UsagePublisher.for_eventbridge(BUS, client=object(), background=False, max_buffer=BUFFER_EVENTS)
    logging.getLogger("llmtally.publisher").setLevel(logging.ERROR)  # the drops below are the point
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    accepted = _fill(publisher)  # the 10,001st is dropped: the buffer is full
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    json_bytes = statistics.mean(len(_event(n).to_json().encode()) for n in range(200))
    publisher.close(timeout=0)  # counted dropped; nothing is sent
    logging.getLogger("llmtally.publisher").setLevel(logging.NOTSET)
    return held, accepted, round(json_bytes)


def _pricing_mix() -> list[UsageEvent]:
    models = [(provider, model) for provider in Provider for model in known_models(provider)]
    return [_event(n, *models[n % len(models)]) for n in range(2_000)]


def pricing_rate() -> tuple[float, int, int, dict[CostSource, int]]:
    """Events priced per second over the curated models (after one warm-up pass)."""
    book = PriceBook()
    events = _pricing_mix()
    sources: dict[CostSource, int] = {}
    for event in events:  # warm up: model lookup caches, first calculation
        source = book.price_event(event).source
        sources[source] = sources.get(source, 0) + 1
    priced = 0
    started = time.perf_counter()
    while time.perf_counter() - started < PRICING_SECONDS:
        for event in events:
            book.price_event(event)
        priced += len(events)
    elapsed = time.perf_counter() - started
    models = len({(e.provider, e.model) for e in events})
    return priced / elapsed, priced, models, sources


def main() -> None:
    with moto_server() as endpoint:
        client = _events_client(endpoint)
        (pub_median, pub_p99), delivered = publish_cost(client)
        sync_median, sync_p99 = sync_put_events_cost(client)
    held, accepted, json_bytes = buffer_memory()
    rate, priced, models, sources = pricing_rate()

    print(f"Caller-side cost per event (moto server on 127.0.0.1, EventBridge bus, Python {sys.version.split()[0]})")
    print(f"  {'':<44} {'median µs':>10} {'p99 µs':>10}")
    print(f"  {f'UsagePublisher.publish() × {PUBLISH_EVENTS:,}':<44} {pub_median:>10.1f} {pub_p99:>10.1f}")
    print(f"  {f'put_events, one call per event × {SYNC_CALLS}':<44} {sync_median:>10.0f} {sync_p99:>10.0f}")
    ratio = f"{sync_median / pub_median:,.0f}× / {sync_p99 / pub_p99:,.0f}×"
    print(f"  {'ratio (synchronous / publish)':<44} {ratio:>21}")
    print(f"  worker delivered {delivered['published']:,} of {PUBLISH_EVENTS:,}; dropped {delivered['dropped']}")
    print(f"\nMemory with the buffer full ({accepted:,} events accepted, the next dropped; tracemalloc)")
    print(f"  {held / 1e6:.1f} MB, {held / accepted:,.0f} bytes/event (event JSON ≈ {json_bytes} bytes)")
    print(f"\nPricing: PriceBook().price_event over {models} curated models of {len(Provider)} providers")
    mix = ", ".join(f"{source.value} {count}" for source, count in sorted(sources.items()))
    print(f"  {rate:,.0f} events/s ({priced:,} priced in {PRICING_SECONDS:.0f} s; per 2,000-event pass: {mix})")


if __name__ == "__main__":
    main()

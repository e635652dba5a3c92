"""UsagePublisher against the moto server: both transports end to end, a dead endpoint, the exit flush."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmtally import aws
from llmtally.events import UsageEvent
from llmtally.publisher import PublisherStats, RetryPolicy, UsagePublisher
from llmtally.settings import get_settings
from tests.conftest import MotoServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("publisher_child.py")


def varied_events(count: int) -> list[UsageEvent]:
    """Events that use every part of the contract: buckets, cost, metadata, errors."""
    providers = [("anthropic", "claude-sonnet-4-5-20250929"), ("openai", "gpt-4o"), ("google", "gemini-2.5-pro")]
    events = []
    for i in range(count):
        provider, model = providers[i % len(providers)]
        failed = i % 7 == 3
        events.append(
            UsageEvent(
                user_id=f"tenant-{i % 4}",
                request_id=f"req-{i}",
                provider=provider,
                model=model,
                operation_type="query_generation" if i % 2 else "conversation",
                status="error" if failed else "ok",
                error_type="rate_limit" if failed else None,
                input_tokens=1000 + i,
                cache_read_tokens=(i % 3) * 500,
                cache_write_tokens=100 if i % 5 == 0 else 0,
                output_tokens=200 + i,
                reasoning_tokens=i % 2 * 64,
                latency_ms=300 + i,
                reported_cost_usd=Decimal(f"0.{i:03d}012345"),
                metadata={"feature": "search", "attempt": i % 3, "cached": bool(i % 2), "note": "naïve ✓"},
            )
        )
    return events


def receive_all(sqs: Any, queue_url: str, expected: int, timeout: float = 30.0) -> list[str]:
    """Bodies from the queue until `expected` arrived (or the time is up), deleting each."""
    bodies: list[str] = []
    deadline = time.monotonic() + timeout
    while len(bodies) < expected and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if not messages:
            time.sleep(0.05)
    return bodies


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def queue(moto: MotoServer) -> tuple[Any, str]:
    sqs: Any = moto.client("sqs")
    url = sqs.create_queue(QueueName=get_settings().names.ingest_queue)["QueueUrl"]
    return sqs, url


@pytest.fixture
def bus_to_queue(moto: MotoServer, queue: tuple[Any, str]) -> str:
    """The deployment's shape: a custom bus and a rule on source/detail-type targeting the queue."""
    sqs, url = queue
    names = get_settings().names
    events: Any = moto.client("events")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name=names.event_bus)
    events.put_rule(
        Name=names.ingest_rule,
        EventBusName=names.event_bus,
        EventPattern=json.dumps({"source": ["llmtally"], "detail-type": ["LLMUsage"]}),
    )
    events.put_targets(Rule=names.ingest_rule, EventBusName=names.event_bus, Targets=[{"Id": "ingest", "Arn": arn}])
    return names.event_bus


@pytest.fixture
def closing() -> Iterator[list[UsagePublisher]]:
    publishers: list[UsagePublisher] = []
    yield publishers
    for publisher in publishers:
        publisher.close(timeout=2)


def test_sqs_transport_delivers_every_event_exactly_as_sent(
    queue: tuple[Any, str], closing: list[UsagePublisher]
) -> None:
    # Given a publisher on the queue, with the client built lazily from settings (the moto endpoint)
    sqs, url = queue
    publisher = UsagePublisher.for_sqs(url)
    closing.append(publisher)
    events = varied_events(45)

    # When the events are published and flushed
    assert all(publisher.publish(event) for event in events)
    assert publisher.flush(timeout=30)

    # Then the queue holds each of them once, equal to what was sent
    received = [UsageEvent.from_json(body) for body in receive_all(sqs, url, len(events))]
    assert sorted(received, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)
    assert publisher.stats() == PublisherStats(published=45, retried=0, dropped=0, failed=0, queued=0)


def test_eventbridge_transport_delivers_every_event_through_the_rule(
    queue: tuple[Any, str], bus_to_queue: str, closing: list[UsagePublisher]
) -> None:
    # Given the default publisher shape: the settings' bus, client from settings
    sqs, url = queue
    publisher = UsagePublisher.for_eventbridge()
    closing.append(publisher)
    events = varied_events(33)

    # When the events are published and flushed
    assert all(publisher.publish(event) for event in events)
    assert publisher.flush(timeout=30)

    # Then each arrives once in the queue as an EventBridge envelope whose detail is the event
    bodies = [json.loads(body) for body in receive_all(sqs, url, len(events))]
    assert {(b["source"], b["detail-type"]) for b in bodies} == {("llmtally", "LLMUsage")}
    received = [UsageEvent.from_json(json.dumps(b["detail"])) for b in bodies]
    assert sorted(received, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)
    assert publisher.stats() == PublisherStats(published=33, retried=0, dropped=0, failed=0, queued=0)


def test_a_missing_bus_fails_the_events_without_retrying_forever(
    moto: MotoServer, closing: list[UsagePublisher]
) -> None:
    publisher = UsagePublisher.for_eventbridge("no-such-bus")
    closing.append(publisher)

    publisher.publish(varied_events(1)[0])

    assert publisher.flush(timeout=30)
    stats = publisher.stats()
    assert stats.published + stats.failed == 1
    assert stats.queued == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_endpoint_never_raises_or_blocks_the_caller(
    monkeypatch: pytest.MonkeyPatch, closing: list[UsagePublisher]
) -> None:
    # Given settings that point at a closed local port, and a slow backoff
    monkeypatch.setenv("LLMTALLY_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    aws.reset_clients()
    retry = RetryPolicy(max_attempts=2, base_delay=2.0, max_delay=2.0)
    publisher = UsagePublisher.for_eventbridge("bus", retry=retry)
    closing.append(publisher)
    events = varied_events(12)

    # When events are published, each call returns True at once (only enqueued)
    assert [publisher.publish(event) for event in events] == [True] * 12
    # And a short flush gives up and says so, rather than waiting for the endpoint
    assert publisher.flush(timeout=0.05) is False

    # Then, after the bounded retries, every event is counted failed and flush reports them settled
    assert wait_until(lambda: publisher.stats().failed == 12)
    assert publisher.flush(timeout=5) is True
    stats = publisher.stats()
    assert (stats.published, stats.failed, stats.queued) == (0, 12, 0)
    assert stats.retried == 12


@pytest.mark.parametrize("mode", ["background", "lambda"])
def test_a_process_that_exits_normally_flushes_its_events(moto: MotoServer, queue: tuple[Any, str], mode: str) -> None:
    # Given a child process that publishes and exits without flushing or closing
    sqs, url = queue
    env = {**os.environ, "LLMTALLY_ENDPOINT_URL": moto.endpoint_url, "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}"}

    child = subprocess.run(
        [sys.executable, str(CHILD), url, "25", mode], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    # Then its events are in the queue: the exit hook flushed them
    assert child.returncode == 0, child.stderr
    sent_ids = json.loads(child.stdout.strip().splitlines()[-1])
    received = [UsageEvent.from_json(body) for body in receive_all(sqs, url, len(sent_ids))]
    assert sorted(e.event_id for e in received) == sorted(sent_ids)

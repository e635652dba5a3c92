"""UsagePublisher without AWS: batching, bounds, retries, never raising, flush, fork safety, Lambda mode.

The AWS clients here are small fakes that record every call (our own seam: the transports only
call `put_events` / `send_message_batch`). Nothing is timed; waits are bounded polls.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.exceptions as boto_errors
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from llmtally import aws
from llmtally import publisher as publisher_module
from llmtally.events import UsageEvent
from llmtally.publisher import (
    MAX_BYTES_PER_CALL,
    MAX_ENTRIES_PER_CALL,
    EventBridgeTransport,
    Outcome,
    PublisherStats,
    RetryPolicy,
    SqsTransport,
    UsagePublisher,
    classify_exception,
    default_publisher,
    set_default_publisher,
)

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
Responder = Callable[[int, list[dict[str, Any]]], dict[str, Any]]


# -- fakes and helpers ---------------------------------------------------------------------------


class FakeEventBridge:
    """Records each PutEvents call; `respond(call_number, entries)` decides the answer (default: all ok)."""

    def __init__(self, respond: Responder | None = None, *, gate: threading.Event | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self._respond = respond
        self._gate = gate
        self._lock = threading.Lock()

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self._gate is not None:
            self._gate.wait(30)
        with self._lock:
            self.calls.append(Entries)
            number = len(self.calls)
        if self._respond is not None:
            return self._respond(number, Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": f"id-{number}-{i}"} for i in range(len(Entries))]}

    def sent_ids(self) -> list[str]:
        return [json.loads(entry["Detail"])["event_id"] for call in self.calls for entry in call]


class FakeSqs:
    """Records each SendMessageBatch call; `respond` decides the answer (default: all successful)."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self._respond = respond

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        if self._respond is not None:
            return self._respond(len(self.calls), Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries], "Failed": []}


class RaisingClient:
    """A client whose every call raises `exc`; counts calls and the entries they carried."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls = 0
        self.entries = 0

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        self.entries += len(Entries)
        raise self.exc


def make_event(n: int = 0, **changes: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "user_id": f"user-{n % 3}",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5-20250929",
        "operation_type": "query_generation",
        "input_tokens": 1000 + n,
        "output_tokens": 200,
        "latency_ms": 500,
        "request_id": f"req-{n}",
    }
    fields.update(changes)
    return UsageEvent(**fields)


def big_event(n: int = 0) -> UsageEvent:
    """An event close to the contract's size limits (16 metadata keys, ~2 KB of metadata)."""
    # ≈ 2,000 bytes as the contract measures (ASCII-escaped JSON); "é" is 2 bytes on the wire
    metadata: dict[str, Any] = {f"k{i:02d}": "é" * 5 + "x" * 85 for i in range(16)}
    return make_event(n, metadata=metadata)


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.fixture
def make_publisher() -> Iterator[Callable[..., UsagePublisher]]:
    """Builds publishers and closes every one of them after the test."""
    made: list[UsagePublisher] = []

    def build(client: Any = None, *, sqs: bool = False, **options: Any) -> UsagePublisher:
        options.setdefault("retry", FAST_RETRY)
        if sqs:
            built = UsagePublisher.for_sqs("https://sqs.us-east-1.amazonaws.com/1/q", client=client, **options)
        else:
            built = UsagePublisher.for_eventbridge("bus", client=client, **options)
        made.append(built)
        return built

    yield build
    for built in made:
        built.close(timeout=1)


def stats_total(stats: PublisherStats) -> int:
    return stats.published + stats.failed + stats.dropped + stats.queued


# -- the happy path ------------------------------------------------------------------------------


def test_publish_returns_at_once_and_the_worker_delivers_everything(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    # Given a background publisher
    fake = FakeEventBridge()
    publisher = make_publisher(fake)
    events = [make_event(i) for i in range(25)]

    # When 25 events are published and flushed
    accepted = [publisher.publish(event) for event in events]
    flushed = publisher.flush(timeout=10)

    # Then all were accepted and sent once each, in order, in batches of at most 10
    assert accepted == [True] * 25
    assert flushed is True
    assert fake.sent_ids() == [e.event_id for e in events]
    assert all(len(call) <= MAX_ENTRIES_PER_CALL for call in fake.calls)
    assert publisher.stats() == PublisherStats(published=25, retried=0, dropped=0, failed=0, queued=0)


def test_eventbridge_entries_carry_source_detail_type_bus_and_the_event_json(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, background=False)
    event = make_event(metadata={"feature": "search"})

    publisher.publish(event)
    publisher.flush(timeout=5)

    [[entry]] = fake.calls
    assert entry["Source"] == "llmtally"
    assert entry["DetailType"] == "LLMUsage"
    assert entry["EventBusName"] == "bus"
    assert UsageEvent.from_json(entry["Detail"]) == event


def test_sqs_bodies_are_the_event_json_with_batch_unique_ids(make_publisher: Callable[..., UsagePublisher]) -> None:
    fake = FakeSqs()
    publisher = make_publisher(fake, sqs=True, background=False)
    events = [make_event(i) for i in range(12)]

    for event in events:
        publisher.publish(event)
    assert publisher.flush(timeout=5)

    assert [len(call) for call in fake.calls] == [10, 2]
    for call in fake.calls:
        assert len({m["Id"] for m in call}) == len(call)
        assert all("MessageGroupId" not in m for m in call)
    assert [UsageEvent.from_json(m["MessageBody"]) for call in fake.calls for m in call] == events


def test_fifo_queues_get_a_group_per_tenant_and_the_event_id_as_dedupe_id() -> None:
    transport = SqsTransport("https://sqs.us-east-1.amazonaws.com/1/ingest.fifo")
    fake = FakeSqs()
    event = make_event(1)
    publisher = UsagePublisher(transport, client=fake, background=False)

    publisher.publish(event)
    publisher.close(timeout=5)

    [[message]] = fake.calls
    assert message["MessageGroupId"] == event.user_id
    assert message["MessageDeduplicationId"] == event.event_id


def test_a_partial_batch_is_sent_after_the_batch_wait_without_a_flush(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, max_batch_wait=0.01)

    publisher.publish(make_event())

    assert wait_until(lambda: publisher.stats().published == 1)
    assert len(fake.calls) == 1


# -- batching limits -----------------------------------------------------------------------------


def test_batches_never_exceed_ten_entries(make_publisher: Callable[..., UsagePublisher]) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, background=False)

    for i in range(23):
        publisher.publish(make_event(i))
    publisher.flush(timeout=5)

    assert [len(call) for call in fake.calls] == [10, 10, 3]


def test_entry_size_is_measured_as_aws_does_in_utf8_bytes() -> None:
    detail = big_event().to_json()
    assert len(detail.encode()) > len(detail)  # "é" is two bytes

    assert EventBridgeTransport("bus").entry_size(detail) == len(b"llmtally") + len(b"LLMUsage") + len(detail.encode())
    assert SqsTransport("https://q").entry_size(detail) == len(detail.encode())


def test_events_near_the_contract_limits_still_fill_a_ten_entry_batch_under_256_kib(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, background=False)
    events = [big_event(i) for i in range(10)]

    for event in events:
        publisher.publish(event)
    publisher.flush(timeout=5)

    transport = EventBridgeTransport("bus")
    assert [len(call) for call in fake.calls] == [10]
    assert sum(transport.entry_size(e["Detail"]) for e in fake.calls[0]) <= MAX_BYTES_PER_CALL


@pytest.mark.parametrize("sqs", [False, True])
def test_batches_are_cut_by_byte_size_before_the_limit_is_crossed(
    make_publisher: Callable[..., UsagePublisher], sqs: bool
) -> None:
    # Given a byte limit that fits exactly three large events (and not a fourth)
    transport = SqsTransport("https://q") if sqs else EventBridgeTransport("bus")
    events = [big_event(i) for i in range(7)]
    sizes = [transport.entry_size(e.to_json()) for e in events]
    limit = sum(sizes[:3]) + min(sizes) - 1
    fake: Any = FakeSqs() if sqs else FakeEventBridge()
    publisher = make_publisher(fake, sqs=sqs, background=False, max_batch_bytes=limit)

    # When they are flushed
    for event in events:
        publisher.publish(event)
    assert publisher.flush(timeout=5)

    # Then each call holds three (the last one one), none over the limit, and nothing is lost
    key = "MessageBody" if sqs else "Detail"
    assert [len(call) for call in fake.calls] == [3, 3, 1]
    assert all(sum(transport.entry_size(e[key]) for e in call) <= limit for call in fake.calls)
    assert publisher.stats().published == 7


def test_an_event_larger_than_one_call_is_counted_failed_and_never_sent(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    fake = FakeEventBridge()
    small, large = make_event(1), big_event(2)
    limit = EventBridgeTransport("bus").entry_size(small.to_json()) + 10
    publisher = make_publisher(fake, background=False, max_batch_bytes=limit)

    publisher.publish(large)
    publisher.publish(small)

    assert publisher.flush(timeout=5) is True
    assert fake.sent_ids() == [small.event_id]
    assert publisher.stats() == PublisherStats(published=1, retried=0, dropped=0, failed=1, queued=0)


# -- the bounded buffer --------------------------------------------------------------------------


def test_a_full_buffer_drops_and_counts_instead_of_blocking(make_publisher: Callable[..., UsagePublisher]) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, background=False, max_buffer=5)

    accepted = [publisher.publish(make_event(i)) for i in range(8)]

    assert accepted == [True] * 5 + [False] * 3
    assert publisher.stats() == PublisherStats(published=0, retried=0, dropped=3, failed=0, queued=5)
    assert publisher.flush(timeout=5)
    assert publisher.stats() == PublisherStats(published=5, retried=0, dropped=3, failed=0, queued=0)
    assert publisher.publish(make_event(9)) is True  # room again


def test_a_full_buffer_in_background_mode_drops_while_the_worker_is_stuck(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    # Given a worker stuck inside a call (the gate is closed)
    gate = threading.Event()
    fake = FakeEventBridge(gate=gate)
    publisher = make_publisher(fake, max_buffer=3, max_batch_wait=0)
    publisher.publish(make_event(0))
    assert wait_until(lambda: publisher.stats().queued == 1 and not publisher._buffer)

    # When more events come than the buffer holds
    accepted = [publisher.publish(make_event(i)) for i in range(1, 6)]

    # Then the overflow is dropped at once, and the rest delivered once the call returns
    assert accepted == [True, True, True, False, False]
    gate.set()
    assert publisher.flush(timeout=10)
    assert publisher.stats() == PublisherStats(published=4, retried=0, dropped=2, failed=0, queued=0)


def test_anything_but_a_usage_event_is_dropped(make_publisher: Callable[..., UsagePublisher]) -> None:
    publisher = make_publisher(FakeEventBridge(), background=False)

    assert publisher.publish({"user_id": "u"}) is False  # type: ignore[arg-type]
    assert publisher.stats().dropped == 1


# -- retries -------------------------------------------------------------------------------------


def test_eventbridge_entries_that_failed_transiently_are_resent_alone(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    # Given a bus that throttles the second entry of the first call
    def respond(number: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        results: list[dict[str, Any]] = [{"EventId": f"e{number}-{i}"} for i in range(len(entries))]
        if number == 1:
            results[1] = {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}
        return {"FailedEntryCount": int(number == 1), "Entries": results}

    fake = FakeEventBridge(respond)
    publisher = make_publisher(fake, background=False)
    events = [make_event(i) for i in range(3)]

    for event in events:
        publisher.publish(event)
    assert publisher.flush(timeout=5)

    # Then only that entry is sent again, and every event is delivered once
    assert [len(call) for call in fake.calls] == [3, 1]
    assert json.loads(fake.calls[1][0]["Detail"])["event_id"] == events[1].event_id
    assert publisher.stats() == PublisherStats(published=3, retried=1, dropped=0, failed=0, queued=0)


def test_eventbridge_entries_that_can_never_succeed_fail_without_a_retry(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    def respond(number: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        results: list[dict[str, Any]] = [{"EventId": "ok"} for _ in entries]
        results[0] = {"ErrorCode": "MalformedDetail", "ErrorMessage": "bad"}
        return {"FailedEntryCount": 1, "Entries": results}

    fake = FakeEventBridge(respond)
    publisher = make_publisher(fake, background=False)
    for i in range(2):
        publisher.publish(make_event(i))

    assert publisher.flush(timeout=5)
    assert len(fake.calls) == 1
    assert publisher.stats() == PublisherStats(published=1, retried=0, dropped=0, failed=1, queued=0)


def test_sqs_retries_server_faults_and_fails_sender_faults(make_publisher: Callable[..., UsagePublisher]) -> None:
    # Given a queue that fails entry 0 as the sender's fault and entry 1 as its own, once
    def respond(number: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        failed: list[dict[str, Any]] = []
        if number == 1:
            failed = [
                {"Id": "0", "SenderFault": True, "Code": "InvalidMessageContents"},
                {"Id": "1", "SenderFault": False, "Code": "InternalError"},
            ]
        failed_ids = {f["Id"] for f in failed}
        return {"Successful": [{"Id": e["Id"]} for e in entries if e["Id"] not in failed_ids], "Failed": failed}

    fake = FakeSqs(respond)
    publisher = make_publisher(fake, sqs=True, background=False)
    events = [make_event(i) for i in range(3)]
    for event in events:
        publisher.publish(event)

    assert publisher.flush(timeout=5)

    assert [len(call) for call in fake.calls] == [3, 1]
    assert UsageEvent.from_json(fake.calls[1][0]["MessageBody"]) == events[1]
    assert publisher.stats() == PublisherStats(published=2, retried=1, dropped=0, failed=1, queued=0)


def test_a_result_missing_from_the_answer_is_resent(make_publisher: Callable[..., UsagePublisher]) -> None:
    def respond(number: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        listed = entries[1:] if number == 1 else entries
        return {"Successful": [{"Id": e["Id"]} for e in listed], "Failed": []}

    fake = FakeSqs(respond)
    publisher = make_publisher(fake, sqs=True, background=False)
    for i in range(2):
        publisher.publish(make_event(i))

    assert publisher.flush(timeout=5)
    assert [len(call) for call in fake.calls] == [2, 1]
    assert publisher.stats().published == 2


def test_an_endlessly_throttled_entry_is_sent_max_attempts_times_then_failed(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    client = RaisingClient(client_error("ThrottlingException", 400))
    retry = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.001)
    publisher = make_publisher(client, retry=retry)
    publisher.publish(make_event())

    assert publisher.flush(timeout=10)
    assert client.calls == 4
    assert publisher.stats() == PublisherStats(published=0, retried=3, dropped=0, failed=1, queued=0)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0, max_value=10),
    extra=st.floats(min_value=0, max_value=100),
    seed=st.integers(),
)
def test_backoff_is_bounded_and_grows(attempt: int, base: float, extra: float, seed: int) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=base, max_delay=base + extra)
    nominal = min(policy.max_delay, base * 2 ** min(attempt - 1, 60))

    delay = policy.delay(attempt, random.Random(seed))

    assert nominal / 2 <= delay <= nominal <= policy.max_delay


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(base_delay=2, max_delay=1)


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (client_error("ThrottlingException", 400), Outcome.RETRY),
        (client_error("InternalFailure", 500), Outcome.RETRY),
        (client_error("ServiceUnavailable", 503), Outcome.RETRY),
        (client_error("TooManyRequests", 429), Outcome.RETRY),
        (client_error("AccessDeniedException", 403), Outcome.FAILED),
        (client_error("ResourceNotFoundException", 400), Outcome.FAILED),
        (client_error("AWS.SimpleQueueService.NonExistentQueue", 400), Outcome.FAILED),
        (boto_errors.EndpointConnectionError(endpoint_url="http://x"), Outcome.RETRY),
        (boto_errors.ReadTimeoutError(endpoint_url="http://x"), Outcome.RETRY),
        (boto_errors.NoCredentialsError(), Outcome.FAILED),
        (boto_errors.ParamValidationError(report="bad"), Outcome.FAILED),
        (RuntimeError("bug"), Outcome.FAILED),
    ],
)
def test_whole_call_errors_are_classified(exc: Exception, outcome: Outcome) -> None:
    assert classify_exception(exc)[0] is outcome


# -- never raising -------------------------------------------------------------------------------


def _every_botocore_error() -> list[Exception]:
    errors: list[Exception] = []
    classes: dict[str, Any] = vars(boto_errors)
    for name, cls in sorted(classes.items()):
        if isinstance(cls, type) and issubclass(cls, boto_errors.BotoCoreError):
            error_class: Any = cls
            exc = error_class.__new__(error_class)  # constructors want per-class keywords; the type matters
            Exception.__init__(exc, f"{name} raised")
            errors.append(exc)
    for code, status in [("ThrottlingException", 400), ("InternalFailure", 500), ("AccessDenied", 403)]:
        errors.append(client_error(code, status))
    errors += [ClientError({}, "PutEvents"), RuntimeError("boom"), KeyError("Entries"), MemoryError()]
    return errors


@pytest.mark.parametrize("exc", _every_botocore_error(), ids=lambda e: type(e).__name__)
def test_no_client_error_ever_reaches_the_caller(exc: Exception, make_publisher: Callable[..., UsagePublisher]) -> None:
    # Given a client that raises on every call
    client = RaisingClient(exc)
    publisher = make_publisher(client, retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.001))

    # When events are published, flushed and the publisher closed
    accepted = [publisher.publish(make_event(i)) for i in range(3)]
    flushed = publisher.flush(timeout=10)
    closed = publisher.close(timeout=5)

    # Then nothing raised, and every event was given up as failed after one or two sends
    assert accepted == [True] * 3
    assert flushed is closed is True
    assert 3 <= client.entries <= 6
    assert publisher.stats() == PublisherStats(published=0, retried=client.entries - 3, dropped=0, failed=3, queued=0)


@pytest.mark.parametrize(
    "response",
    [{}, {"Entries": None}, {"Entries": [{}]}, {"Entries": [{"EventId": "x"}] * 11}, None, "junk"],
    ids=["empty", "none-entries", "no-event-id", "too-many", "none", "string"],
)
def test_malformed_answers_never_raise(response: Any, make_publisher: Callable[..., UsagePublisher]) -> None:
    fake = FakeEventBridge(lambda number, entries: response)
    publisher = make_publisher(fake, background=False)
    publisher.publish(make_event())

    assert publisher.flush(timeout=5) is True
    stats = publisher.stats()
    assert stats.published + stats.failed == 1
    assert stats.queued == 0


def test_failures_are_logged_by_event_id_never_by_content(
    make_publisher: Callable[..., UsagePublisher], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llmtally.publisher")
    secret_ish = "customer-prompt-fragment"
    event = make_event(metadata={"note": secret_ish})
    client = RaisingClient(boto_errors.ParamValidationError(report=f"value: {secret_ish}"))
    publisher = make_publisher(client, background=False)

    publisher.publish(event)
    publisher.flush(timeout=5)

    assert event.event_id in caplog.text
    assert secret_ish not in caplog.text


# -- flush and close -----------------------------------------------------------------------------


def test_flush_returns_false_when_its_timeout_passes_first(make_publisher: Callable[..., UsagePublisher]) -> None:
    # Given a worker stuck in a call
    gate = threading.Event()
    fake = FakeEventBridge(gate=gate)
    publisher = make_publisher(fake)
    publisher.publish(make_event())

    # When a flush is given a short time, it gives up and says so; the event stays queued
    assert publisher.flush(timeout=0.05) is False
    assert publisher.stats().queued == 1

    # And once the call returns, a later flush succeeds
    gate.set()
    assert publisher.flush(timeout=10) is True
    assert publisher.stats().published == 1


def test_flush_with_nothing_queued_is_true_at_once(make_publisher: Callable[..., UsagePublisher]) -> None:
    publisher = make_publisher(FakeEventBridge())
    assert publisher.flush(timeout=0) is True


def test_close_refuses_new_events_and_counts_the_unsent_as_dropped(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    gate = threading.Event()
    fake = FakeEventBridge(gate=gate)
    publisher = make_publisher(fake, max_batch_wait=0)
    for i in range(15):
        publisher.publish(make_event(i))
    assert wait_until(lambda: len(publisher._buffer) < 15)

    # When closing while the first batch is stuck
    assert publisher.close(timeout=0.05) is False
    gate.set()

    # Then new events are refused, the stuck batch settles, and everything is accounted for
    assert publisher.publish(make_event(99)) is False
    assert wait_until(lambda: publisher.stats().queued == 0)
    stats = publisher.stats()
    assert stats_total(stats) == 16
    assert stats.published == len(fake.calls[0])
    assert publisher.closed
    assert publisher.close(timeout=1) is True  # idempotent


def test_close_cuts_a_backoff_short_and_fails_the_batch(make_publisher: Callable[..., UsagePublisher]) -> None:
    client = RaisingClient(client_error("ThrottlingException", 400))
    publisher = make_publisher(client, retry=RetryPolicy(max_attempts=5, base_delay=60, max_delay=60))
    publisher.publish(make_event())
    assert wait_until(lambda: client.calls == 1)

    assert publisher.close(timeout=0.05) is False

    assert wait_until(lambda: publisher.stats().failed == 1)
    assert client.calls == 1


def test_counters_add_up_to_the_number_of_publish_calls_under_concurrency(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    # Given a bus that throttles every third entry it sees, and a small buffer
    delivered: list[str] = []
    seen = {"n": 0}

    def respond(number: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        for entry in entries:
            seen["n"] += 1
            if seen["n"] % 3 == 0:
                results.append({"ErrorCode": "ThrottlingException"})
            else:
                results.append({"EventId": "x"})
                delivered.append(json.loads(entry["Detail"])["event_id"])
        return {"Entries": results}

    fake = FakeEventBridge(respond)
    publisher = make_publisher(fake, max_buffer=200, max_batch_wait=0.001)

    # When eight threads publish 250 events each
    def produce(worker: int) -> None:
        for i in range(250):
            publisher.publish(make_event(worker * 1000 + i))

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert publisher.flush(timeout=30)

    # Then every call is accounted for exactly once, and nothing was delivered twice
    stats = publisher.stats()
    assert stats_total(stats) == 2000
    assert stats.queued == 0
    assert len(delivered) == len(set(delivered)) == stats.published
    assert stats.published + stats.dropped + stats.failed == 2000


# -- Lambda mode ---------------------------------------------------------------------------------


def test_lambda_mode_sends_nothing_until_flush_and_then_sends_in_the_caller(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, background=False)
    events = [make_event(i) for i in range(12)]

    for event in events:
        publisher.publish(event)
    assert fake.calls == []
    assert publisher._worker is None

    # flush sends synchronously: the calls are there when it returns
    assert publisher.flush(timeout=5) is True
    assert fake.sent_ids() == [e.event_id for e in events]
    assert publisher._worker is None


def test_lambda_mode_flush_with_no_time_sends_nothing(make_publisher: Callable[..., UsagePublisher]) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, background=False)
    publisher.publish(make_event())

    assert publisher.flush(timeout=0) is False
    assert fake.calls == []
    assert publisher.stats().queued == 1


def test_lambda_mode_keeps_entries_it_had_no_time_to_retry(make_publisher: Callable[..., UsagePublisher]) -> None:
    # Given a throttled bus and a backoff longer than the flush's time
    calls = {"n": 0}

    def respond(number: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        calls["n"] = number
        if number == 1:
            return {"Entries": [{"ErrorCode": "ThrottlingException"} for _ in entries]}
        return {"Entries": [{"EventId": "x"} for _ in entries]}

    fake = FakeEventBridge(respond)
    retry = RetryPolicy(max_attempts=3, base_delay=30, max_delay=30)
    publisher = make_publisher(fake, background=False, retry=retry)
    publisher.publish(make_event())

    # When the flush runs out of time before the retry, the event stays queued
    assert publisher.flush(timeout=0.5) is False
    assert publisher.stats() == PublisherStats(published=0, retried=0, dropped=0, failed=0, queued=1)

    # And the next invocation's flush (the bus has recovered) delivers it
    assert publisher.flush(timeout=5) is True
    assert len(fake.calls) == 2
    assert publisher.stats().published == 1


class FakeLambdaContext:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_flush_after_flushes_when_the_handler_returns_or_raises(
    make_publisher: Callable[..., UsagePublisher],
) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, background=False)

    @publisher.flush_after
    def handler(event: dict[str, Any], context: Any) -> str:
        publisher.publish(make_event(event["n"]))
        if event.get("fail"):
            raise RuntimeError("handler failed")
        return "done"

    assert handler({"n": 1}, FakeLambdaContext(30_000)) == "done"
    assert len(fake.calls) == 1
    with pytest.raises(RuntimeError, match="handler failed"):
        handler({"n": 2, "fail": True}, FakeLambdaContext(30_000))
    assert len(fake.calls) == 2
    assert handler.__name__ == "handler"


def test_flush_after_respects_the_invocations_remaining_time(make_publisher: Callable[..., UsagePublisher]) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, background=False)

    @publisher.flush_after
    def handler(event: dict[str, Any], context: Any) -> None:
        publisher.publish(make_event())

    handler({}, FakeLambdaContext(100))  # less time left than the safety margin: nothing sent
    assert fake.calls == []
    assert publisher.stats().queued == 1


# -- clients, settings, defaults -----------------------------------------------------------------


def test_the_client_is_built_lazily_from_settings_by_the_sender(
    make_publisher: Callable[..., UsagePublisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    fake = FakeSqs()

    def client(service: str, settings: Any = None) -> Any:
        built.append(service)
        return fake

    monkeypatch.setattr(aws, "client", client)
    publisher = make_publisher(None, sqs=True)
    assert built == []

    publisher.publish(make_event())
    assert publisher.flush(timeout=5)

    assert built == ["sqs"]
    assert len(fake.calls) == 1


def test_the_default_bus_name_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_PREFIX", "acme-prod")
    aws.reset_clients()

    publisher = UsagePublisher.for_eventbridge(client=FakeEventBridge(), background=False)

    assert publisher.target == "EventBridge bus acme-prod-llm-usage"
    publisher.close(timeout=1)


def test_the_default_publisher_is_shared_and_replaceable() -> None:
    mine = UsagePublisher.for_eventbridge("bus", client=FakeEventBridge(), background=False)
    previous = set_default_publisher(mine)
    try:
        assert default_publisher() is mine
        assert default_publisher() is default_publisher()
    finally:
        set_default_publisher(previous)
        mine.close(timeout=1)


def test_bad_options_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="max_buffer"):
        UsagePublisher.for_sqs("https://q", client=FakeSqs(), max_buffer=0)
    with pytest.raises(ValueError, match="max_batch_bytes"):
        UsagePublisher.for_sqs("https://q", client=FakeSqs(), max_batch_bytes=MAX_BYTES_PER_CALL + 1)


def test_exit_hook_closes_every_open_publisher(
    make_publisher: Callable[..., UsagePublisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeEventBridge()
    publisher = make_publisher(fake, max_batch_wait=60)
    publisher.publish(make_event())
    monkeypatch.setattr(publisher_module, "_live", {publisher})  # leave other tests' publishers alone

    publisher_module._close_all_on_shutdown()

    assert publisher.closed
    assert len(fake.calls) == 1
    assert publisher not in publisher_module._live


# -- fork ----------------------------------------------------------------------------------------


# Python 3.12+ warns about forking a process with threads (the moto server and workers are some).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("background", [True, False])
def test_a_forked_child_starts_empty_and_leaves_the_parent_untouched(
    make_publisher: Callable[..., UsagePublisher], background: bool
) -> None:
    # Given a parent with events queued and a worker stuck (or none, in Lambda mode)
    gate = threading.Event()
    parent_fake = FakeEventBridge(gate=gate)
    publisher = make_publisher(parent_fake, background=background, max_batch_wait=60)
    parent_events = [make_event(i) for i in range(3)]
    for event in parent_events:
        publisher.publish(event)
    before = publisher.stats()

    # When the process forks and the child publishes and flushes its own event
    # (multiprocessing's fork start method: a plain os.fork, and the child never returns into pytest)
    fork = multiprocessing.get_context("fork")
    receiver, sender = fork.Pipe(duplex=False)

    def child() -> None:
        gate.set()  # the child's copy of the gate
        fresh = publisher.stats()
        child_event = make_event(42)
        published = publisher.publish(child_event)
        flushed = publisher.flush(timeout=10)
        sender.send(
            {
                "fresh": list(fresh_tuple(fresh)),
                "published": published,
                "flushed": flushed,
                "after": list(fresh_tuple(publisher.stats())),
                "sent": parent_fake.sent_ids(),
                "child_event": child_event.event_id,
            }
        )

    process = fork.Process(target=child)
    process.start()
    sender.close()
    report = receiver.recv()
    process.join(timeout=30)
    assert process.exitcode == 0

    # Then the child began with an empty buffer and zero counters, and sent only its own event
    assert report["fresh"] == [0, 0, 0, 0, 0]
    assert report["published"] is True
    assert report["flushed"] is True
    assert report["after"] == [1, 0, 0, 0, 0]
    assert report["sent"] == [report["child_event"]]
    # And the parent's counters and calls are as before the fork
    assert publisher.stats() == before
    assert parent_fake.calls == []
    gate.set()
    assert publisher.flush(timeout=10)
    assert sorted(parent_fake.sent_ids()) == sorted(e.event_id for e in parent_events)


def fresh_tuple(stats: PublisherStats) -> tuple[int, ...]:
    return (stats.published, stats.retried, stats.dropped, stats.failed, stats.queued)

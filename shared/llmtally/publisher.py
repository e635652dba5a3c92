"""Fire-and-forget usage publishing: `publish()` only enqueues; sending happens elsewhere.

Tracking must never slow down or break the LLM call it measures, so `UsagePublisher.publish`
appends the event to a bounded in-memory buffer and returns at once (False when the event was
dropped because the buffer is full or the publisher closed — it never blocks and never raises).

Two ways to send what is buffered:

* **Background mode** (the default, for long-running services): a daemon worker thread takes
  events from the buffer, batches them (≤ 10 entries and ≤ 256 KiB per call, measured as AWS
  measures them; a partial batch waits at most `max_batch_wait` for company) and sends them,
  retrying throttling, transient errors and per-entry failures with exponential backoff and
  jitter, a bounded number of times. Entries that can never succeed (a sender fault, an event too
  large) are counted `failed` at once. At interpreter exit every live publisher is flushed with a
  bounded timeout.

* **Lambda mode** (`background=False`): no thread is relied on, because Lambda freezes the
  sandbox between invocations. Events wait in the buffer until the handler calls `flush()`,
  which sends them synchronously in the caller's thread, within its timeout::

      publisher = UsagePublisher.for_eventbridge(background=False)

      @publisher.flush_after          # flushes after every invocation, even a failed one
      def handler(event, context):
          ...
          publisher.publish(usage_event)
          return answer

  `flush_after` bounds the flush by the invocation's remaining time when the second argument is
  a Lambda context.

Transports: EventBridge `PutEvents` (source `llmtally`, detail-type `LLMUsage`, the event's JSON
as `detail`) and SQS `SendMessageBatch` (the event's JSON as the body). Delivery is at-least-once;
the ingest dedupes on `event_id`, so a retried entry that had in fact arrived costs nothing.

A forked child (`os.fork`, multiprocessing's fork start method) gets a fresh empty buffer, zeroed
counters and its own worker; the parent's unsent events are never sent twice.

Logs go to the `llmtally.publisher` logger and name events by id only, never their contents.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, ParamSpec, Protocol, TypeVar

from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE, UsageEvent

logger = logging.getLogger("llmtally.publisher")

#: AWS limits shared by PutEvents and SendMessageBatch.
MAX_ENTRIES_PER_CALL: Final = 10
MAX_BYTES_PER_CALL: Final = 256 * 1024

DEFAULT_MAX_BUFFER: Final = 10_000
DEFAULT_MAX_BATCH_WAIT: Final = 0.2
DEFAULT_FLUSH_TIMEOUT: Final = 10.0
DEFAULT_EXIT_TIMEOUT: Final = 5.0
#: A Lambda handler's flush stops this long before the invocation's deadline.
LAMBDA_FLUSH_MARGIN: Final = 0.5
#: At most one "dropped" warning per this many seconds (a full buffer would flood the log).
_DROP_LOG_INTERVAL: Final = 10.0

_TRANSIENT_CODE = re.compile(r"throttl|internal|unavailable|timeout|toomanyrequests|requestlimit", re.I)

P = ParamSpec("P")
R = TypeVar("R")


# -- outcomes and retries ------------------------------------------------------------------------


class Outcome(Enum):
    """What one send did to one entry."""

    DELIVERED = "delivered"
    RETRY = "retry"  # transient: worth sending again
    FAILED = "failed"  # can never succeed as is (sender fault, malformed, not authorised, …)


#: One entry's outcome and the AWS error code behind it (None when delivered).
EntryResult = tuple[Outcome, str | None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently an entry is resent.

    `max_attempts` counts every send of an entry, the first included, so a dead endpoint costs a
    bounded amount of work per event. Delays double from `base_delay` up to `max_delay`; half of
    each delay is random ("equal jitter") so that many producers throttled together do not retry
    in lockstep, while a retry never comes sooner than half the nominal delay.
    """

    max_attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.base_delay <= self.max_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after the `attempt`-th send failed (always within [0, max_delay])."""
        doublings = min(max(attempt - 1, 0), 60)
        ceiling = min(self.max_delay, self.base_delay * float(2**doublings))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def _looks_transient(code: str) -> bool:
    return bool(_TRANSIENT_CODE.search(code))


def classify_exception(exc: Exception) -> EntryResult:
    """Whether a whole call that raised is worth retrying: network trouble, 5xx and throttling are.

    Configuration errors (no credentials, a missing bus or queue, access denied, invalid
    parameters) and anything that is not a botocore error would fail the same way again.
    """
    from botocore import exceptions as boto

    name = type(exc).__name__
    if isinstance(exc, boto.ClientError):
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        code = str((response.get("Error") or {}).get("Code") or name)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        transient = _looks_transient(code) or not isinstance(status, int) or status >= 500 or status == 429
        return (Outcome.RETRY if transient else Outcome.FAILED), code
    transient_errors = (
        boto.ConnectionError,  # connection refused, DNS, proxy
        boto.HTTPClientError,  # timeouts, connection closed
        boto.IncompleteReadError,
        boto.ResponseStreamingError,
        boto.CredentialRetrievalError,
        boto.MetadataRetrievalError,
        boto.CapacityNotAvailableError,  # the client's own retry quota
    )
    if isinstance(exc, transient_errors):
        return Outcome.RETRY, name
    return Outcome.FAILED, name


# -- transports ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One encoded event on its way out: the payload, its size as AWS counts it, how often it was sent."""

    event_id: str
    user_id: str
    payload: str
    size: int
    attempts: int = 0


class Transport(Protocol):
    """Where batches go: builds one AWS call from ≤ 10 entries and reads each entry's outcome."""

    @property
    def service(self) -> str: ...

    @property
    def target(self) -> str: ...

    def entry_size(self, payload: str) -> int: ...

    def send(self, client: Any, entries: Sequence[Entry]) -> list[EntryResult]: ...


class EventBridgeTransport:
    """`PutEvents` to a bus: source `llmtally`, detail-type `LLMUsage`, the event JSON as detail."""

    service = "events"
    _FIXED_SIZE: Final = len(EVENT_SOURCE.encode()) + len(EVENT_DETAIL_TYPE.encode())

    def __init__(self, bus_name: str) -> None:
        self.bus_name = bus_name

    @property
    def target(self) -> str:
        return f"EventBridge bus {self.bus_name}"

    def entry_size(self, payload: str) -> int:
        # AWS: UTF-8 bytes of Source + DetailType + Detail (+ Resources, + 14 for Time; we send neither).
        return self._FIXED_SIZE + len(payload.encode())

    def send(self, client: Any, entries: Sequence[Entry]) -> list[EntryResult]:
        response = client.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": EVENT_DETAIL_TYPE,
                    "Detail": entry.payload,
                    "EventBusName": self.bus_name,
                }
                for entry in entries
            ]
        )
        results = response.get("Entries") or []
        if len(results) != len(entries):
            # Unknown which arrived: resend all (the ingest dedupes on event_id).
            return [(Outcome.RETRY, "IncompleteResponse")] * len(entries)
        return [_eventbridge_result(result) for result in results]


def _eventbridge_result(result: dict[str, Any]) -> EntryResult:
    code = result.get("ErrorCode")
    if not code and result.get("EventId"):
        return Outcome.DELIVERED, None
    code = str(code or "MissingEventId")
    return (Outcome.RETRY if _looks_transient(code) else Outcome.FAILED), code


class SqsTransport:
    """`SendMessageBatch` to a queue, the event JSON as the body (FIFO queues: grouped by tenant)."""

    service = "sqs"

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")

    @property
    def target(self) -> str:
        return f"SQS queue {self.queue_url.rsplit('/', 1)[-1]}"

    def entry_size(self, payload: str) -> int:
        # AWS: the body's bytes plus message attributes (we send none).
        return len(payload.encode())

    def send(self, client: Any, entries: Sequence[Entry]) -> list[EntryResult]:
        messages: list[dict[str, Any]] = []
        for index, entry in enumerate(entries):
            message: dict[str, Any] = {"Id": str(index), "MessageBody": entry.payload}
            if self.fifo:
                message["MessageGroupId"] = entry.user_id
                message["MessageDeduplicationId"] = entry.event_id
            messages.append(message)
        response = client.send_message_batch(QueueUrl=self.queue_url, Entries=messages)
        failed = {str(item.get("Id")): item for item in response.get("Failed") or []}
        succeeded = {str(item.get("Id")) for item in response.get("Successful") or []}
        results: list[EntryResult] = []
        for index in range(len(entries)):
            key = str(index)
            if key in failed:
                item = failed[key]
                code = str(item.get("Code") or "Failed")
                results.append((Outcome.FAILED if item.get("SenderFault") else Outcome.RETRY, code))
            elif key in succeeded:
                results.append((Outcome.DELIVERED, None))
            else:
                results.append((Outcome.RETRY, "MissingResult"))
        return results


# -- the publisher -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """A snapshot of one publisher's counters (this process only).

    Every `publish()` call ends in exactly one of published, failed, dropped or (still) queued,
    so `published + failed + dropped + queued` equals the number of calls. `retried` counts resends.
    """

    published: int
    retried: int
    dropped: int
    failed: int
    queued: int


class _Stop:
    """Returned by `_take` when there is nothing to send and nothing more to wait for."""


_STOP: Final = _Stop()


class UsagePublisher:
    """Publishes usage events fire-and-forget; see the module docstring for the two modes.

    Thread-safe. No method raises into the caller: publish returns False when it dropped the
    event, flush and close return False when they ran out of time. Meant to live as long as the
    process (one per destination); an open publisher is kept until `close()` or exit.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        client: Any = None,
        background: bool = True,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        max_batch_wait: float = DEFAULT_MAX_BATCH_WAIT,
        max_batch_bytes: int = MAX_BYTES_PER_CALL,
        retry: RetryPolicy | None = None,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
    ) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        if not 0 < max_batch_bytes <= MAX_BYTES_PER_CALL:
            raise ValueError(f"max_batch_bytes must be in 1..{MAX_BYTES_PER_CALL}")
        if max_batch_wait < 0 or flush_timeout < 0 or exit_timeout < 0:
            raise ValueError("waits and timeouts must not be negative")
        self._transport = transport
        self._client = client
        self._owns_client = client is None  # built lazily from settings, in the thread that first sends
        self._background = background
        self._max_buffer = max_buffer
        self._max_batch_wait = max_batch_wait
        self._max_batch_bytes = max_batch_bytes
        self._retry = retry or RetryPolicy()
        self._flush_timeout = flush_timeout
        self._exit_timeout = exit_timeout
        self._closed = False
        self._init_runtime_state()
        _preload_sdk()
        _register(self)

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def for_eventbridge(cls, bus_name: str | None = None, *, client: Any = None, **options: Any) -> UsagePublisher:
        """Publish to an EventBridge bus (default: the deployment's usage bus from settings)."""
        if bus_name is None:
            from llmtally.settings import get_settings

            bus_name = get_settings().names.event_bus
        return cls(EventBridgeTransport(bus_name), client=client, **options)

    @classmethod
    def for_sqs(cls, queue_url: str, *, client: Any = None, **options: Any) -> UsagePublisher:
        """Publish straight to an SQS queue (the ingest queue, or any queue the ingest reads)."""
        return cls(SqsTransport(queue_url), client=client, **options)

    # -- the caller's side ----------------------------------------------------------------------

    @property
    def background(self) -> bool:
        return self._background

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, event: UsageEvent) -> bool:
        """Enqueue `event` and return at once: True if accepted, False if dropped (and counted)."""
        try:
            if not isinstance(event, UsageEvent):
                return self._reject(f"not a UsageEvent ({type(event).__name__})")
            with self._lock:
                if self._closed:
                    reason: str | None = "publisher closed"
                elif len(self._buffer) >= self._max_buffer:
                    reason = f"buffer full ({self._max_buffer} events)"
                else:
                    reason = None
                    self._buffer.append(event)
                    self._accepted += 1
                    if self._background:
                        self._work.notify()
            if reason is not None:
                return self._reject(reason)
            if self._background:
                self._ensure_worker()
            return True
        except Exception:
            logger.warning("usage publish failed internally; event dropped", exc_info=True)
            return False

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything accepted so far; True when all of it was delivered or given up.

        `timeout` (seconds; None: the publisher's `flush_timeout`) bounds the wait. In Lambda mode
        the sending happens here, in the caller's thread; one AWS call already under way may
        overrun the timeout by its own duration.
        """
        try:
            budget = self._flush_timeout if timeout is None else max(0.0, timeout)
            deadline = time.monotonic() + budget
            if self._background:
                return self._await_settled(deadline)
            return self._send_now(deadline)
        except Exception:
            logger.warning("usage flush failed internally", exc_info=True)
            return False

    def close(self, timeout: float | None = None) -> bool:
        """Flush (bounded by `timeout`), then refuse new events and let the worker end.

        Events still buffered when the time is up are counted dropped; a batch being retried
        stops at its next backoff and is counted failed. Idempotent.
        """
        try:
            flushed = self.flush(timeout)
            with self._lock:
                self._closed = True
                left = len(self._buffer) + len(self._pending)
                self._buffer.clear()
                self._pending.clear()
                self._abandoned += left
                self._work.notify_all()
                self._done.notify_all()
            if not flushed:
                self._abandon.set()
            if left:
                logger.warning("publisher to %s closed with %d unsent usage event(s) dropped", self.target, left)
            _unregister(self)
            return flushed
        except Exception:
            logger.warning("usage publisher close failed internally", exc_info=True)
            return False

    def stats(self) -> PublisherStats:
        with self._lock:
            settled = self._published + self._failed + self._abandoned
            return PublisherStats(
                published=self._published,
                retried=self._retried,
                dropped=self._rejected + self._abandoned,
                failed=self._failed,
                queued=self._accepted - settled,
            )

    def flush_after(self, handler: Callable[P, R]) -> Callable[P, R]:
        """Decorate a Lambda handler: flush after each invocation (returned or raised), bounded by its time left."""

        @functools.wraps(handler)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return handler(*args, **kwargs)
            finally:
                self.flush(self._handler_flush_timeout(args))

        return wrapper

    @property
    def target(self) -> str:
        return self._transport.target

    def __repr__(self) -> str:
        mode = "background" if self._background else "lambda"
        return f"UsagePublisher({self.target}, {mode})"

    # -- state ----------------------------------------------------------------------------------

    def _init_runtime_state(self) -> None:
        """Locks, buffer, counters and worker: built at construction and again in a forked child."""
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the worker waits here for events, flush or close
        self._done = threading.Condition(self._lock)  # flushers wait here for events to settle
        self._start_lock = threading.Lock()
        self._send_lock = threading.Lock()  # Lambda mode: one flusher sends at a time
        self._buffer: deque[UsageEvent] = deque()
        self._pending: deque[Entry] = deque()  # encoded entries that go before the buffer
        self._accepted = self._published = self._failed = self._retried = 0
        self._rejected = self._abandoned = 0
        self._flushers = 0
        self._worker: threading.Thread | None = None
        self._abandon = threading.Event()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._last_drop_log = -_DROP_LOG_INTERVAL

    def _after_fork_in_child(self) -> None:
        self._init_runtime_state()
        if self._owns_client:
            self._client = None  # the parent's connection pool must not be shared

    def _settled(self) -> int:
        return self._published + self._failed + self._abandoned

    def _settle(self, *, published: int = 0, failed: int = 0) -> None:
        with self._lock:
            self._published += published
            self._failed += failed
            self._done.notify_all()

    def _reject(self, reason: str) -> bool:
        with self._lock:
            self._rejected += 1
            dropped = self._rejected
            now = time.monotonic()
            should_log = now - self._last_drop_log >= _DROP_LOG_INTERVAL
            if should_log:
                self._last_drop_log = now
        if should_log:
            logger.warning("usage event dropped: %s (%d dropped so far)", reason, dropped)
        return False

    def _handler_flush_timeout(self, args: tuple[Any, ...]) -> float:
        context = args[1] if len(args) > 1 else None
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if not callable(remaining):
            return self._flush_timeout
        try:
            left = float(remaining()) / 1000 - LAMBDA_FLUSH_MARGIN
        except Exception:
            return self._flush_timeout
        return max(0.0, min(self._flush_timeout, left))

    # -- waiting and sending --------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        worker = self._worker
        if worker is not None and worker.is_alive():
            return
        with self._start_lock:
            if self._worker is not None and self._worker.is_alive():
                return
            thread = threading.Thread(target=self._run, name="llmtally-publisher", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # e.g. "can't create new thread at interpreter shutdown"
                logger.warning("usage publisher could not start its worker thread", exc_info=True)
                return
            self._worker = thread

    def _await_settled(self, deadline: float) -> bool:
        with self._lock:
            target = self._accepted
            if self._settled() >= target:
                return True
            self._flushers += 1
            self._work.notify_all()  # stop lingering over a partial batch
        try:
            self._ensure_worker()
            with self._lock:
                while self._settled() < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._done.wait(remaining)
                return True
        finally:
            with self._lock:
                self._flushers -= 1

    def _send_now(self, deadline: float) -> bool:
        with self._lock:
            target = self._accepted
        if not self._send_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            while time.monotonic() < deadline:
                batch = self._collect(linger=False)
                if batch is None or not self._deliver(batch, deadline):
                    break
        finally:
            self._send_lock.release()
        with self._lock:
            return self._settled() >= target

    def _run(self) -> None:
        """The background worker: collect a batch, deliver it, until closed and drained."""
        self._client_or_none()  # build it now, while the process is alive, not in the exit flush
        while True:
            try:
                batch = self._collect(linger=True)
                if batch is None:
                    return
                self._deliver(batch, deadline=None)
            except Exception:  # a bug here must not kill the worker and strand the buffer
                logger.exception("usage publisher worker error")
                time.sleep(0.1)

    def _collect(self, *, linger: bool) -> list[Entry] | None:
        """Up to 10 entries within the byte limit; None when there is nothing (more) to send."""
        batch: list[Entry] = []
        size = 0
        deadline = 0.0
        while len(batch) < MAX_ENTRIES_PER_CALL:
            item = self._take(have=bool(batch), linger=linger, deadline=deadline)
            if item is None:
                break
            if isinstance(item, _Stop):
                return batch or None
            entry = item if isinstance(item, Entry) else self._encode(item)
            if entry is None:
                continue
            if batch and size + entry.size > self._max_batch_bytes:
                with self._lock:
                    self._pending.appendleft(entry)  # first in the next batch
                break
            if not batch:
                deadline = time.monotonic() + self._max_batch_wait
            batch.append(entry)
            size += entry.size
        return batch

    def _take(self, *, have: bool, linger: bool, deadline: float) -> Entry | UsageEvent | _Stop | None:
        """The next entry or event; None: send what you have; _STOP: nothing to send, stop."""
        with self._lock:
            while True:
                if self._pending:
                    return self._pending.popleft()
                if self._buffer:
                    return self._buffer.popleft()
                if not have:
                    if not linger or self._closed:
                        return _STOP
                    self._work.wait()
                    continue
                if not linger or self._closed or self._flushers:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._work.wait(remaining)

    def _encode(self, event: UsageEvent) -> Entry | None:
        """The event as an entry, or None (counted failed) if it can never be sent."""
        try:
            payload = event.to_json()
            size = self._transport.entry_size(payload)
        except Exception as exc:  # its message could quote the event: log the type only
            logger.warning(
                "usage event %s could not be serialised (%s); counted failed", event.event_id, type(exc).__name__
            )
            self._settle(failed=1)
            return None
        if size > self._max_batch_bytes:
            logger.warning(
                "usage event %s is %d bytes, over the %d-byte limit; counted failed",
                event.event_id,
                size,
                self._max_batch_bytes,
            )
            self._settle(failed=1)
            return None
        return Entry(event_id=event.event_id, user_id=event.user_id, payload=payload, size=size)

    def _deliver(self, batch: list[Entry], deadline: float | None) -> bool:
        """Send a batch, resending retryable entries with backoff; False if time ran out first.

        Every entry ends delivered or failed, except when the deadline (Lambda mode) comes
        before a retry: those go back to the front of the queue for the next flush.
        """
        entries = batch
        while entries:
            results = self._send_once(entries)
            retry: list[Entry] = []
            delivered = 0
            failed: list[tuple[Entry, str | None]] = []
            for entry, (outcome, code) in zip(entries, results, strict=True):
                if outcome is Outcome.DELIVERED:
                    delivered += 1
                elif outcome is Outcome.RETRY and entry.attempts < self._retry.max_attempts:
                    retry.append(entry)
                else:
                    failed.append((entry, code))
            self._settle(published=delivered, failed=len(failed))
            if failed:
                self._log_failed(failed)
            if not retry:
                return True
            attempt = max(entry.attempts for entry in retry)
            if not self._pause(self._retry.delay(attempt, self._rng), deadline):
                return self._give_back(retry)
            with self._lock:
                self._retried += len(retry)
            entries = retry
        return True

    def _send_once(self, entries: list[Entry]) -> list[EntryResult]:
        for entry in entries:
            entry.attempts += 1
        try:
            client = self._client if self._client is not None else self._build_client()
            results = self._transport.send(client, entries)
            if len(results) != len(entries):
                raise RuntimeError("transport returned the wrong number of results")
            return results
        except Exception as exc:
            outcome, code = classify_exception(exc)
            # The exception's text may quote parameters (event bodies): log its type and code only.
            logger.warning(
                "sending %d usage event(s) to %s failed: %s (%s)",
                len(entries),
                self.target,
                code,
                "will retry" if outcome is Outcome.RETRY else "not retryable",
            )
            return [(outcome, code)] * len(entries)

    def _build_client(self) -> Any:
        from llmtally import aws

        self._client = aws.client(self._transport.service)
        return self._client

    def _client_or_none(self) -> Any:
        """The client, built if need be; None if that failed (the send will report why)."""
        try:
            return self._client if self._client is not None else self._build_client()
        except Exception:
            return None

    def _pause(self, seconds: float, deadline: float | None) -> bool:
        """Back off; False if the deadline would pass first or the publisher gave up (close)."""
        if deadline is not None and time.monotonic() + seconds >= deadline:
            return False
        return not self._abandon.wait(seconds)

    def _give_back(self, entries: list[Entry]) -> bool:
        if self._abandon.is_set():
            self._settle(failed=len(entries))
            self._log_failed([(entry, "PublisherClosed") for entry in entries])
        else:
            with self._lock:
                self._pending.extendleft(reversed(entries))
        return False

    def _log_failed(self, failed: list[tuple[Entry, str | None]]) -> None:
        codes = sorted({code or "unknown" for _, code in failed})
        logger.warning(
            "%d usage event(s) not delivered to %s (%s): %s",
            len(failed),
            self.target,
            ", ".join(codes),
            " ".join(entry.event_id for entry, _ in failed),
        )


# -- process-wide hooks: exit and fork -----------------------------------------------------------

#: Open publishers, held strongly until closed: one that went out of scope with events still
#: buffered (Lambda mode has no worker thread keeping it alive) is flushed at exit all the same.
_live: set[UsagePublisher] = set()
_hooks_lock = threading.Lock()
_hooks_installed = False


def _preload_sdk() -> None:
    """Import boto3 now, with the publisher, rather than in the first send.

    A send may first happen in the exit flush, and by then Python refuses what importing boto3
    does (`concurrent.futures` registers a threading exit hook: "can't register atexit after
    shutdown"). Importing is not building a client: no client exists until the first send.
    """
    try:
        import boto3  # noqa: F401
    except ImportError:  # pragma: no cover - boto3 is a core dependency
        logger.warning("boto3 is not installed; usage events cannot be sent")


def _register(publisher: UsagePublisher) -> None:
    global _hooks_installed
    with _hooks_lock:
        _live.add(publisher)
        if not _hooks_installed:
            atexit.register(_close_all_on_shutdown)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_reset_all_in_child)
            _hooks_installed = True


def _unregister(publisher: UsagePublisher) -> None:
    with _hooks_lock:
        _live.discard(publisher)


def _close_all_on_shutdown() -> None:
    """Flush every open publisher before the interpreter goes, within one bounded time budget."""
    publishers = list(_live)
    if not publishers:
        return
    deadline = time.monotonic() + max(p._exit_timeout for p in publishers)
    for publisher in publishers:
        remaining = max(0.0, deadline - time.monotonic())
        publisher.close(timeout=min(publisher._exit_timeout, remaining))


def _reset_all_in_child() -> None:
    """After os.fork, in the child: fresh locks, buffers, counters and workers; new AWS clients."""
    global _hooks_lock, _default_lock
    _hooks_lock = threading.Lock()
    _default_lock = threading.Lock()
    publishers = list(_live)
    for publisher in publishers:
        publisher._after_fork_in_child()
    if any(p._owns_client for p in publishers):
        from llmtally import aws

        aws.reset_clients()  # cached clients hold the parent's sockets


# -- the process-wide default --------------------------------------------------------------------

_default: UsagePublisher | None = None
_default_lock = threading.Lock()


def default_publisher() -> UsagePublisher:
    """The process's shared publisher: EventBridge, the settings' bus, background mode (built once)."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = UsagePublisher.for_eventbridge()
        return _default


def set_default_publisher(publisher: UsagePublisher | None) -> UsagePublisher | None:
    """Replace the shared publisher (e.g. SQS, or Lambda mode); returns the previous one."""
    global _default
    with _default_lock:
        previous, _default = _default, publisher
        return previous

"""Event-source runners: Lambda's SQS and DynamoDB-stream semantics for the local stack.

- `SqsRunner`: long-polls the queue, fills a batch up to `batch_size` within the batching window,
  invokes the handler, deletes what succeeded and leaves the reported failures (or the whole batch
  when the handler raises) to reappear after the visibility timeout; the queue's redrive policy
  moves a message to the DLQ after `maxReceiveCount` receives, as on AWS.
- `StreamRunner`: reads each shard in order, keeps only the records the filter admits (INSERT),
  invokes the handler with up to `batch_size` records, and on a reported failure retries from the
  failed record (`batchItemFailures` with its sequence number) — or the whole batch when the handler
  raises — with backoff, forever: a batch is never skipped.

Both call the very same handler functions the Lambdas run.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmtally.local.lambda_events import LambdaContext, sqs_event, stream_event

Handler = Callable[[dict[str, Any], Any], Any]
logger = logging.getLogger("llmtally.local")


def _failed_ids(result: Any) -> set[str] | None:
    """The ids a partial batch response names; None when the response is not one (whole batch failed)."""
    if result is None:
        return set()
    if not isinstance(result, dict):
        return None
    failures = result.get("batchItemFailures", [])
    if not isinstance(failures, list):
        return None
    ids: set[str] = set()
    for failure in failures:
        if not isinstance(failure, dict) or not isinstance(failure.get("itemIdentifier"), str):
            return None
        ids.add(failure["itemIdentifier"])
    return ids


@dataclass
class RunnerStats:
    invocations: int = 0
    records: int = 0
    failures: int = 0
    errors: int = 0


class _Loop(ABC):
    """A daemon thread calling `poll()` until stopped; `stop()` lets the current poll finish."""

    name = "runner"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = RunnerStats()
        self.idle = threading.Event()

    @abstractmethod
    def poll(self) -> int:
        """Fetch and hand over one batch; return how many records were handled (0: idle)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"llmtally-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.poll()
            except Exception:  # a runner must outlive any one failure, as Lambda's poller does
                logger.exception("%s: poll failed; retrying", self.name)
                self.stats.errors += 1
                handled = 0
            if handled:
                self.idle.clear()
            else:
                self.idle.set()
                self._stop.wait(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class SqsRunner(_Loop):
    name = "sqs"

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        queue_arn: str,
        handler: Handler,
        *,
        function_name: str,
        batch_size: int = 10,
        batch_window_seconds: float = 1.0,
        region: str = "us-east-1",
    ) -> None:
        super().__init__()
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._handler = handler
        self._function_name = function_name
        self._batch_size = batch_size
        self._window = batch_window_seconds
        self._region = region

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=min(count, 10),
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def poll(self) -> int:
        batch = self._receive(self._batch_size, wait=1)
        if not batch:
            return 0
        deadline = time.monotonic() + self._window
        while len(batch) < self._batch_size and time.monotonic() < deadline:
            more = self._receive(self._batch_size - len(batch), wait=0)
            if not more:
                time.sleep(0.05)
                continue
            batch.extend(more)
        self._invoke(batch)
        return len(batch)

    def _invoke(self, batch: list[dict[str, Any]]) -> None:
        event = sqs_event(batch, self._queue_arn, self._region)
        self.stats.invocations += 1
        self.stats.records += len(batch)
        try:
            failed = _failed_ids(self._handler(event, LambdaContext.for_function(self._function_name, self._region)))
        except Exception:
            logger.exception("%s: handler raised; the whole batch will be redelivered", self._function_name)
            failed = None
        if failed is None:
            self.stats.failures += len(batch)
            return
        self.stats.failures += len(failed)
        done = [m for m in batch if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)
    first_pending_at: float = 0.0
    retry_at: float = 0.0
    attempts: int = 0


class StreamRunner(_Loop):
    name = "stream"

    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        handler: Handler,
        *,
        function_name: str,
        batch_size: int = 100,
        batch_window_seconds: float = 1.0,
        event_names: frozenset[str] = frozenset({"INSERT"}),
        region: str = "us-east-1",
        max_backoff_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self._streams = streams_client
        self._stream_arn = stream_arn
        self._handler = handler
        self._function_name = function_name
        self._batch_size = batch_size
        self._window = batch_window_seconds
        self._event_names = event_names
        self._region = region
        self._max_backoff = max_backoff_seconds
        self._shards: dict[str, _Shard] = {}

    def _discover(self) -> None:
        description = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            shard_id = shard["ShardId"]
            if shard_id not in self._shards:
                iterator = self._streams.get_shard_iterator(
                    StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                self._shards[shard_id] = _Shard(shard_id, iterator)

    def poll(self) -> int:
        if not self._shards:
            self._discover()
        handled = 0
        for shard in self._shards.values():
            handled += self._poll_shard(shard)
        return handled

    def _poll_shard(self, shard: _Shard) -> int:
        if shard.iterator is not None and len(shard.pending) < self._batch_size:
            response = self._streams.get_records(ShardIterator=shard.iterator, Limit=self._batch_size)
            shard.iterator = response.get("NextShardIterator")
            admitted = [r for r in response.get("Records", []) if r.get("eventName") in self._event_names]
            if admitted and not shard.pending:
                shard.first_pending_at = time.monotonic()
            shard.pending.extend(admitted)
        if not shard.pending:
            return 0
        now = time.monotonic()
        full = len(shard.pending) >= self._batch_size
        if not full and now - shard.first_pending_at < self._window:
            return 0
        if now < shard.retry_at:
            return 0
        batch = shard.pending[: self._batch_size]
        self._invoke(shard, batch)
        return len(batch)

    def _invoke(self, shard: _Shard, batch: list[dict[str, Any]]) -> None:
        event = stream_event(batch, self._stream_arn, self._region)
        self.stats.invocations += 1
        self.stats.records += len(batch)
        try:
            failed = _failed_ids(self._handler(event, LambdaContext.for_function(self._function_name, self._region)))
        except Exception:
            logger.exception("%s: handler raised; retrying the batch", self._function_name)
            failed = None
        if failed == set():
            del shard.pending[: len(batch)]
            shard.attempts = 0
            shard.first_pending_at = time.monotonic()
            return
        # Retry from the failed record (the earliest one named), or the whole batch.
        sequence_numbers = [r["dynamodb"]["SequenceNumber"] for r in batch]
        restart = 0
        if failed:
            named = [i for i, seq in enumerate(sequence_numbers) if seq in failed]
            restart = min(named) if named else 0
        del shard.pending[:restart]
        shard.attempts += 1
        self.stats.failures += len(batch) - restart
        shard.retry_at = time.monotonic() + min(self._max_backoff, 0.1 * 2**shard.attempts)
        logger.warning(
            "%s: batch failed at record %d of %d (attempt %d); retrying",
            self._function_name,
            restart,
            len(batch),
            shard.attempts,
        )

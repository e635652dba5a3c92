"""Lambda-shaped events built from what the AWS APIs (moto's included) return, and a fake context.

- `sqs_event_from_messages`: `sqs.receive_message(...)["Messages"]` → the event Lambda's SQS
  poller delivers (`{"Records": [{"messageId", "body", "attributes", …}]}`).
- `stream_event_from_records`: `dynamodbstreams.get_records(...)["Records"]` → the event Lambda's
  stream poller delivers.
- `sqs_event` / `sqs_record`: the same shape for bodies built in a test (unit tier, no emulator).
- `eventbridge_envelope`: the body EventBridge puts on a queue for a rule target.
- `FakeLambdaContext`: what Powertools' decorators read from the context.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE

REGION = "us-east-1"
ACCOUNT = "123456789012"
DEFAULT_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:test-queue"

_counter = itertools.count(1)


@dataclass
class FakeLambdaContext:
    """The attributes of `LambdaContext` that Powertools and handlers read."""

    function_name: str = "llmtally-test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:llmtally-test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/llmtally-test-function"
    log_stream_name: str = "2026/11/28/[$LATEST]test"
    remaining_millis: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


def _millis(at: datetime | None = None) -> str:
    return str(int((at or datetime.now(UTC)).timestamp() * 1000))


def sqs_record(
    body: str,
    *,
    message_id: str | None = None,
    receive_count: int = 1,
    queue_arn: str = DEFAULT_QUEUE_ARN,
) -> dict[str, Any]:
    """One SQS record as Lambda delivers it, for a body built in the test."""
    sent = _millis()
    return {
        "messageId": message_id or f"msg-{next(_counter):06d}-{uuid.uuid4().hex[:8]}",
        "receiptHandle": uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": sent,
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": sent,
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def sqs_event(bodies: Iterable[str | Mapping[str, Any]], *, queue_arn: str = DEFAULT_QUEUE_ARN) -> dict[str, Any]:
    """An SQS batch event; dict bodies are JSON-encoded (strings are sent as they are)."""
    records = [sqs_record(body if isinstance(body, str) else json.dumps(body), queue_arn=queue_arn) for body in bodies]
    return {"Records": records}


def _message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": list(value.get("BinaryListValues", [])),
            "dataType": value["DataType"],
        }
        for name, value in attributes.items()
    }


def sqs_event_from_messages(
    messages: Sequence[Mapping[str, Any]], *, queue_arn: str, region: str = REGION
) -> dict[str, Any]:
    """`receive_message(..., AttributeNames=["All"], MessageAttributeNames=["All"])["Messages"]`
    as the event Lambda's SQS poller would deliver."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": _message_attributes(message.get("MessageAttributes", {})),
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def receive_all(sqs: Any, queue_url: str, *, batch_size: int = 10, max_batches: int = 100) -> list[dict[str, Any]]:
    """Receive until the queue looks empty (moto delivers synchronously, so no long polling needed)."""
    messages: list[dict[str, Any]] = []
    for _ in range(max_batches):
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(batch_size, 10),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not got:
            break
        messages.extend(got)
    return messages


def eventbridge_envelope(
    detail: Mapping[str, Any],
    *,
    source: str = EVENT_SOURCE,
    detail_type: str = EVENT_DETAIL_TYPE,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The body EventBridge delivers to an SQS target (the full envelope, `detail` inside)."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [],
        "detail": dict(detail),
    }


def stream_event_from_records(
    records: Sequence[Mapping[str, Any]], *, stream_arn: str, region: str = REGION
) -> dict[str, Any]:
    """`dynamodbstreams.get_records(...)["Records"]` as the event Lambda's stream poller delivers."""
    out = []
    for record in records:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
        out.append(
            {
                "eventID": record["eventID"],
                "eventName": record["eventName"],
                "eventVersion": record.get("eventVersion", "1.1"),
                "eventSource": "aws:dynamodb",
                "awsRegion": record.get("awsRegion", region),
                "dynamodb": dynamodb,
                "eventSourceARN": stream_arn,
            }
        )
    return {"Records": out}

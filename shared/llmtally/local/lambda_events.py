"""Lambda event payloads built from what the AWS APIs return, exactly as Lambda shapes them.

Used by the local runners (and the tests) so the handlers see what they would see on AWS.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class LambdaContext:
    """The part of Lambda's context object the handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = ""
    aws_request_id: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""

    @classmethod
    def for_function(cls, name: str, region: str = "us-east-1") -> LambdaContext:
        return cls(
            function_name=name,
            invoked_function_arn=f"arn:aws:lambda:{region}:123456789012:function:{name}",
            aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{name}",
            log_stream_name="local",
        )

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": value.get("BinaryValue"),
        "stringListValues": value.get("StringListValues", []),
        "binaryListValues": value.get("BinaryListValues", []),
        "dataType": value["DataType"],
    }


def sqs_event(messages: Sequence[dict[str, Any]], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """An SQS event source batch from `receive_message` results (AttributeNames=All)."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": {
                    name: _message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def stream_record(record: dict[str, Any], stream_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """One DynamoDB stream record from `get_records` in Lambda's shape (epoch-second creation time)."""
    ddb = dict(record["dynamodb"])
    created = ddb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        ddb["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", region),
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    }


def stream_event(records: Sequence[dict[str, Any]], stream_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    return {"Records": [stream_record(r, stream_arn, region) for r in records]}

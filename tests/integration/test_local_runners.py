"""The local event-source runners give a handler Lambda's semantics, on the moto server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from llmtally.aws import client
from llmtally.local.runners import SqsRunner, StreamRunner
from llmtally.resources import ResourceNames
from llmtally.topology import provision_messaging, topology
from tests.conftest import MotoServer

NAMES = ResourceNames("runner-test")


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def queue_depth(url: str) -> int:
    attrs = client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


@pytest.fixture
def queues(moto: MotoServer) -> Any:
    return provision_messaging(client("events"), client("sqs"), topology(NAMES, visibility_timeout_seconds=1))


def test_a_poison_message_ends_in_the_dlq_after_max_receives_while_its_batch_lands(queues: Any) -> None:
    # Given ten messages on the queue, one of which the handler can never process
    sqs = client("sqs")
    for i in range(10):
        sqs.send_message(QueueUrl=queues.queue_url, MessageBody=json.dumps({"n": i, "poison": i == 3}))
    processed: list[int] = []
    receives: dict[str, int] = {}
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            body = json.loads(record["body"])
            with lock:
                receives[record["messageId"]] = int(record["attributes"]["ApproximateReceiveCount"])
            if body["poison"]:
                failures.append({"itemIdentifier": record["messageId"]})
            else:
                with lock:
                    processed.append(body["n"])
        assert context.function_name == "ingest-under-test"
        return {"batchItemFailures": failures}

    runner = SqsRunner(
        sqs, queues.queue_url, queues.queue_arn, handler, function_name="ingest-under-test", batch_window_seconds=0.2
    )
    # When the runner drives the handler
    runner.start()
    try:
        wait_for(lambda: queue_depth(queues.dlq_url) == 1)
    finally:
        runner.stop()
    # Then the nine good messages were processed once each and the poison one sits in the DLQ
    assert sorted(processed) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert max(receives.values()) == 5  # maxReceiveCount
    dead = sqs.receive_message(QueueUrl=queues.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["n"] for m in dead] == [3]
    assert queue_depth(queues.queue_url) == 0


def test_a_handler_that_raises_gets_the_whole_batch_again(queues: Any) -> None:
    sqs = client("sqs")
    sqs.send_message(QueueUrl=queues.queue_url, MessageBody="one")
    calls: list[int] = []

    def flaky(event: dict[str, Any], context: Any) -> None:
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("transient")

    runner = SqsRunner(sqs, queues.queue_url, queues.queue_arn, flaky, function_name="f", batch_window_seconds=0.1)
    runner.start()
    try:
        wait_for(lambda: len(calls) >= 2 and queue_depth(queues.queue_url) == 0)
    finally:
        runner.stop()
    assert calls[:2] == [1, 1]


def test_the_eventbridge_rule_routes_usage_events_to_the_queue(queues: Any) -> None:
    events = client("events")
    events.put_events(
        Entries=[
            {"Source": "llmtally", "DetailType": "LLMUsage", "Detail": '{"a":1}', "EventBusName": NAMES.event_bus},
            {"Source": "other", "DetailType": "LLMUsage", "Detail": '{"a":2}', "EventBusName": NAMES.event_bus},
        ]
    )
    messages = client("sqs").receive_message(QueueUrl=queues.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["detail"] for m in messages] == [{"a": 1}]


def _stream_table() -> str:
    ddb = client("dynamodb")
    ddb.create_table(
        TableName="stream-test",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    return str(ddb.describe_table(TableName="stream-test")["Table"]["LatestStreamArn"])


def test_the_stream_runner_delivers_inserts_in_order_and_retries_from_the_failed_record(moto: MotoServer) -> None:
    # Given a table with a stream: five inserts, then a MODIFY and a REMOVE that must not reach the handler
    arn = _stream_table()
    ddb = client("dynamodb")
    for i in range(5):
        ddb.put_item(TableName="stream-test", Item={"pk": {"S": f"k{i}"}})
    ddb.put_item(TableName="stream-test", Item={"pk": {"S": "k0"}, "v": {"N": "1"}})
    ddb.delete_item(TableName="stream-test", Key={"pk": {"S": "k1"}})
    seen: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]
        assert {r["eventName"] for r in event["Records"]} == {"INSERT"}
        seen.append(keys)
        if len(seen) == 1:  # fail at the third record the first time
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][2]["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    runner = StreamRunner(client("dynamodbstreams"), arn, handler, function_name="agg", batch_window_seconds=0.1)
    runner.start()
    try:
        wait_for(lambda: len(seen) >= 2 and runner.idle.is_set())
    finally:
        runner.stop()
    # Then the first batch was all five; the retry started at the failed record, nothing skipped
    assert seen[0] == ["k0", "k1", "k2", "k3", "k4"]
    assert seen[1] == ["k2", "k3", "k4"]
    assert len(seen) == 2

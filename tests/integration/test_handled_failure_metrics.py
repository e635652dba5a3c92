"""The failures a function handles itself — which Lambda never counts as errors — are emitted as EMF
metrics, the very names the CDK app alarms on (`llmtally.metric_names`, `tests/infra/test_alarms.py`).

Each test makes the real handler meet a real failure (a DynamoDB call refused on its way to moto, a
stand-in Slack answering an error) and reads the metric from what the function printed: the EMF JSON
line CloudWatch would turn into the metric.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from llmtally import aws, metric_names
from llmtally.observability import SERVICE_NAME, metrics
from llmtally.resources import ResourceNames
from llmtally.tables import create_tables
from tests.conftest import MotoServer
from tests.support.bad_inputs import valid_detail
from tests.support.lambda_events import FakeLambdaContext, sqs_event, stream_event_from_records
from tests.support.pipeline import reset_ingest_state

pytestmark = pytest.mark.integration

NAMES = ResourceNames()


@pytest.fixture
def tables(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    # The local stack turns EMF off for its process (it would print a blob per invocation); here the
    # output is the thing under test.
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    # Powertools keeps one metric set per process, and a disabled flush (an earlier test's local
    # stack) leaves it full: start from an empty one.
    metrics.clear_metrics()
    create_tables(aws.client("dynamodb"), NAMES)
    reset_ingest_state()
    yield moto
    reset_ingest_state()


def emf_metrics(stdout: str) -> dict[str, float]:
    """Each metric the printed EMF lines carry (summed), checked to be in llmtally's namespace with
    the `service` dimension the alarms select on."""
    totals: dict[str, float] = {}
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "llmtally"
        assert ["service"] in directive["Dimensions"] or any("service" in d for d in directive["Dimensions"])
        assert blob["service"] == SERVICE_NAME  # the deployment prefix the process started with
        for metric in directive["Metrics"]:
            value = blob[metric["Name"]]
            totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(value if isinstance(value, list) else [value])
    return totals


@contextmanager
def refused(operation: str) -> Iterator[None]:
    """Every DynamoDB `operation` call of the library's client is throttled before it reaches moto."""
    client = aws.client("dynamodb")
    event = f"before-call.dynamodb.{operation}"

    def hook(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation)

    client.meta.events.register(event, hook)
    try:
        yield
    finally:
        client.meta.events.unregister(event, hook)


def test_ingest_counts_a_transient_failure(tables: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    from ingest.handler import lambda_handler

    # Given a valid event whose raw-entry write is throttled
    event = sqs_event([valid_detail(datetime.now(UTC))])
    with refused("PutItem"):
        # When the ingest handler takes the batch
        from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

        with pytest.raises(BatchProcessingError):  # every record failed: the invocation fails as a whole
            lambda_handler(event, FakeLambdaContext())
    # Then the function said so in EMF (a one-record batch fails as a whole; in a larger batch the
    # failed message is only reported in batchItemFailures, which Lambda does not count as an error)
    assert emf_metrics(capsys.readouterr().out)[metric_names.EVENTS_TRANSIENT_FAILURE] == 1


def test_ingest_counts_a_transient_failure_inside_a_partial_batch(
    tables: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.handler import lambda_handler

    # Given two valid events, the write of the second throttled
    now = datetime.now(UTC)
    bodies = [valid_detail(now, event_id="evt-ok-000001"), valid_detail(now, event_id="evt-throttled-01")]
    event = sqs_event(bodies)
    victim = event["Records"][1]["messageId"]
    client = aws.client("dynamodb")

    def hook(params: dict[str, Any], **_: Any) -> None:
        if "evt-throttled-01" in json.dumps(params, default=str):
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutItem")

    client.meta.events.register("before-parameter-build.dynamodb.PutItem", hook)
    try:
        # When the batch is handled: a successful invocation with one reported message
        response = lambda_handler(event, FakeLambdaContext())
    finally:
        client.meta.events.unregister("before-parameter-build.dynamodb.PutItem", hook)
    assert response == {"batchItemFailures": [{"itemIdentifier": victim}]}
    # Then the transient failure is counted beside the stored event
    figures = emf_metrics(capsys.readouterr().out)
    assert figures[metric_names.EVENTS_TRANSIENT_FAILURE] == 1
    assert figures["EventsStored"] == 1


def _one_insert_record(tables: MotoServer) -> tuple[list[dict[str, Any]], str]:
    """A raw entry written as ingest writes it, read back as the stream record the aggregator gets."""
    from llmtally.events import UsageEvent
    from llmtally.ingest import raw_entry_item
    from llmtally.pricing import PriceBook
    from llmtally.repositories.usage import UsageRepository

    event = UsageEvent.model_validate(valid_detail(datetime.now(UTC)))
    UsageRepository().put_if_absent(
        raw_entry_item(event, PriceBook().price_event(event), ttl_days=90, now=datetime.now(UTC))
    )
    arn = aws.client("dynamodb").describe_table(TableName=NAMES.usage_table)["Table"]["LatestStreamArn"]
    streams = aws.client("dynamodbstreams")
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    return [r for r in records if r["eventName"] == "INSERT"][-1:], str(arn)


def test_aggregate_counts_a_failed_batch(tables: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    from aggregate.handler import budget_keeper, lambda_handler

    budget_keeper.cache_clear()
    records, arn = _one_insert_record(tables)
    # Given every rollup write is throttled (marked UpdateItems; TransactWriteItems where a batch
    # still commits that way)
    with refused("UpdateItem"), refused("TransactWriteItems"):
        # When the stream batch is handled: a partial batch response, not an invocation error
        response = lambda_handler(stream_event_from_records(records, stream_arn=arn), FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
    # Then the failed batch is counted
    assert emf_metrics(capsys.readouterr().out)[metric_names.STREAM_BATCH_FAILURES] == 1
    budget_keeper.cache_clear()


def test_api_counts_a_storage_failure_answered_503(tables: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    from api import deps
    from tests.support.apigw import request

    deps.reset()
    capsys.readouterr()
    # Given the settings table refuses reads
    with refused("GetItem"):
        # When alice reads her settings
        response = request("GET", "/api/llm-settings/alice", claims={"sub": "alice"})
    # Then she gets a 503 from a successful invocation, and the function counted it
    assert response.status == 503
    assert emf_metrics(capsys.readouterr().out) == {metric_names.API_SERVER_ERRORS: 1}
    # And a request that succeeds prints no metric at all
    assert request("GET", "/api/llm-models", claims={"sub": "alice"}).status == 200
    assert emf_metrics(capsys.readouterr().out) == {}
    deps.reset()


@pytest.fixture
def slack(tables: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from notify import handler
    from tests.support.slack import fake_slack

    with fake_slack() as fake:
        monkeypatch.setenv("LLMTALLY_SLACK_WEBHOOK_ALLOWED_PREFIX", fake.allowed_prefix)
        aws.reset_clients()
        handler.reset()
        yield fake
        handler.reset()


def _alert(percent: int = 80) -> dict[str, Any]:
    from tests.integration.test_notify_handler import alert_event

    return alert_event(percent=percent)


def _store_webhook(url: str) -> None:
    from pydantic import SecretStr

    from llmtally.repositories.secrets import SecretsRepository

    SecretsRepository().put_slack_webhook("alice", SecretStr(url))


@pytest.mark.parametrize("status", [404, 503])
def test_notify_counts_an_alert_it_could_not_deliver(
    slack: Any, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmtally.notify import SlackDeliveryError
    from notify.handler import lambda_handler

    # Given alice's webhook answers 404 (revoked: refused for good) or 503 (retried by Lambda)
    _store_webhook(slack.webhook_url)
    slack.status = status
    # When her alert arrives
    if status == 404:
        assert lambda_handler(_alert(), FakeLambdaContext()) == {"outcome": "refused"}
    else:
        with pytest.raises(SlackDeliveryError):
            lambda_handler(_alert(), FakeLambdaContext())
    # Then the undelivered alert is counted either way
    assert emf_metrics(capsys.readouterr().out)[metric_names.ALERT_DELIVERIES_FAILED] == 1
    # And a delivered one is not
    slack.status = 200
    assert lambda_handler(_alert(percent=100), FakeLambdaContext()) == {"outcome": "posted"}
    assert metric_names.ALERT_DELIVERIES_FAILED not in emf_metrics(capsys.readouterr().out)


def test_notify_counts_a_storage_failure(slack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from llmtally.errors import StorageError
    from notify.handler import lambda_handler

    # Given the delivery records cannot be read
    _store_webhook(slack.webhook_url)
    with refused("GetItem"), pytest.raises(StorageError):
        # When the alert arrives, the invocation fails (Lambda retries it)
        lambda_handler(_alert(), FakeLambdaContext())
    # Then it is counted as an alert not delivered
    assert emf_metrics(capsys.readouterr().out)[metric_names.ALERT_DELIVERIES_FAILED] == 1

"""Alarms that see the failures a function handles itself (Lambda never counts them as errors): the
API's 5xx answers as a rate over requests, ingest's transient failures, aggregate's failed stream
batches, undelivered budget alerts — and the stream's iterator age. Each watches the metric the
handlers emit (`llmtally.metric_names`; emission: tests/integration/test_handled_failure_metrics.py)
and notifies the alarm topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdk_app.config import AppConfig
from cdk_app.constructs.monitoring import API_ERROR_RATE_EXPRESSION, HANDLED_FAILURE_ALARMS
from llmtally import metric_names
from llmtally.resources import ResourceNames
from tests.infra.conftest import Synthesized
from tests.infra.custom import custom_synthesis

pytestmark = pytest.mark.xdist_group("infra")

NAMES = ResourceNames()
DEFAULTS = AppConfig()


@pytest.fixture
def custom(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> Synthesized:
    return custom_synthesis(tmp_path_factory, web_dist)


def alarm(synthesized: Synthesized, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        res["Properties"]
        for res in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if res["Properties"]["AlarmName"] == f"{NAMES.prefix}-{name}"
    ]
    assert len(found) == 1, name
    return found[0]


def alarm_topic(synthesized: Synthesized) -> dict[str, str]:
    topic_id, _ = synthesized.one("AWS::SNS::Topic", TopicName=f"{NAMES.prefix}-alarms")
    return {"Ref": topic_id}


@pytest.mark.parametrize(
    ("name", "metric", "periods"),
    [
        ("ingest-transient-failures", metric_names.EVENTS_TRANSIENT_FAILURE, 2),
        ("aggregate-batch-failures", metric_names.STREAM_BATCH_FAILURES, 2),
        ("alert-delivery-failures", metric_names.ALERT_DELIVERIES_FAILED, 1),
    ],
)
def test_a_handled_failure_alarm_watches_the_metric_its_handler_emits(
    synthesized: Synthesized, name: str, metric: str, periods: int
) -> None:
    # Given the synthesized alarm
    props = alarm(synthesized, name)
    # Then it reads the handler's EMF metric: llmtally's namespace, this deployment's service
    assert (props["Namespace"], props["MetricName"]) == ("llmtally", metric)
    assert props["Dimensions"] == [{"Name": "service", "Value": NAMES.prefix}]
    assert (props["Statistic"], props["Period"]) == ("Sum", 300)
    # And fires on any failure held for `periods` consecutive 5-minute periods, quiet without data
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (periods, periods)
    assert props["TreatMissingData"] == "notBreaching"
    # And notifies the alarm topic
    assert props["AlarmActions"] == [alarm_topic(synthesized)]


def test_every_handled_failure_metric_has_its_alarm() -> None:
    watched = {metric for metric, _, _ in HANDLED_FAILURE_ALARMS.values()}
    assert watched == {
        metric_names.EVENTS_TRANSIENT_FAILURE,
        metric_names.STREAM_BATCH_FAILURES,
        metric_names.ALERT_DELIVERIES_FAILED,
        metric_names.HTTP_INGEST_BUS_REFUSED,
    }


def _rate_metrics(props: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    (expression,) = [m for m in props["Metrics"] if "Expression" in m]
    inputs = {m["Id"]: m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m}
    assert expression["ReturnData"] is True
    assert all(m.get("ReturnData") is False for m in props["Metrics"] if "MetricStat" in m)
    return expression["Expression"], inputs


def test_api_5xx_alarm_is_a_rate_over_requests_with_a_minimum(synthesized: Synthesized) -> None:
    # Given the API 5xx alarm
    props = alarm(synthesized, "api-5xx-rate")
    expression, inputs = _rate_metrics(props)
    # Then it is metric math: percent of the HTTP API's requests answered 5xx, 0 below 20 requests
    assert expression == "IF(requests >= 20, 100 * FILL(errors, 0) / requests, 0)"
    api_id = next(iter(synthesized.resources("AWS::ApiGatewayV2::Api")))
    for input_id, metric_name in (("requests", "Count"), ("errors", "5xx")):
        stat = inputs[input_id]
        assert stat["Metric"]["Namespace"] == "AWS/ApiGateway"
        assert stat["Metric"]["MetricName"] == metric_name
        assert stat["Metric"]["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": api_id}}]
        assert (stat["Stat"], stat["Period"]) == ("Sum", 300)
    # And it fires above 5 %, on the alarm topic, quiet without traffic
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 5)
    assert props["TreatMissingData"] == "notBreaching"
    assert props["AlarmActions"] == [alarm_topic(synthesized)]


def test_api_5xx_rate_and_iterator_age_follow_the_context(custom: Synthesized) -> None:
    expression, _ = _rate_metrics(alarm(custom, "api-5xx-rate"))
    assert expression == API_ERROR_RATE_EXPRESSION.format(min_requests=50)
    assert alarm(custom, "api-5xx-rate")["Threshold"] == 10
    assert alarm(custom, "aggregate-iterator-age")["Threshold"] == 120_000


def test_alert_email_failures_alarm_reads_the_alert_topics_failed_notifications(synthesized: Synthesized) -> None:
    # The e-mail half of alert delivery runs no code of ours: SNS counts what it gave up on.
    props = alarm(synthesized, "alert-email-failures")
    topic_id, _ = synthesized.one("AWS::SNS::Topic", TopicName=f"{NAMES.prefix}-budget-alerts")
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
        "AWS/SNS",
        "NumberOfNotificationsFailed",
        "Sum",
    )
    assert props["Dimensions"] == [{"Name": "TopicName", "Value": {"Fn::GetAtt": [topic_id, "TopicName"]}}]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
    assert props["AlarmActions"] == [alarm_topic(synthesized)]


def test_iterator_age_alarm_reads_the_aggregate_functions_stream_lag(synthesized: Synthesized) -> None:
    props = alarm(synthesized, "aggregate-iterator-age")
    aggregate_id, _ = synthesized.one("AWS::Lambda::Function", FunctionName=f"{NAMES.prefix}-aggregate")
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("AWS/Lambda", "IteratorAge", "Maximum")
    assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": aggregate_id}}]
    assert props["Threshold"] == DEFAULTS.iterator_age_alarm_seconds * 1000
    assert props["AlarmActions"] == [alarm_topic(synthesized)]


def test_the_dashboard_shows_the_handled_failures_and_the_5xx_rate(synthesized: Synthesized) -> None:
    (dashboard,) = synthesized.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        metric_names.EVENTS_TRANSIENT_FAILURE,
        metric_names.STREAM_BATCH_FAILURES,
        metric_names.ALERT_DELIVERIES_FAILED,
        metric_names.API_SERVER_ERRORS,
    ):
        assert f'\\"{metric}\\"' in body, metric
    assert "Handled failures (not Lambda errors)" in body
    assert "IF(requests >= 20, 100 * FILL(errors, 0) / requests, 0)" in body

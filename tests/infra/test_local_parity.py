"""The local stack and the CDK app are built from the same definitions: the synthesized template
matches `llmtally.tables` and `llmtally.topology` (names, keys, GSIs, stream, TTL, redrive, pattern)."""

from __future__ import annotations

import json

import pytest

from llmtally.resources import ResourceNames
from llmtally.tables import table_specs, to_create_table_kwargs
from llmtally.topology import alerts_topology, stream_filter_pattern, topology
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

NAMES = ResourceNames()


@pytest.mark.parametrize("key", sorted(table_specs(NAMES)))
def test_table_matches_local_definition(synthesized: Synthesized, key: str) -> None:
    # Given the spec the local stack creates its table from
    spec = table_specs(NAMES)[key]
    local = to_create_table_kwargs(spec)
    # When the synthesized table of the same name is read
    _, table = synthesized.one("AWS::DynamoDB::Table", TableName=spec.name)
    props = table["Properties"]
    # Then keys, attributes, GSIs, stream view and TTL attribute are the same
    assert props["KeySchema"] == local["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == local["AttributeDefinitions"]
    deployed_gsis = sorted(
        (
            {k: gsi[k] for k in ("IndexName", "KeySchema", "Projection")}
            for gsi in props.get("GlobalSecondaryIndexes", [])
        ),
        key=lambda g: g["IndexName"],
    )
    assert deployed_gsis == sorted(local.get("GlobalSecondaryIndexes", []), key=lambda g: g["IndexName"])
    if spec.stream_view is None:
        assert "StreamSpecification" not in props
    else:
        assert props["StreamSpecification"] == {"StreamViewType": spec.stream_view}
    if spec.ttl_attribute is None:
        assert "TimeToLiveSpecification" not in props
    else:
        assert props["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}


def test_messaging_matches_local_topology(synthesized: Synthesized) -> None:
    topo = topology(NAMES)
    bus_id, _ = synthesized.one("AWS::Events::EventBus", Name=topo.bus_name)
    _, rule = synthesized.one("AWS::Events::Rule", Name=topo.rule_name)
    assert rule["Properties"]["EventBusName"] == {"Ref": bus_id}
    assert rule["Properties"]["EventPattern"] == topo.rule_pattern

    dlq_id, dlq = synthesized.one("AWS::SQS::Queue", QueueName=topo.ingest_dlq.name)
    _, queue = synthesized.one("AWS::SQS::Queue", QueueName=topo.ingest_queue.name)
    for spec, deployed in ((topo.ingest_queue, queue), (topo.ingest_dlq, dlq)):
        assert deployed["Properties"]["VisibilityTimeout"] == spec.visibility_timeout_seconds
        assert deployed["Properties"]["MessageRetentionPeriod"] == spec.message_retention_seconds
    assert topo.ingest_queue.dead_letter_queue == topo.ingest_dlq.name
    assert queue["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": topo.ingest_queue.max_receive_count,
    }


def test_alerts_match_local_topology(synthesized: Synthesized) -> None:
    # The local stack creates the same rule (name, bus, pattern) and topic; only its target differs
    # (a local queue: the emulator delivers rule targets to SQS, not to SNS or Lambda).
    alerts = alerts_topology(NAMES)
    bus_id, _ = synthesized.one("AWS::Events::EventBus", Name=alerts.bus_name)
    _, rule = synthesized.one("AWS::Events::Rule", Name=alerts.rule_name)
    assert rule["Properties"]["EventBusName"] == {"Ref": bus_id}
    assert rule["Properties"]["EventPattern"] == alerts.rule_pattern
    topic_id, _ = synthesized.one("AWS::SNS::Topic", TopicName=alerts.topic_name)
    assert {"Ref": topic_id} in [target["Arn"] for target in rule["Properties"]["Targets"]]


def test_stream_filter_matches_local_runner(synthesized: Synthesized) -> None:
    patterns = [
        json.loads(f["Pattern"])
        for mapping in synthesized.resources("AWS::Lambda::EventSourceMapping").values()
        for f in mapping["Properties"].get("FilterCriteria", {}).get("Filters", [])
    ]
    assert patterns == [stream_filter_pattern()]


def test_a_custom_prefix_renames_everything(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The prefix is one context key: the config's names are the library's names.
    from cdk_app.config import AppConfig

    config = AppConfig.from_context({"prefix": "acme-llm"}.get)
    assert config.names == ResourceNames("acme-llm")
    assert config.names.usage_table == "acme-llm-llm-usage"
    assert config.stack_name == "acme-llm-llmtally"

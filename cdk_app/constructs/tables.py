"""DynamoDB tables built from `llmtally.tables.table_specs`: the local stack's very definitions."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from llmtally.tables import TableSpec

_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}
_PROJECTIONS = {"ALL": dynamodb.ProjectionType.ALL, "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY}


def _attribute(spec: TableSpec, name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=_TYPES[spec.attributes[name]])


def table_from_spec(scope: Construct, construct_id: str, spec: TableSpec, *, retain: bool) -> dynamodb.Table:
    """On-demand, encrypted (AWS-owned KMS key), point-in-time recovery, the spec's keys/GSIs/stream/TTL."""
    table = dynamodb.Table(
        scope,
        construct_id,
        table_name=spec.name,
        partition_key=_attribute(spec, spec.partition_key),
        sort_key=_attribute(spec, spec.sort_key) if spec.sort_key else None,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        stream=dynamodb.StreamViewType.NEW_IMAGE if spec.stream_view == "NEW_IMAGE" else None,
        time_to_live_attribute=spec.ttl_attribute,
        deletion_protection=retain,
        removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
    )
    for gsi in spec.gsis:
        table.add_global_secondary_index(
            index_name=gsi.name,
            partition_key=_attribute(spec, gsi.partition_key),
            sort_key=_attribute(spec, gsi.sort_key) if gsi.sort_key else None,
            projection_type=_PROJECTIONS[gsi.projection],
        )
    return table


def index_arns(table: dynamodb.Table, spec: TableSpec) -> list[str]:
    """The table's ARN and each of its GSIs' by name (no `index/*`)."""
    return [table.table_arn, *(f"{table.table_arn}/index/{gsi.name}" for gsi in spec.gsis)]

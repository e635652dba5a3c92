"""The HTTP ingest routes in the template (issue 18): `POST /api/usage-events` and `POST /api/otel/v1/traces`
reach the API function without the JWT authorizer (the function checks the ingest key), each with its own
throttle; the API role may put usage events (only) on the bus; the bus-refusal alarm exists; and the API
function's asset carries the OTLP decoder."""

from __future__ import annotations

from typing import Any

import pytest

from llmtally.api.ingest import OTLP_TRACES_PATH, USAGE_EVENTS_PATH
from llmtally.events import EVENT_DETAIL_TYPE, EVENT_SOURCE
from llmtally.metric_names import HTTP_INGEST_BUS_REFUSED
from llmtally.resources import ResourceNames
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

NAMES = ResourceNames()
INGEST_ROUTE_KEYS = {f"POST {USAGE_EVENTS_PATH}", f"POST {OTLP_TRACES_PATH}"}


def _function_id(synthesized: Synthesized, name: str) -> str:
    return synthesized.one("AWS::Lambda::Function", FunctionName=f"{NAMES.prefix}-{name}")[0]


def test_ingest_routes_reach_the_api_function_without_the_jwt_authorizer(synthesized: Synthesized) -> None:
    routes = {
        res["Properties"]["RouteKey"]: (route_id, res)
        for route_id, res in synthesized.resources("AWS::ApiGatewayV2::Route").items()
    }
    (stage,) = synthesized.resources("AWS::ApiGatewayV2::Stage").values()
    for route_key in INGEST_ROUTE_KEYS:
        route_id, route = routes[route_key]
        # Given the route: no authorizer at the gateway (the function checks the ingest key)
        assert route["Properties"]["AuthorizationType"] == "NONE"
        assert "AuthorizerId" not in route["Properties"]
        # And it goes to the API function
        integration_id = route["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        uri = synthesized.template["Resources"][integration_id]["Properties"]["IntegrationUri"]
        assert uri["Fn::GetAtt"][0] == _function_id(synthesized, "api")
        # And it has its own throttle, below the stage's, on a route the stage waits for
        limits = stage["Properties"]["RouteSettings"][route_key]
        assert limits == {"ThrottlingRateLimit": 20, "ThrottlingBurstLimit": 40}
        assert route_id in stage["DependsOn"]
    # And every other route keeps the JWT authorizer
    others = [res for key, (_, res) in routes.items() if key not in INGEST_ROUTE_KEYS]
    assert others
    assert all(res["Properties"]["AuthorizationType"] == "JWT" for res in others)


def _statements(synthesized: Synthesized, role_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def test_the_api_role_puts_only_usage_events_on_the_bus(synthesized: Synthesized) -> None:
    _, function = synthesized.one("AWS::Lambda::Function", FunctionName=f"{NAMES.prefix}-api")
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    puts = [s for s in _statements(synthesized, role_id) if "events:PutEvents" in str(s["Action"])]
    assert len(puts) == 1
    assert puts[0]["Condition"] == {
        "StringEquals": {"events:source": EVENT_SOURCE, "events:detail-type": EVENT_DETAIL_TYPE}
    }


def test_events_the_bus_refuses_at_the_edge_raise_an_alarm(synthesized: Synthesized) -> None:
    alarms = [
        res["Properties"]
        for res in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if res["Properties"].get("MetricName") == HTTP_INGEST_BUS_REFUSED
    ]
    assert len(alarms) == 1
    assert alarms[0]["Namespace"] == "llmtally"


def test_the_api_asset_requires_the_otlp_decoder() -> None:
    from cdk_app.constructs.bundling import API_ASSET, CONNECTION_TEST_ASSET

    assert any(req.startswith("opentelemetry-proto") for req in API_ASSET.requirements)
    # (the connection test runs the same handler but never receives OTLP)
    assert not any(req.startswith("opentelemetry") for req in CONNECTION_TEST_ASSET.requirements)

"""Limits that keep API traffic from starving the pipeline: per-route throttles on the CSV export and
the connection test (below the stage's), reserved concurrency per function (context values, checked
against the account's quota), and the tracing switch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cdk_app.config import UNRESERVED_CONCURRENCY_MINIMUM, AppConfig
from cdk_app.constructs.api import CONNECTION_TEST_ROUTE, EXPORT_ROUTE
from llmtally.resources import ResourceNames
from tests.infra.conftest import Synthesized
from tests.infra.custom import CUSTOM, custom_synthesis

pytestmark = pytest.mark.xdist_group("infra")

NAMES = ResourceNames()
DEFAULTS = AppConfig()
FUNCTIONS = ("ingest", "aggregate", "api", "connection-test", "notify")


@pytest.fixture
def custom(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> Synthesized:
    return custom_synthesis(tmp_path_factory, web_dist)


def function(synthesized: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    return synthesized.one("AWS::Lambda::Function", FunctionName=f"{NAMES.prefix}-{name}")


def stage(synthesized: Synthesized) -> dict[str, Any]:
    (found,) = synthesized.resources("AWS::ApiGatewayV2::Stage").values()
    return found


# -- per-route throttles ---------------------------------------------------------------------------


def test_export_and_connection_test_routes_have_their_own_lower_throttles(synthesized: Synthesized) -> None:
    # Given the stage
    props = stage(synthesized)["Properties"]
    # Then the export and the connection test carry their own limits, below the stage's default
    assert props["RouteSettings"] == {
        f"GET {EXPORT_ROUTE}": {"ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 5},
        f"POST {CONNECTION_TEST_ROUTE}": {"ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 5},
        "POST /api/usage-events": {"ThrottlingRateLimit": 20, "ThrottlingBurstLimit": 40},
        "POST /api/otel/v1/traces": {"ThrottlingRateLimit": 20, "ThrottlingBurstLimit": 40},
    }
    default = props["DefaultRouteSettings"]
    for limits in props["RouteSettings"].values():
        assert limits["ThrottlingRateLimit"] < default["ThrottlingRateLimit"]
        assert limits["ThrottlingBurstLimit"] < default["ThrottlingBurstLimit"]


def test_each_throttled_route_exists_before_the_stage_and_reaches_its_function(synthesized: Synthesized) -> None:
    routes = {
        res["Properties"]["RouteKey"]: (route_id, res)
        for route_id, res in synthesized.resources("AWS::ApiGatewayV2::Route").items()
    }
    throttled = stage(synthesized)
    targets = {f"GET {EXPORT_ROUTE}": "api", f"POST {CONNECTION_TEST_ROUTE}": "connection-test"}
    for route_key, function_name in targets.items():
        # The route exists, and the stage waits for it (CloudFormation refuses settings of a missing route)
        route_id, route = routes[route_key]
        assert route_id in throttled["DependsOn"]
        # And it goes to its function, behind the JWT authorizer like every route
        integration_id = route["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        uri = synthesized.template["Resources"][integration_id]["Properties"]["IntegrationUri"]
        assert uri["Fn::GetAtt"][0] == function(synthesized, function_name)[0]
        assert route["Properties"]["AuthorizationType"] == "JWT"


def test_the_function_redirects_csv_from_the_catch_all_route_to_the_export_route(synthesized: Synthesized) -> None:
    # The function tells the two routes apart by API Gateway's route key: both names must be the
    # deployed ones, or `?format=csv` would bypass the export's throttle.
    from api.routes.usage import EXPORT_ROUTE_KEY, PROXY_ROUTE_KEY

    route_keys = {res["Properties"]["RouteKey"] for res in synthesized.resources("AWS::ApiGatewayV2::Route").values()}
    assert f"GET {EXPORT_ROUTE}" == EXPORT_ROUTE_KEY
    assert {PROXY_ROUTE_KEY, EXPORT_ROUTE_KEY} <= route_keys


def test_route_throttles_follow_the_context(custom: Synthesized) -> None:
    assert stage(custom)["Properties"]["RouteSettings"] == {
        f"GET {EXPORT_ROUTE}": {"ThrottlingRateLimit": 3, "ThrottlingBurstLimit": 6},
        f"POST {CONNECTION_TEST_ROUTE}": {"ThrottlingRateLimit": 2, "ThrottlingBurstLimit": 4},
        "POST /api/usage-events": {"ThrottlingRateLimit": 20, "ThrottlingBurstLimit": 40},
        "POST /api/otel/v1/traces": {"ThrottlingRateLimit": 20, "ThrottlingBurstLimit": 40},
    }


# -- reserved concurrency ---------------------------------------------------------------------------


def test_default_reservations_guard_the_pipeline_and_cap_the_api(synthesized: Synthesized) -> None:
    # Given the defaults / Then each function has its reservation (notify: none)
    reserved = {
        name: function(synthesized, name)[1]["Properties"].get("ReservedConcurrentExecutions") for name in FUNCTIONS
    }
    assert reserved == {"ingest": 10, "aggregate": 10, "api": 50, "connection-test": 10, "notify": None}
    # And the account's default quota keeps far more than Lambda's minimum unreserved
    total = sum(value or 0 for value in reserved.values())
    assert total == DEFAULTS.reserved_concurrency_total
    assert DEFAULTS.account_concurrency_limit - total >= UNRESERVED_CONCURRENCY_MINIMUM


def test_the_ingest_queue_is_polled_within_the_ingest_reservation(synthesized: Synthesized) -> None:
    # Without the cap, SQS pollers would take more batches than the function may run, and the
    # throttled messages would go back to the queue with one more receive towards the DLQ.
    queue_id, _ = synthesized.one("AWS::SQS::Queue", QueueName=NAMES.ingest_queue)
    (mapping,) = [
        res["Properties"]
        for res in synthesized.resources("AWS::Lambda::EventSourceMapping").values()
        if res["Properties"].get("EventSourceArn") == {"Fn::GetAtt": [queue_id, "Arn"]}
    ]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": DEFAULTS.ingest_reserved_concurrency}


def test_reservations_follow_the_context_and_zero_means_none(custom: Synthesized) -> None:
    reserved = {name: function(custom, name)[1]["Properties"].get("ReservedConcurrentExecutions") for name in FUNCTIONS}
    # 0 is "no reservation", never Lambda's ReservedConcurrentExecutions 0 (which stops a function)
    assert reserved == {"ingest": None, "aggregate": None, "api": 20, "connection-test": None, "notify": 2}
    for mapping in custom.resources("AWS::Lambda::EventSourceMapping").values():
        assert "ScalingConfig" not in mapping["Properties"]


def test_reservations_must_leave_lambdas_unreserved_minimum() -> None:
    # Given the default quota of 1,000: up to 900 may be reserved
    AppConfig.from_context({"apiReservedConcurrency": 870}.get)
    with pytest.raises(ValidationError, match="leaves less than 100 of the account's 1000 unreserved"):
        AppConfig.from_context({"apiReservedConcurrency": 871}.get)
    # And a new account's quota of 10 reserves nothing: the defaults are refused, zeros accepted
    with pytest.raises(ValidationError, match="leaves less than 10 of the account's 10 unreserved"):
        AppConfig.from_context({"accountConcurrencyLimit": "10"}.get)
    none = {
        "accountConcurrencyLimit": "10",
        "ingestReservedConcurrency": "0",
        "aggregateReservedConcurrency": "0",
        "apiReservedConcurrency": "0",
        "connectionTestReservedConcurrency": "0",
    }
    assert AppConfig.from_context(none.get).reserved_concurrency_total == 0


@pytest.mark.parametrize(
    "context",
    [
        {"ingestReservedConcurrency": 1},  # the queue's poller cap is at least 2
        {"apiReservedConcurrency": -1},
        {"exportThrottleRate": 51},  # a route limit above the stage's (50) is a mistake
        {"connectionTestThrottleBurst": 101},
        {"apiThrottleBurst": 4},  # a stage burst below the routes' default burst (5)
    ],
)
def test_inconsistent_limits_are_refused(context: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AppConfig.from_context(context.get)


# -- tracing -------------------------------------------------------------------------------------


def test_tracing_is_on_by_default(synthesized: Synthesized) -> None:
    for name in FUNCTIONS:
        props = function(synthesized, name)[1]["Properties"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "false"


def test_tracing_off_removes_x_ray_from_every_function(custom: Synthesized) -> None:
    assert CUSTOM["tracing"] is False
    for name in FUNCTIONS:
        _, fn = function(custom, name)
        props = fn["Properties"]
        # No active tracing, and the observability module is told not to create the X-Ray tracer
        assert "TracingConfig" not in props
        assert props["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "true"
        # And the role holds no X-Ray permission (nor the cdk-nag acknowledgment that explained it)
        role = props["Role"]["Fn::GetAtt"][0]
        for policy in custom.resources("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"]["Roles"]:
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    assert not any(action.startswith("xray:") for action in actions), (name, actions)

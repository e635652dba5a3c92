"""The tier's table: one entry per principal the CDK app synthesizes, and the code each one runs.

`ENTRIES` names each principal by what is stable in the template (a function's `FunctionName`
suffix, a managed policy's name suffix). `STEPS` is the scenario, in order: each step runs one
principal's real code under its synthesized policy, and the steps feed each other as on AWS —
the API stores keys and budgets, the producer publishes through the bus (and calls a provider for
a user), the ingest function drains the queue as its poller would, the aggregate function reads
the stream, the notifier gets the alert the aggregator put on the bus, and the API then serves
every read route from that data. A new function is one `Entry` and one `Step`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from llmtally.resources import ResourceNames
from tests.iam.harness import Emulator, Principal
from tests.iam.policies import PolicySet, Resolver, role_policy_documents
from tests.support.apigw import ApiResponse, call, http_event
from tests.support.lambda_events import FakeLambdaContext, sqs_event_from_messages, stream_event_from_records
from tests.support.slack import FakeSlack

ALICE = "alice-iam"
BOB = "bob-iam"
OPENAI_KEY = "sk-proj-" + "IamT13rKey" * 6
ANTHROPIC_KEY = "sk-ant-api03-" + "IamT13rAnt" * 8
MODEL = "claude-sonnet-4-5-20250929"
ADMIN_KEY = "sk-admin-" + "IamT13rAdm" * 4


@dataclass(frozen=True)
class Entry:
    """A principal: a function (by `FunctionName` = `{prefix}-{function}`) or a producer (managed policies)."""

    key: str
    function: str | None = None
    managed_policies: tuple[str, ...] = ()


ENTRIES: tuple[Entry, ...] = (
    Entry("ingest", function="ingest"),
    Entry("aggregate", function="aggregate"),
    Entry("api", function="api"),
    Entry("connection-test", function="connection-test"),
    Entry("notify", function="notify"),
    Entry("reconcile", function="reconcile"),
    # A producer that only publishes usage; one that also builds users' providers (reads their keys).
    Entry("producer-publish", managed_policies=("publish-usage",)),
    Entry("producer-provider", managed_policies=("publish-usage", "provider-keys")),
)


def function_resource(template: Mapping[str, Any], prefix: str, function: str) -> tuple[str, dict[str, Any]]:
    wanted = f"{prefix}-{function}"
    found = [
        (name, res)
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::Lambda::Function" and res["Properties"].get("FunctionName") == wanted
    ]
    assert len(found) == 1, f"{len(found)} functions named {wanted} in the template"
    return found[0]


def entry_policies(template: Mapping[str, Any], prefix: str, entry: Entry, resolver: Resolver) -> PolicySet:
    if entry.function is not None:
        _, function = function_resource(template, prefix, entry.function)
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        documents = [doc for _, doc in role_policy_documents(template, role)]
    else:
        documents = []
        for suffix in entry.managed_policies:
            name = f"{prefix}-{suffix}"
            found = [
                res["Properties"]["PolicyDocument"]
                for res in template["Resources"].values()
                if res["Type"] == "AWS::IAM::ManagedPolicy" and res["Properties"].get("ManagedPolicyName") == name
            ]
            assert len(found) == 1, f"{len(found)} managed policies named {name} in the template"
            documents.extend(found)
    return PolicySet.from_documents(entry.key, documents, resolver)


def route_function(template: Mapping[str, Any], method: str, path: str) -> str:
    """The logical id of the function API Gateway invokes for `method path` (its route selection:
    the most specific route key wins over `{proxy+}`)."""
    resources = template["Resources"]
    best: tuple[int, str] | None = None
    for res in resources.values():
        if res["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        route_method, route_path = res["Properties"]["RouteKey"].split(" ", 1)
        if route_method not in (method, "ANY"):
            continue
        pattern = "^" + route_path.replace("{proxy+}", ".+")
        import re

        pattern = re.sub(r"\{[^}+]+\}", "[^/]+", pattern) + "$"
        if not re.match(pattern, path):
            continue
        specificity = 0 if "{proxy+}" in route_path else 1
        integration = res["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        function = resources[integration]["Properties"]["IntegrationUri"]["Fn::GetAtt"][0]
        if best is None or specificity > best[0]:
            best = (specificity, function)
    assert best is not None, f"no route for {method} {path}"
    return best[1]


@dataclass
class Scenario:
    emulator: Emulator
    template: Mapping[str, Any]
    resolver: Resolver
    prefix: str
    slack: FakeSlack
    names: ResourceNames
    principals: dict[str, Principal] = field(default_factory=dict)
    environments: dict[str, dict[str, str]] = field(default_factory=dict)
    #: What went wrong functionally, per principal (IAM findings come from the request log).
    problems: dict[str, list[str]] = field(default_factory=dict)
    #: (method, OpenAPI path) of every API request driven, with the principal that served it.
    routes: dict[tuple[str, str], str] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, key: str, text: str) -> None:
        self.problems.setdefault(key, []).append(text)

    def run_as(self, key: str) -> Any:
        return self.emulator.running_as(self.principals[key], self.environments[key])

    def keys(self, key: str) -> tuple[str, str]:
        principal = self.principals[key]
        return principal.access_key, principal.secret_key

    def entry_for_function(self, logical_id: str) -> str:
        for entry in ENTRIES:
            if entry.function and function_resource(self.template, self.prefix, entry.function)[0] == logical_id:
                return entry.key
        raise AssertionError(f"no tier entry for the function {logical_id}")

    # -- the API -------------------------------------------------------------------------------

    def api(
        self,
        method: str,
        route: str,
        path: str,
        *,
        expect: int = 200,
        user: str = ALICE,
        jwt: bool = True,
        **kwargs: Any,
    ) -> ApiResponse | None:
        """One API request, served by the function the template routes it to (with the JWT
        authorizer's claims for `user`, or none: the ingest routes take an ingest key instead)."""
        key = self.entry_for_function(route_function(self.template, method, path))
        self.routes[(method, route)] = key
        with self.run_as(key):
            try:
                response = call(http_event(method, path, claims={"sub": user} if jwt else None, **kwargs))
            except Exception as exc:  # a 500 would be a bug of its own; report it with the route
                self.problem(key, f"{method} {path} raised {exc!r}")
                return None
        if response.status != expect:
            self.problem(key, f"{method} {path} answered {response.status} (expected {expect}): {response.text[:300]}")
        return response


def _provider_transport(request: httpx2.Request) -> httpx2.Response:
    """The providers' HTTP APIs (model lookups and chat completions), mocked at the transport."""
    from tests.unit.providers.conftest import fixture_json

    if request.url.path.endswith("/chat/completions"):
        return httpx2.Response(200, json=fixture_json("openai", "chat_plain.json"))
    model = request.url.path.rsplit("/", 1)[-1]
    return httpx2.Response(
        200,
        json={
            "id": model,
            "type": "model",
            "object": "model",
            "display_name": model,
            "created": 1,
            "created_at": "2025-01-01T00:00:00Z",
            "owned_by": "openai",
        },
    )


def _provider_options(provider: Any) -> dict[str, Any]:
    return {"http_client": httpx2.Client(transport=httpx2.MockTransport(_provider_transport))}


# -- the steps ---------------------------------------------------------------------------------


def api_setup(s: Scenario) -> None:
    """The dashboard's writes: preferences and keys, a key deleted, budgets with a Slack webhook."""
    settings = "/api/llm-settings/{userId}"
    prefs = {
        "defaultProvider": "openai",
        "queryModel": "gpt-4o-mini",
        "detectionModel": "gpt-4o-mini",
        "enableCaching": True,
    }
    for user in (ALICE, BOB):
        s.api(
            "PUT",
            settings,
            f"/api/llm-settings/{user}",
            user=user,
            body={"preferences": prefs, "apiKeys": {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY}},
        )
    s.api("DELETE", settings + "/keys/{provider}", f"/api/llm-settings/{BOB}/keys/anthropic", user=BOB)
    budget = {"monthlyLimitUsd": "5", "timezone": "UTC", "thresholds": [50, 100], "action": "block"}
    s.api(
        "PUT",
        settings + "/budget",
        f"/api/llm-settings/{ALICE}/budget",
        body={**budget, "strict": True, "slackWebhookUrl": s.slack.webhook_url},
    )
    s.api("PUT", settings + "/budget", f"/api/llm-settings/{BOB}/budget", user=BOB, body={**budget, "action": "notify"})
    # strict: the producer reserves and settles on the tag's ledger, the aggregator releases there
    tag_budget: dict[str, Any] = {"tagKey": "customer", "tagValue": "c-42", "monthlyLimitUsd": "5", "timezone": "UTC"}
    tag_budget |= {"action": "block", "strict": True}
    s.api("PUT", settings + "/budget/tags", f"/api/llm-settings/{ALICE}/budget/tags", body=tag_budget)
    admin_key = {"provider": "openai", "adminKey": ADMIN_KEY}  # for reconciliation
    s.api("PUT", settings + "/billing-keys", f"/api/llm-settings/{ALICE}/billing-keys", body=admin_key)


def connection_test(s: Scenario) -> None:
    """POST …/test runs in the connection-test function: the stored key, then a key given in the body."""
    import api.connection

    route = "/api/llm-settings/{userId}/test"
    with pytest.MonkeyPatch.context() as patch:  # the providers' HTTP APIs, for this step only
        patch.setattr(api.connection, "provider_options", _provider_options)
        for body in ({"provider": "openai", "model": "gpt-4o-mini"}, {"provider": "openai", "apiKey": OPENAI_KEY}):
            response = s.api("POST", route, f"/api/llm-settings/{ALICE}/test", body=body)
            if response is not None and response.status == 200 and response.json().get("success") is not True:
                s.problem("connection-test", f"connection test failed: {response.text[:300]}")


def api_http_ingest(s: Scenario) -> None:
    """Ingest keys (created, listed), usage events and OTLP spans posted with one: onto the bus."""
    keys = "/api/llm-settings/{userId}/ingest-keys"
    created = s.api("POST", keys, f"/api/llm-settings/{ALICE}/ingest-keys", expect=201, body={"name": "iam tier"})
    if created is None or created.status != 201:
        return
    key, key_id = created.json()["key"], created.json()["key_id"]
    bearer = {"authorization": f"Bearer {key}"}
    event = {
        "event_id": f"iam-http-{uuid.uuid4().hex}",
        "user_id": ALICE,
        "timestamp": datetime.now(UTC).isoformat(),
        "provider": "openai",
        "model": "gpt-4o",
        "operation_type": "conversation",
        "input_tokens": 1200,
        "output_tokens": 80,
    }
    batch = {"events": [event]}
    posted = s.api("POST", "/api/usage-events", "/api/usage-events", jwt=False, headers=bearer, body=batch)
    if posted is not None and posted.status == 200:
        statuses = [r["status"] for r in posted.json()["results"]]
        if statuses != ["accepted"]:
            s.problem("api", f"the HTTP ingest did not accept the event: {posted.text[:300]}")
    end = int(datetime.now(UTC).timestamp() * 1e9)
    span = {
        "traceId": uuid.uuid4().hex,
        "spanId": uuid.uuid4().hex[:16],
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": str(end - 800_000_000),
        "endTimeUnixNano": str(end),
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "900"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "60"}},
        ],
        "status": {"code": 0},
    }
    traces = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "iam-tier"}}]},
                "scopeSpans": [{"scope": {"name": "iam"}, "spans": [span]}],
            }
        ]
    }
    s.api("POST", "/api/otel/v1/traces", "/api/otel/v1/traces", jwt=False, headers=bearer, body=traces)
    s.api("GET", keys, f"/api/llm-settings/{ALICE}/ingest-keys")
    s.api("DELETE", keys + "/{keyId}", f"/api/llm-settings/{ALICE}/ingest-keys/{key_id}")


def _usage_event(user: str, tokens: int) -> Any:
    from llmtally.events import Provider, UsageEvent

    return UsageEvent(
        event_id=f"iam-{uuid.uuid4().hex}",
        user_id=user,
        timestamp=datetime.now(UTC) - timedelta(seconds=5),
        provider=Provider.ANTHROPIC,
        model=MODEL,
        operation_type="conversation",
        status="ok",
        input_tokens=tokens,
        output_tokens=tokens // 10,
        latency_ms=900,
    )


def producer_publish(s: Scenario) -> None:
    """A service publishing usage: to the bus (for each tenant) and straight to the queue."""
    from llmtally.publisher import UsagePublisher

    with s.run_as("producer-publish"), ExitStack() as stack:
        bus = UsagePublisher.for_eventbridge(background=False)
        queue_url = s.resolver.ref(_logical(s.template, "AWS::SQS::Queue", s.names.ingest_queue))
        queue = UsagePublisher.for_sqs(queue_url, background=False)
        stack.callback(bus.close)
        stack.callback(queue.close)
        # Enough to cross both tenants' thresholds ($5: 2M input tokens of Sonnet 4.5 is $6 + output).
        sent = [bus.publish(_usage_event(user, 1_000_000)) for user in (ALICE, BOB, ALICE, BOB)]
        sent.append(queue.publish(_usage_event(ALICE, 1000)))
        if not (all(sent) and bus.flush(10) and queue.flush(10)):
            s.problem("producer-publish", f"publisher dropped events: {bus.stats()} {queue.stats()}")


def producer_provider(s: Scenario) -> None:
    """A service calling a provider for a user: preferences, the stored key, the strict budgets'
    reservations and settlements (the tenant's and customer c-42's), the response cache, the usage event."""
    import llmtally
    from llmtally.providers import provider_for_user
    from llmtally.publisher import UsagePublisher

    with s.run_as("producer-provider"):
        publisher = UsagePublisher.for_eventbridge(background=False)
        try:
            provider = provider_for_user(ALICE, publisher=publisher, http_client=_provider_options(None)["http_client"])
            for _ in range(2):  # the second is answered by the response cache
                with llmtally.attribution(tags={"customer": "c-42"}):
                    provider.generate(prompt="Summarize the failed logins of the last hour", request_id="iam-tier")
            if not publisher.flush(10):
                s.problem("producer-provider", f"publisher dropped events: {publisher.stats()}")
        except Exception as exc:
            s.problem("producer-provider", f"provider_for_user call raised {exc!r}")
        finally:
            publisher.close()


def ingest(s: Scenario) -> None:
    """The SQS poller (with the function's role) receives and deletes; the handler stores the events."""
    from ingest.handler import lambda_handler

    queue_logical = _logical(s.template, "AWS::SQS::Queue", s.names.ingest_queue)
    queue_url, queue_arn = s.resolver.ref(queue_logical), s.resolver.get_att(queue_logical, "Arn")
    sqs = s.emulator.client("sqs", s.keys("ingest"))
    # A body that breaks the contract (some producer's bug): recorded as a reject, never lost.
    s.emulator.client("sqs").send_message(QueueUrl=queue_url, MessageBody='{"user_id": "alice-iam", "provider": 7}')
    delivered = 0
    mark = s.emulator.mark()
    with s.run_as("ingest"):
        for _ in range(20):
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                break
            response = lambda_handler(sqs_event_from_messages(messages, queue_arn=queue_arn), FakeLambdaContext())
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            if failed:
                s.problem("ingest", f"ingest failed {len(failed)} messages: {response}")
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )
            delivered += len(messages)
    if delivered < 9:
        s.problem("ingest", f"only {delivered} messages reached the ingest queue")
    tables = {str(c.params.get("TableName")) for c in s.emulator.calls(mark, s.principals["ingest"])}
    if not {s.names.usage_table, s.names.rejects_table, s.names.settings_table} <= tables:
        s.problem(
            "ingest", f"the ingest wrote to {sorted(tables)}: entries, a reject and the operation registry expected"
        )


def _stream_records(s: Scenario) -> tuple[str, list[dict[str, Any]]]:
    table = _logical(s.template, "AWS::DynamoDB::Table", s.names.usage_table)
    arn = s.resolver.get_att(table, "StreamArn")
    streams = s.emulator.client("dynamodbstreams", s.keys("aggregate"))
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not response["Records"]:
                break
            records.extend(response["Records"])
            iterator = response.get("NextShardIterator")
    # The event source's filter passes INSERTs only (llmtally.topology.stream_filter_pattern).
    return arn, [r for r in records if r["eventName"] == "INSERT"]


def aggregate(s: Scenario) -> None:
    """The stream poller (with the function's role) reads; the handler commits rollups and
    evaluates budgets — Alice's alerts reach the bus; Bob's meet a bus that refuses them (deleted
    for the step), so the aggregator removes the unpublished alert record and fails the batch."""
    from aggregate.handler import lambda_handler

    with s.run_as("aggregate"):
        arn, records = _stream_records(s)
    users = {r["dynamodb"]["NewImage"].get("user_id", {}).get("S") for r in records}
    if not {ALICE, BOB} <= users:
        s.problem("aggregate", f"stream records of {users}, expected {ALICE} and {BOB}")
    alice = [r for r in records if r["dynamodb"]["NewImage"]["user_id"]["S"] == ALICE]
    bob = [r for r in records if r["dynamodb"]["NewImage"]["user_id"]["S"] == BOB]
    mark = s.emulator.mark()
    with s.run_as("aggregate"):
        response = lambda_handler(stream_event_from_records(alice, stream_arn=arn), FakeLambdaContext())
    if response.get("batchItemFailures"):
        s.problem("aggregate", f"Alice's batch failed: {response}")
    for sent in s.emulator.calls(mark, s.principals["aggregate"]):
        if sent.operation == "PutEvents" and sent.status == 200:
            s.alerts.extend(sent.params.get("Entries", []))
    events = s.emulator.client("events")
    bus = s.names.event_bus
    events.delete_event_bus(Name=bus)
    try:
        with s.run_as("aggregate"):
            response = lambda_handler(stream_event_from_records(bob, stream_arn=arn), FakeLambdaContext())
        if not response.get("batchItemFailures"):
            s.problem("aggregate", f"Bob's batch should fail while the bus refuses alerts: {response}")
    finally:
        from llmtally.resources import ResourceNames
        from llmtally.topology import provision_messaging, topology

        provision_messaging(events, s.emulator.client("sqs"), topology(ResourceNames(s.prefix)))
    settings = s.emulator.client("dynamodb")
    left = settings.get_item(
        TableName=s.names.settings_table,
        Key={"user_id": {"S": BOB}, "setting_type": {"S": f"budget_alert#{datetime.now(UTC):%Y-%m}#0050"}},
    )
    if "Item" in left:
        s.problem("aggregate", "the unpublished alert record of Bob was not removed (delete_unpublished_alert)")


def notify(s: Scenario) -> None:
    """Each alert the aggregator put on the bus, as EventBridge hands it to the notifier."""
    from notify.handler import lambda_handler

    for entry in s.alerts:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": s.resolver.account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": s.resolver.region,
            "resources": [],
            "detail": json.loads(entry["Detail"]),
        }
        with s.run_as("notify"):
            try:
                outcome = lambda_handler(event, FakeLambdaContext())
            except Exception as exc:
                s.problem("notify", f"notify raised {exc!r}")
                continue
        if outcome.get("outcome") != "posted":
            s.problem("notify", f"alert not posted to Slack: {outcome}")
    if not s.alerts:
        s.problem("notify", "the aggregator put no alert on the bus")
    elif not s.slack.posts:
        s.problem("notify", "Slack received nothing")


def reconcile(s: Scenario) -> None:
    """The daily run (as the schedule invokes it): Alice's OpenAI admin key, the providers' usage and
    cost reports (loopback, documented shapes), the rollups; rows stored, alerts on the bus."""
    from reconcile.handler import lambda_handler
    from tests.support.billing import (
        billing_server,
        openai_bucket,
        openai_cost_result,
        openai_usage_result,
        report_pages,
    )

    model = "gpt-4o-mini-2024-07-18"
    days = [(datetime.now(UTC) - timedelta(days=n)).date() for n in range(5, 0, -1)]
    usage = [
        openai_bucket(
            day,
            [
                openai_usage_result(
                    model, input_tokens=900_000, cached=0, output=100_000, requests=9, api_key_id="key_iam"
                )
            ],
        )
        for day in days
    ]
    costs = [openai_bucket(day, [openai_cost_result(f"{model}, input", Decimal("0.135"))]) for day in days]
    with billing_server() as server:
        server.serve_pages("/v1/organization/usage/completions", report_pages(usage, 7, openai=True, cursor="u"))
        server.serve_pages("/v1/organization/costs", report_pages(costs, 7, openai=True, cursor="c"))
        s.environments["reconcile"]["LLMTALLY_RECONCILE_OPENAI_BASE_URL"] = server.url
        s.environments["reconcile"]["LLMTALLY_RECONCILE_ANTHROPIC_BASE_URL"] = server.url
        with s.run_as("reconcile"):
            try:
                summary = lambda_handler({}, FakeLambdaContext())
            except Exception as exc:
                s.problem("reconcile", f"the reconciliation run raised {exc!r}")
                return
    if summary.get("failures") or not summary.get("rows"):
        s.problem("reconcile", f"the reconciliation run stored nothing or failed a source: {summary}")


def api_reads(s: Scenario) -> None:
    """Every read route, over the data the pipeline stored; then the budget is removed."""
    user = f"/api/llm-usage/{ALICE}"
    s.api("GET", "/api/llm-settings/{userId}", f"/api/llm-settings/{ALICE}")
    s.api("GET", "/api/llm-settings/{userId}/budget", f"/api/llm-settings/{ALICE}/budget")
    alerts = s.api("GET", "/api/llm-settings/{userId}/budget/alerts", f"/api/llm-settings/{ALICE}/budget/alerts")
    if alerts is not None and alerts.status == 200 and not alerts.json().get("alerts"):
        s.problem("api", f"no alerts listed: {alerts.text[:200]}")
    s.api("GET", "/api/llm-usage/{userId}/summary", user + "/summary")
    s.api("GET", "/api/llm-usage/{userId}/daily", user + "/daily", query={"days": "7"})
    s.api("GET", "/api/llm-usage/{userId}/breakdown", user + "/breakdown", query={"by": "model", "where": "tag:team:x"})
    s.api("GET", "/api/llm-usage/{userId}/tags", user + "/tags")
    s.api("GET", "/api/llm-usage/{userId}", user)
    s.api("GET", "/api/llm-usage/{userId}", user, query={"provider": "anthropic"})
    s.api("GET", "/api/llm-usage/{userId}", user, query={"operation": "conversation"})
    exports = [s.api("GET", "/api/llm-usage/{userId}", user, query={"format": "csv"})]
    if ("GET", "/api/llm-usage/{userId}/export") in _documented_operations():
        exports.append(s.api("GET", "/api/llm-usage/{userId}/export", user + "/export"))
    for csv in exports:
        if csv is not None and csv.status == 200 and csv.text.count("\n") < 2:
            s.problem("api", f"the CSV export has no rows: {csv.text[:200]}")
    s.api("GET", "/api/llm-usage/{userId}/forecast", user + "/forecast")
    s.api("GET", "/api/llm-usage/{userId}/anomalies", user + "/anomalies")
    s.api("GET", "/api/llm-usage/{userId}/recommendations", user + "/recommendations")
    s.api("GET", "/api/llm-models", "/api/llm-models")
    keys = "/api/llm-settings/{userId}/billing-keys"
    s.api("GET", keys, f"/api/llm-settings/{ALICE}/billing-keys")
    rows = s.api("GET", "/api/llm-usage/{userId}/reconciliation", user + "/reconciliation")
    if rows is not None and rows.status == 200 and not rows.json().get("rows"):
        s.problem("api", f"no reconciliation rows served: {rows.text[:200]}")
    s.api("DELETE", keys + "/{provider}", f"/api/llm-settings/{ALICE}/billing-keys/openai")
    tags = "/api/llm-settings/{userId}/budget/tags"
    s.api("GET", tags, f"/api/llm-settings/{ALICE}/budget/tags")
    s.api("GET", tags + "/alerts", f"/api/llm-settings/{ALICE}/budget/tags/alerts")
    c42 = {"key": "customer", "value": "c-42"}
    tag = s.api("GET", "/api/llm-settings/{userId}/budget/tag", f"/api/llm-settings/{ALICE}/budget/tag", query=c42)
    if tag is not None and tag.status == 200 and Decimal(str(tag.json()["status"]["reservedUsd"])) != 0:
        s.problem("aggregate", f"c-42's strict holds were not released after aggregation: {tag.text[:300]}")
    s.api("DELETE", "/api/llm-settings/{userId}/budget/tag", f"/api/llm-settings/{ALICE}/budget/tag", query=c42)
    deleted = s.api("DELETE", "/api/llm-settings/{userId}/budget", f"/api/llm-settings/{ALICE}/budget")
    if deleted is not None and deleted.status == 200 and deleted.json().get("deleted") is not True:
        s.problem("api", f"the budget was not deleted: {deleted.text[:200]}")


def _documented_operations() -> set[tuple[str, str]]:
    from api.handler import openapi_document

    return {(method.upper(), path) for path, item in openapi_document()["paths"].items() for method in item}


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Scenario], None]


STEPS: tuple[Step, ...] = (
    Step("api: settings, keys, budgets", api_setup),
    Step("connection test", connection_test),
    Step("producer: UsagePublisher", producer_publish),
    Step("producer: provider_for_user", producer_provider),
    Step("api: ingest keys, HTTP ingest, OTLP", api_http_ingest),
    Step("ingest", ingest),
    Step("aggregate", aggregate),
    Step("notify", notify),
    Step("reconcile", reconcile),
    Step("api: every read route, budget removed", api_reads),
)


def _logical(template: Mapping[str, Any], kind: str, name: str) -> str:
    prop = {
        "AWS::SQS::Queue": "QueueName",
        "AWS::DynamoDB::Table": "TableName",
        "AWS::Events::EventBus": "Name",
    }[kind]
    found = [k for k, r in template["Resources"].items() if r["Type"] == kind and r["Properties"].get(prop) == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return str(found[0])

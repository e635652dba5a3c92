"""POST /api/usage-events and the ingest-key routes on moto: keys shown once and stored as a hash, per-event
answers, one path to the tables (bus → queue → ingest), duplicates, tenant scope, revocation, limits."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llmtally import aws
from llmtally.resources import ResourceNames
from tests.conftest import MotoServer
from tests.integration.api.conftest import ADMIN_CLAIMS, ALICE, BOB, JsonLogs
from tests.integration.test_ingest_pipeline import deliver
from tests.support.apigw import ApiResponse, call, http_event, request
from tests.support.pipeline import IngestRoute, create_pipeline, reset_ingest_state

pytestmark = pytest.mark.integration

NAMES = ResourceNames()
#: One timestamp for every event: a retry resends an event unchanged (its key is timestamp#event_id).
AT = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()


@pytest.fixture
def route(moto: MotoServer) -> Iterator[IngestRoute]:
    from api.routes import ingest, ingest_keys

    reset_ingest_state()
    ingest.reset()
    ingest_keys.reset()
    yield create_pipeline(NAMES)
    ingest.reset()
    ingest_keys.reset()
    reset_ingest_state()


def _create_key(user: str = ALICE, *, claims: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
    response = request(
        "POST", f"/api/llm-settings/{user}/ingest-keys", claims=claims or {"sub": user}, body={"name": "ci", **body}
    )
    assert response.status == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _post(key: str | None, body: Any, path: str = "/api/usage-events") -> ApiResponse:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return request("POST", path, body=body, headers=headers)


def _event(n: int, **overrides: Any) -> dict[str, Any]:
    event = {
        "event_id": f"http-event-{n:04d}",
        "user_id": ALICE,
        "timestamp": AT,
        "provider": "openai",
        "model": "gpt-4o",
        "operation_type": "conversation",
        "input_tokens": 100 + n,
        "output_tokens": 10,
    }
    event.update(overrides)
    return event


def _raw_entries(user: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = aws.client("dynamodb").query(
        TableName=NAMES.usage_table,
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": user}},
    )["Items"]
    return items


def test_a_batch_is_answered_per_event_and_takes_the_pipeline_to_the_table(route: IngestRoute) -> None:
    # Given a key alice created
    key = _create_key()["key"]
    # When she posts a batch with a good event, a bad one, another tenant's, a repeat and one without user_id
    response = _post(
        key,
        {
            "events": [
                _event(1),
                _event(2, input_tokens=-1),
                _event(3, user_id=BOB),
                _event(1),
                {k: v for k, v in _event(4).items() if k != "user_id"},
                "not an event",
            ]
        },
    )
    # Then each event has its own answer
    assert response.status == 200, response.text
    body = response.json()
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "rejected"),
        (3, "duplicate"),
        (4, "accepted"),
        (5, "rejected"),
    ]
    assert "input_tokens" in body["results"][1]["reason"]
    assert "another tenant" in body["results"][2]["reason"]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 3)
    # And the accepted events reach the raw table only through the queue and the ingest handler
    assert _raw_entries(ALICE) == []
    deliver(route)
    stored = sorted(item["sk"]["S"].split("#", 1)[1] for item in _raw_entries(ALICE))
    assert stored == ["http-event-0001", "http-event-0004"]
    assert _raw_entries(BOB) == []
    # When the same events are posted again, the recorded ones are duplicates and nothing is sent
    again = _post(key, {"events": [_event(1), _event(4, user_id=ALICE)]}).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert deliver(route) == []


def test_keys_are_shown_once_stored_as_a_hash_listed_with_last_use_and_revocable(
    route: IngestRoute, json_logs: JsonLogs
) -> None:
    # Given a key
    created = _create_key(name="checkout service")
    key, key_id = created["key"], created["key_id"]
    assert key.startswith(f"llt_{key_id}_")
    # Then the settings table holds its SHA-256, never the key
    scan = json.dumps(aws.client("dynamodb").scan(TableName=NAMES.settings_table)["Items"])
    secret = key[len("llt_") + 17 :]  # llt_<16-char id>_<secret>
    assert secret not in scan
    assert hashlib.sha256(secret.encode()).hexdigest() in scan
    # When it is used, the list shows when (and never the key)
    assert _post(key, {"events": [_event(7)]}).status == 200
    listed = request("GET", f"/api/llm-settings/{ALICE}/ingest-keys", claims={"sub": ALICE})
    assert listed.status == 200
    [info] = listed.json()["keys"]
    assert info["name"] == "checkout service"
    assert info["last_used_at"] is not None
    assert secret not in listed.text
    # And bob cannot list or revoke alice's keys
    assert request("GET", f"/api/llm-settings/{ALICE}/ingest-keys", claims={"sub": BOB}).status == 403
    assert request("DELETE", f"/api/llm-settings/{ALICE}/ingest-keys/{key_id}", claims={"sub": BOB}).status == 403
    # When alice revokes it, its next request is refused
    revoked = request("DELETE", f"/api/llm-settings/{ALICE}/ingest-keys/{key_id}", claims={"sub": ALICE})
    assert revoked.json() == {"key_id": key_id, "revoked": True}
    refused = _post(key, {"events": [_event(8)]})
    assert refused.status == 401
    assert request("GET", f"/api/llm-settings/{ALICE}/ingest-keys", claims={"sub": ALICE}).json()["keys"] == []
    # And the secret never reached a log line
    assert secret not in json_logs.text


def test_requests_without_a_valid_key_are_401(route: IngestRoute) -> None:
    # (one test, several headers: each setup of the pipeline on moto costs seconds)
    for authorization in (None, "Bearer", "Basic abc", "Bearer llt_aaaaaaaaaaaaaaaa_" + "A" * 43, "Bearer sk-nope"):
        headers = {"authorization": authorization} if authorization else {}
        response = request("POST", "/api/usage-events", body={"events": [_event(1)]}, headers=headers)
        assert response.status == 401, authorization
        assert "ingest key" in response.json()["error"]
    # And a real key id with a forged secret is refused like any other
    key = _create_key()["key"]
    forged = key[:-43] + ("B" * 43 if not key.endswith("B" * 43) else "C" * 43)
    assert _post(forged, {"events": [_event(1)]}).status == 401
    assert request("POST", "/api/otel/v1/traces", body=_otlp_json([CHAT])).status == 401


def test_an_admin_key_writes_any_tenant_and_only_admins_create_one(route: IngestRoute) -> None:
    # Given alice (no admin) cannot create an all-tenants key
    refused = request(
        "POST", f"/api/llm-settings/{ALICE}/ingest-keys", claims={"sub": ALICE}, body={"name": "x", "all_tenants": True}
    )
    assert refused.status == 403
    # When an admin creates one, it writes alice's and bob's events
    key = _create_key("ops-1", claims=ADMIN_CLAIMS, all_tenants=True)["key"]
    body = _post(key, {"events": [_event(1), _event(2, user_id=BOB)]}).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted"]
    # And an event without a tenant is rejected (an admin key names no tenant of its own)
    missing = _post(key, {"events": [{k: v for k, v in _event(3).items() if k != "user_id"}]}).json()
    assert missing["results"][0]["status"] == "rejected"
    # And OTLP spans naming another tenant are that tenant's only with the admin key
    document = _otlp_json([CHAT], resource={"enduser.id": BOB})
    refused = _post_otlp(_create_key()["key"], document)
    assert refused.headers["X-LLMtally-Rejected"] == "1"
    assert "another tenant" in refused.json()["partialSuccess"]["errorMessage"]
    assert _post_otlp(key, document).headers["X-LLMtally-Accepted"] == "1"


def test_malformed_batches_and_unreadable_otlp_bodies_are_4xx(route: IngestRoute) -> None:
    key = _create_key()["key"]
    cases: list[tuple[Any, int]] = [
        ({"events": []}, 400),
        ({"events": [_event(1)], "extra": 1}, 400),
        ({"evts": []}, 400),
        ({"events": [_event(n) for n in range(501)]}, 413),
    ]
    for body, status in cases:
        assert _post(key, body).status == status, status
    huge = request("POST", "/api/usage-events", raw_body="x" * 1_048_577, headers={"authorization": f"Bearer {key}"})
    assert huge.status == 413
    # And OTLP bodies that cannot be read
    for raw, content_type, status in [(b"\x00garbage", "application/x-protobuf", 400), (b"{}", "text/plain", 415)]:
        response = _post_binary(raw, {"authorization": f"Bearer {key}", "content-type": content_type})
        assert response.status == status, content_type


def test_the_per_key_request_rate_is_bounded(route: IngestRoute, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.routes import ingest

    monkeypatch.setenv("LLMTALLY_INGEST_RATE_LIMIT", "2")
    ingest.reset()
    key = _create_key()["key"]
    assert _post(key, {"events": [_event(1)]}).status == 200
    assert _post(key, {"events": [_event(2)]}).status == 200
    limited = _post(key, {"events": [_event(3)]})
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1


# -- OTLP receiver ---------------------------------------------------------------------------------


def _otlp_json(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    def attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for key, value in values.items():
            if isinstance(value, bool):
                out.append({"key": key, "value": {"boolValue": value}})
            elif isinstance(value, int):
                out.append({"key": key, "value": {"intValue": str(value)}})
            else:
                out.append({"key": key, "value": {"stringValue": value}})
        return out

    end = int(datetime.fromisoformat(AT).timestamp() * 1e9)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes(resource or {"service.name": "svc"})},
                "scopeSpans": [
                    {
                        "scope": {"name": "test"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": f"{n + 1:016x}",
                                "name": "chat",
                                "kind": 3,
                                "startTimeUnixNano": str(end - 900_000_000),
                                "endTimeUnixNano": str(end),
                                "attributes": attributes(span),
                                "status": {"code": 2 if span.get("error.type") else 0},
                            }
                            for n, span in enumerate(spans)
                        ],
                    }
                ],
            }
        ]
    }


CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 2048,
    "gen_ai.usage.cache_read.input_tokens": 1536,
    "gen_ai.usage.output_tokens": 100,
}


def _post_otlp(key: str, document: dict[str, Any], *, encoding: str = "json") -> ApiResponse:
    from google.protobuf.json_format import ParseDict  # type: ignore[import-untyped]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    headers = {"authorization": f"Bearer {key}"}
    if encoding == "json":
        return request("POST", "/api/otel/v1/traces", body=document, headers=headers)
    # protobuf: the same request, ids as bytes
    message = ExportTraceServiceRequest()
    proto_doc = json.loads(json.dumps(document))
    for rs in proto_doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for name in ("traceId", "spanId"):
                    span[name] = base64.b64encode(bytes.fromhex(span[name])).decode()
    ParseDict(proto_doc, message)
    return _post_binary(message.SerializeToString(), headers)


def _post_binary(raw: bytes, headers: dict[str, str]) -> ApiResponse:
    event = http_event("POST", "/api/otel/v1/traces", headers={"content-type": "application/x-protobuf", **headers})
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True
    return call(event)


def test_otlp_json_spans_become_events_ignored_and_rejected_ones_counted(route: IngestRoute) -> None:
    key = _create_key()["key"]
    # Given a model call, an agent span, an HTTP span and a span of a provider llmtally does not meter
    document = _otlp_json(
        [
            CHAT,
            {**CHAT, "gen_ai.operation.name": "invoke_agent"},
            {"http.method": "GET"},
            {**CHAT, "gen_ai.provider.name": "cohere"},
        ]
    )
    response = _post_otlp(key, document)
    # Then OTLP's answer reports the rejected span, and the headers count every outcome
    assert response.status == 200, response.text
    assert response.json()["partialSuccess"]["rejectedSpans"] == 1
    assert "not metered" in response.json()["partialSuccess"]["errorMessage"]
    counts = {
        k: response.headers[f"X-LLMtally-{k}"] for k in ("Spans", "Accepted", "Duplicates", "Rejected", "Ignored")
    }
    assert counts == {"Spans": "4", "Accepted": "1", "Duplicates": "0", "Rejected": "1", "Ignored": "2"}
    # And the model call reaches the raw table through the pipeline, cache counted once
    deliver(route)
    [item] = _raw_entries(ALICE)
    assert (item["input_tokens"]["N"], item["cache_read_tokens"]["N"], item["output_tokens"]["N"]) == (
        "512",
        "1536",
        "100",
    )
    assert item["sk"]["S"].endswith("#otel:5b8efff798038103d269b633813fc60c:0000000000000001")
    # When the same spans are exported again (protobuf this time), the recorded one is a duplicate
    again = _post_otlp(key, document, encoding="protobuf")
    assert again.status == 200
    assert again.headers["Content-Type"] == "application/x-protobuf"
    assert (again.headers["X-LLMtally-Duplicates"], again.headers["X-LLMtally-Accepted"]) == ("1", "0")


def test_events_the_bus_refuses_are_a_503_and_counted_for_the_alarm(
    route: IngestRoute, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from botocore.exceptions import ClientError

    from llmtally import metric_names
    from llmtally.observability import metrics
    from tests.integration.test_handled_failure_metrics import emf_metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    metrics.clear_metrics()
    key = _create_key()["key"]
    capsys.readouterr()
    # Given the usage bus refuses every PutEvents (throttled)
    events_client = aws.client("events")

    def throttled(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutEvents")

    events_client.meta.events.register("before-call.events.PutEvents", throttled)
    try:
        # When two events are posted
        response = _post(key, {"events": [_event(1), _event(2)]})
    finally:
        events_client.meta.events.unregister("before-call.events.PutEvents", throttled)
    # Then the caller is told to retry, and both refusals are counted
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    counted = emf_metrics(capsys.readouterr().out)
    assert counted[metric_names.HTTP_INGEST_BUS_REFUSED] == 2
    assert counted[metric_names.API_SERVER_ERRORS] == 1


def test_gzip_otlp_json_through_the_local_stacks_http_event(route: IngestRoute) -> None:
    # Given a gzip-compressed OTLP/JSON body, as the local stack's HTTP server hands it to the handler
    import gzip

    from llmtally.local.http import http_api_event
    from tests.support.apigw import FakeLambdaContext

    key = _create_key()["key"]
    body = gzip.compress(json.dumps(_otlp_json([CHAT])).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip", "authorization": f"Bearer {key}"}
    event = http_api_event(
        method="POST", raw_path="/api/otel/v1/traces", raw_query="", headers=headers, body=body, claims=None
    )
    # Then it arrives base64-encoded (binary) and is read whole
    assert event["isBase64Encoded"] is True
    from api.handler import lambda_handler

    answer = lambda_handler(event, FakeLambdaContext())
    assert answer["statusCode"] == 200, answer
    assert answer["headers"]["X-LLMtally-Accepted"] == "1"

"""Tracking end to end on moto: a call through a tracked provider is one event on an SQS queue, a failed
call one error event, and tracking never raises into the caller. Also: a provider built for a user from
their stored preferences and their key in Secrets Manager (cached briefly).

The publisher is `llmtally.publisher.UsagePublisher.for_sqs` when that module exists; until then a
synchronous stand-in with the same `publish` method sends each event with SendMessage.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from llmtally.events import Provider, Status, UsageEvent
from llmtally.pricing import PriceBook
from llmtally.providers import (
    AuthenticationError,
    LLMProviderFactory,
    ProviderError,
    RetryPolicy,
    SecretKeyStore,
    TrackedProvider,
    UsageSink,
    provider_for_user,
    track,
)
from llmtally.providers.budget import BudgetedProvider
from llmtally.settings import get_settings
from tests.conftest import MotoServer
from tests.unit.providers.conftest import ANTHROPIC_KEY, MockAPI, error_reply, fixture_json, json_reply, no_sleep

pytestmark = pytest.mark.integration

HAVE_PUBLISHER = importlib.util.find_spec("llmtally.publisher") is not None


class _SqsStandIn:
    """Until `llmtally.publisher` lands: the same `publish` contract, sent synchronously."""

    def __init__(self, queue_url: str, client: Any) -> None:
        self.queue_url, self.client = queue_url, client

    def publish(self, event: UsageEvent) -> bool:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=event.to_json())
        return True

    def flush(self, timeout: float) -> bool:
        return True


@pytest.fixture
def queue(moto: MotoServer) -> tuple[str, Any]:
    sqs: Any = moto.client("sqs")
    url = sqs.create_queue(QueueName="llm-usage-ingest")["QueueUrl"]
    return url, sqs


@pytest.fixture
def publisher(queue: tuple[str, Any]) -> Iterator[Any]:
    url, sqs = queue
    if HAVE_PUBLISHER:
        from llmtally.publisher import UsagePublisher  # type: ignore[import-not-found,unused-ignore]

        real = UsagePublisher.for_sqs(url, client=sqs)
        yield real
        real.flush(10)
    else:
        yield _SqsStandIn(url, sqs)


def _drain(queue: tuple[str, Any], publisher: Any) -> list[UsageEvent]:
    publisher.flush(10)
    url, sqs = queue
    events: list[UsageEvent] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return events
        for message in got:
            body = json.loads(message["Body"])
            events.append(UsageEvent.model_validate(body.get("detail", body)))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _anthropic(api: MockAPI) -> Any:
    return LLMProviderFactory.create(
        "anthropic",
        api_key=ANTHROPIC_KEY,
        http_client=api.client(),
        price_book=PriceBook(),
        retry=RetryPolicy(max_attempts=1),
        sleep=no_sleep,
    )


def test_a_tracked_call_ends_as_one_event_on_the_queue(queue: tuple[str, Any], publisher: Any) -> None:
    # Given a tracked Anthropic provider and a cached-prompt answer
    api = MockAPI([json_reply(fixture_json("anthropic", "message_cache.json"), headers={"request-id": "req_1"})])
    provider = track(_anthropic(api), publisher, user_id="user-123", operation_type="detection_rule")
    assert isinstance(publisher, UsageSink)
    # When
    response = provider.generate(prompt="q", request_id="corr-42", metadata={"rule": "brute-force"})
    # Then exactly one event, with every bucket, as sent
    (event,) = _drain(queue, publisher)
    assert (event.user_id, event.provider, event.model) == ("user-123", Provider.ANTHROPIC, "claude-sonnet-4-6")
    assert (event.operation_type, event.request_id, event.status) == ("detection_rule", "corr-42", Status.OK)
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens) == (
        50,
        2000,
        1200,
        300,
    )
    assert (event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (1000, 200)
    assert event.reported_cost_usd == Decimal("0.0102") == response.usage.cost_usd
    assert event.metadata == {"rule": "brute-force", "provider_request_id": "req_1"}


def test_a_failed_call_ends_as_one_error_event(queue: tuple[str, Any], publisher: Any) -> None:
    api = MockAPI([error_reply(fixture_json("anthropic", "errors.json")["overloaded"])])
    provider = track(_anthropic(api), publisher, user_id="user-123")
    with pytest.raises(ProviderError):
        provider.generate(prompt="q")
    (event,) = _drain(queue, publisher)
    assert (event.status, event.error_type, event.total_tokens) == (Status.ERROR, "unavailable", 0)


def test_an_unreachable_queue_never_reaches_the_caller(moto: MotoServer) -> None:
    sqs: Any = moto.client("sqs")
    missing = f"{moto.endpoint_url}/123456789012/no-such-queue"
    sink = _SqsStandIn(missing, sqs)
    api = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))])
    provider = TrackedProvider(_anthropic(api), sink, user_id="user-123")
    assert provider.generate(prompt="q").usage.total_tokens == 2000
    assert provider.tracking_failures == 1


@pytest.fixture
def stored_user(moto: MotoServer) -> str:
    from llmtally.tables import create_tables

    names = get_settings().names
    create_tables(moto.client("dynamodb"), names)
    secrets: Any = moto.client("secretsmanager")
    secrets.create_secret(Name=names.secret_name("user-123", Provider.ANTHROPIC), SecretString=ANTHROPIC_KEY)
    dynamodb: Any = moto.client("dynamodb")
    dynamodb.put_item(
        TableName=names.settings_table,
        Item={
            "user_id": {"S": "user-123"},
            "setting_type": {"S": "llm_preferences"},
            "preferences": {
                "M": {
                    "defaultProvider": {"S": "anthropic"},
                    "queryModel": {"S": "claude-haiku-4-5-20251001"},
                    "detectionModel": {"S": "claude-sonnet-4-6"},
                    "maxTokens": {"N": "2000"},
                    "temperature": {"N": "0"},
                    "enableCaching": {"BOOL": True},
                    "trackUsage": {"BOOL": True},
                }
            },
        },
    )
    return "user-123"


def test_a_provider_for_a_user_from_stored_settings_and_key(
    stored_user: str, moto: MotoServer, queue: tuple[str, Any], publisher: Any
) -> None:
    api = MockAPI([json_reply(fixture_json("anthropic", "message_plain.json"))])
    keys = SecretKeyStore()
    provider = provider_for_user(
        stored_user,
        operation_type="detection_rule",
        key_store=keys,
        publisher=publisher,
        http_client=api.client(),
        price_book=PriceBook(),
    )
    # tracked, and obeying the user's budget (none here: calls go through)
    assert isinstance(provider, BudgetedProvider)
    assert isinstance(provider.inner, TrackedProvider)
    assert (provider.name, provider.model) == ("anthropic", "claude-sonnet-4-6")
    provider.generate(prompt="q")
    sent_key = api.requests[0].headers.get("x-api-key") or api.requests[0].headers["authorization"][7:]
    assert sent_key == ANTHROPIC_KEY
    assert api.body()["max_tokens"] == 2000
    (event,) = _drain(queue, publisher)
    assert (event.user_id, event.operation_type) == ("user-123", "detection_rule")

    # The key is cached: deleting the secret does not break the next build until the cache is invalidated
    secrets: Any = moto.client("secretsmanager")
    name = get_settings().names.secret_name(stored_user, Provider.ANTHROPIC)
    secrets.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    again = provider_for_user(stored_user, key_store=keys, http_client=httpx2.Client(), price_book=PriceBook())
    assert again.model == "claude-haiku-4-5-20251001"  # query_generation → queryModel
    keys.invalidate(stored_user)
    with pytest.raises(AuthenticationError, match="no Anthropic API key is stored"):
        provider_for_user(stored_user, key_store=keys)


def test_a_user_without_preferences_gets_the_seed_defaults(moto: MotoServer) -> None:
    from llmtally.tables import create_tables

    create_tables(moto.client("dynamodb"), get_settings().names)
    provider = provider_for_user("user-new", key_store=SecretKeyStore())
    assert provider.name == "bedrock"  # the seed's defaultProvider
    assert provider.model == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # no model saved: the provider default


def test_a_seed_model_name_on_bedrock_resolves_to_its_bedrock_id(moto: MotoServer) -> None:
    prefs = {"defaultProvider": "bedrock", "queryModel": "claude-3-5-sonnet-20241022"}
    provider = provider_for_user("user-old", preferences=prefs, key_store=SecretKeyStore())
    assert provider.model == "anthropic.claude-3-5-sonnet-20241022-v2:0"

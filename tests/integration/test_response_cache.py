"""The response cache on moto: a repeated deterministic call is answered from the cache table (the
provider's HTTP transport is hit once), tracked as a $0 cache-hit event, shown in the summary as
hits and money saved; never shared across users; expired entries are never served; a cache failure
never breaks a call; and neither the key nor the prompt ends up in the table or the logs.

The provider is the real Anthropic SDK answered at its HTTP transport (httpx2.MockTransport).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aggregate.handler import lambda_handler as aggregate_handler
from ingest.handler import lambda_handler as ingest_handler
from llmtally import aws
from llmtally.api.usage import entry_row
from llmtally.events import Status
from llmtally.ingest import RawEntry
from llmtally.pricing import PriceBook
from llmtally.providers import LLMProviderFactory, RetryPolicy, TrackedProvider
from llmtally.publisher import UsagePublisher
from llmtally.queries import summarize
from llmtally.repositories.response_cache import MAX_CACHED_TEXT_BYTES, ResponseCacheRepository
from llmtally.response_cache import ResponseCache
from llmtally.settings import get_settings
from llmtally.tables import create_tables
from tests.conftest import MotoServer
from tests.integration.test_aggregate import read_stream, stream_arn
from tests.integration.test_provider_tracking import _drain, publisher, queue
from tests.support.lambda_events import (
    FakeLambdaContext,
    receive_all,
    sqs_event_from_messages,
    stream_event_from_records,
)
from tests.support.pipeline import IngestRoute, create_pipeline, reset_ingest_state
from tests.unit.providers.conftest import ANTHROPIC_KEY, MockAPI, fixture_json, json_reply, no_sleep

pytestmark = pytest.mark.integration

__all__ = ["publisher", "queue"]  # fixtures, used by this module's tests

PROMPT = "which hosts logged more than 100 failed logins in the last hour?"
# The seed's worked example: Claude 3.5 Sonnet, 1,500 in + 500 out = $0.0120.
FIRST_COST = Decimal("0.0120")


class Clock:
    """A settable clock: expiry is tested by moving it, never by waiting."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def answer(text: str | None = None, model: str = "claude-3-5-sonnet-20241022") -> Any:
    body = fixture_json("anthropic", "message_plain.json")
    body["model"] = model
    if text is not None:
        body["content"][0]["text"] = text
    return json_reply(body, headers={"request-id": "req_cache_1"})


def anthropic(api: MockAPI, **options: Any) -> Any:
    return LLMProviderFactory.create(
        "anthropic",
        api_key=ANTHROPIC_KEY,
        http_client=api.client(),
        price_book=PriceBook(),
        retry=RetryPolicy(max_attempts=1),
        sleep=no_sleep,
        model="claude-3-5-sonnet-20241022",
        **options,
    )


@pytest.fixture
def tables(moto: MotoServer) -> MotoServer:
    create_tables(moto.client("dynamodb"), get_settings().names)
    return moto


def cache_items(moto: MotoServer) -> list[dict[str, Any]]:
    client: Any = moto.client("dynamodb")
    return list(client.scan(TableName=get_settings().names.response_cache_table)["Items"])


def test_a_repeated_deterministic_call_is_served_from_the_cache_and_tracked_as_a_hit(
    tables: MotoServer, queue: tuple[str, Any], publisher: Any
) -> None:
    # Given a tracked provider with the response cache, and a provider that answers once
    api = MockAPI([answer()])
    cache = ResponseCache(ResponseCacheRepository())
    provider = TrackedProvider(anthropic(api), publisher, user_id="alice", response_cache=cache)
    # When the same deterministic request is made twice (spelled two ways)
    first = provider.generate(prompt=PROMPT, temperature=0)
    second = provider.generate(messages=[{"role": "user", "content": PROMPT}], temperature=0.0)
    # Then the provider was called once, and the second answer is the first, flagged as a hit
    assert len(api.requests) == 1
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert (second.content, second.model, second.stop_reason) == (first.content, first.model, "end_turn")
    assert (second.usage.total_tokens, second.usage.cost_usd) == (0, Decimal(0))
    assert first.usage.cost_usd == FIRST_COST == second.saved_cost_usd
    assert (cache.stats.hits, cache.stats.misses, cache.stats.stores) == (1, 1, 1)
    # And two events: the call as usual, then a zero-token $0 hit carrying what it saved
    call, hit = _drain(queue, publisher)
    assert (call.cache_hit, call.total_tokens, call.reported_cost_usd) == (False, 2000, FIRST_COST)
    assert (hit.cache_hit, hit.status, hit.total_tokens, hit.reported_cost_usd) == (True, Status.OK, 0, Decimal(0))
    assert (hit.saved_cost_usd, hit.model, hit.user_id) == (FIRST_COST, call.model, "alice")
    assert "provider_request_id" not in hit.metadata  # no provider request was made


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"temperature": None}, {"temperature": None}),  # the provider's default: not deterministic
        ({"temperature": 0.7}, {"temperature": 0.7}),
        ({"temperature": 0}, {"temperature": 0, "max_tokens": 99}),  # another parameter: another key
        ({"temperature": 0}, {"temperature": 0, "system": "Be terse."}),
        ({"temperature": 0}, {"temperature": 0, "stop_sequences": ["\n"]}),  # an extra parameter counts too
    ],
    ids=["default-temperature", "temperature-0.7", "max-tokens", "system", "extra-param"],
)
def test_non_deterministic_or_different_requests_go_to_the_provider(
    tables: MotoServer, queue: tuple[str, Any], publisher: Any, first: dict[str, Any], second: dict[str, Any]
) -> None:
    api = MockAPI([answer()])
    cache = ResponseCache(ResponseCacheRepository())
    provider = TrackedProvider(anthropic(api), publisher, user_id="alice", response_cache=cache)
    responses = [provider.generate(prompt=PROMPT, **first), provider.generate(prompt=PROMPT, **second)]
    assert len(api.requests) == 2
    assert not any(r.cache_hit for r in responses)
    assert cache.stats.hits == 0
    assert not any(e.cache_hit for e in _drain(queue, publisher))


def test_the_provider_default_temperature_counts_when_it_is_zero(
    tables: MotoServer, queue: tuple[str, Any], publisher: Any
) -> None:
    # Given a provider built with temperature 0 (the seed preferences' default), calls without one
    api = MockAPI([answer()])
    cache = ResponseCache(ResponseCacheRepository())
    provider = TrackedProvider(anthropic(api, temperature=0.0), publisher, user_id="alice", response_cache=cache)
    provider.generate(prompt=PROMPT)
    assert provider.generate(prompt=PROMPT).cache_hit is True
    assert len(api.requests) == 1


def test_streams_are_never_cached(tables: MotoServer, queue: tuple[str, Any], publisher: Any) -> None:
    from tests.unit.providers.conftest import fixture_text, sse_reply

    api = MockAPI([sse_reply(fixture_text("anthropic", "stream_cache.sse"))])
    cache = ResponseCache(ResponseCacheRepository())
    provider = TrackedProvider(anthropic(api), publisher, user_id="alice", response_cache=cache)
    for _ in range(2):
        with provider.stream(prompt=PROMPT, temperature=0) as stream:
            list(stream)
    assert len(api.requests) == 2
    assert (cache.stats.hits, cache.stats.misses, cache.stats.stores) == (0, 0, 0)
    assert cache_items(tables) == []


def test_a_cached_answer_is_never_shared_across_users(
    tables: MotoServer, queue: tuple[str, Any], publisher: Any
) -> None:
    # Given alice's answer in the cache
    api = MockAPI([answer("alice's answer"), answer("bob's answer")])
    cache = ResponseCache(ResponseCacheRepository())
    alice = TrackedProvider(anthropic(api), publisher, user_id="alice", response_cache=cache)
    bob = TrackedProvider(anthropic(api), publisher, user_id="bob", response_cache=cache)
    alice.generate(prompt=PROMPT, temperature=0)
    # When bob makes the very same request
    answer_for_bob = bob.generate(prompt=PROMPT, temperature=0)
    # Then bob's call went to the provider and got his own answer
    assert len(api.requests) == 2
    assert (answer_for_bob.cache_hit, answer_for_bob.content) == (False, "bob's answer")
    # And each user has their own entry, under their own partition and a different key
    items = cache_items(tables)
    assert sorted(i["user_id"]["S"] for i in items) == ["alice", "bob"]
    assert len({i["cache_key"]["S"] for i in items}) == 2
    # And each later hit returns the user's own answer
    assert alice.generate(prompt=PROMPT, temperature=0).content == "alice's answer"
    assert bob.generate(prompt=PROMPT, temperature=0).content == "bob's answer"
    assert len(api.requests) == 2


def test_an_expired_entry_is_never_served(tables: MotoServer, queue: tuple[str, Any], publisher: Any) -> None:
    # Given an answer cached for 60 s (moto never deletes by TTL; DynamoDB deletes late)
    clock = Clock()
    api = MockAPI([answer("first"), answer("second")])
    cache = ResponseCache(ResponseCacheRepository(), ttl_seconds=60, clock=clock)
    provider = TrackedProvider(anthropic(api), publisher, user_id="alice", response_cache=cache)
    provider.generate(prompt=PROMPT, temperature=0)
    (item,) = cache_items(tables)
    assert int(item["expires_at"]["N"]) == int(clock.now.timestamp()) + 60
    # While it is live it is served
    clock.now += timedelta(seconds=59)
    assert provider.generate(prompt=PROMPT, temperature=0).content == "first"
    # When its TTL has passed (the item is still in the table)
    clock.now += timedelta(seconds=1)
    again = provider.generate(prompt=PROMPT, temperature=0)
    # Then the provider is asked again, and the fresh answer replaces the entry
    assert (again.cache_hit, again.content) == (False, "second")
    assert (cache.stats.expired, cache.stats.hits, len(api.requests)) == (1, 1, 2)
    (item,) = cache_items(tables)
    assert item["text"]["S"] == "second"


def test_an_answer_too_large_for_an_item_is_not_stored(
    tables: MotoServer, queue: tuple[str, Any], publisher: Any
) -> None:
    api = MockAPI([answer("x" * (MAX_CACHED_TEXT_BYTES + 1))])
    cache = ResponseCache(ResponseCacheRepository())
    provider = TrackedProvider(anthropic(api), publisher, user_id="alice", response_cache=cache)
    provider.generate(prompt=PROMPT, temperature=0)
    provider.generate(prompt=PROMPT, temperature=0)
    assert len(api.requests) == 2
    assert (cache.stats.skipped_too_large, cache.stats.stores) == (2, 0)
    assert cache_items(tables) == []


def test_a_cache_failure_never_breaks_the_call_and_logs_no_secret(
    moto: MotoServer, queue: tuple[str, Any], publisher: Any, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    # Given no cache table at all (every lookup and store fails)
    # (llmtally's own loggers: botocore's DEBUG wire logs are not ours to judge)
    caplog.set_level(logging.DEBUG, logger="llmtally")
    api = MockAPI([answer()])
    cache = ResponseCache(ResponseCacheRepository())
    provider = TrackedProvider(anthropic(api), publisher, user_id="alice", response_cache=cache)
    # When a cacheable call is made
    response = provider.generate(prompt=PROMPT, temperature=0)
    # Then it is answered by the provider and tracked as usual; the failures are counted
    assert response.content.startswith("SELECT")
    assert cache.stats.failures == 2
    (event,) = _drain(queue, publisher)
    assert event.cache_hit is False
    # And the logs say what failed, without the prompt, the answer or the key
    assert any("response cache lookup failed" in r.getMessage() for r in caplog.records)
    captured = caplog.text + "".join(str(r.__dict__) for r in caplog.records) + "".join(capsys.readouterr())
    for secret in (ANTHROPIC_KEY, ANTHROPIC_KEY[-12:], PROMPT, response.content):
        assert secret not in captured


def test_the_table_holds_neither_the_key_nor_the_prompt(
    tables: MotoServer, queue: tuple[str, Any], publisher: Any
) -> None:
    api = MockAPI([answer()])
    provider = TrackedProvider(
        anthropic(api), publisher, user_id="alice", response_cache=ResponseCache(ResponseCacheRepository())
    )
    provider.generate(prompt=PROMPT, system="You are a SOC analyst.", temperature=0)
    (item,) = cache_items(tables)
    stored = str(item)
    for secret in (ANTHROPIC_KEY, ANTHROPIC_KEY[-12:], PROMPT, "SOC analyst"):
        assert secret not in stored
    assert item["cost_nanos"] == {"N": "12000000"}
    assert item["tokens"]["M"] == {"input_tokens": {"N": "1500"}, "output_tokens": {"N": "500"}}


# -- through the pipeline: ingest → stream → aggregate → summary and entries -------------------


@pytest.fixture
def route(moto: MotoServer) -> Iterator[IngestRoute]:
    reset_ingest_state()
    yield create_pipeline()
    reset_ingest_state()


def test_hits_reach_the_summary_as_calls_and_money_saved(route: IngestRoute) -> None:
    # Given one call and two cache hits for alice, published to the bus like any usage
    publisher = UsagePublisher.for_eventbridge(route.bus_name, background=False)
    api = MockAPI([answer()])
    provider = TrackedProvider(
        anthropic(api), publisher, user_id="alice", response_cache=ResponseCache(ResponseCacheRepository())
    )
    for _ in range(3):
        provider.generate(prompt=PROMPT, temperature=0)
    assert len(api.requests) == 1
    assert publisher.flush(timeout=10)
    publisher.close(timeout=1)
    # When the events go through the ingest and aggregate handlers
    messages = receive_all(aws.client("sqs"), route.queue_url)
    assert len(messages) == 3
    context = FakeLambdaContext()
    assert ingest_handler(sqs_event_from_messages(messages, queue_arn=route.queue_arn), context) == {
        "batchItemFailures": []
    }
    arn = stream_arn()
    assert aggregate_handler(stream_event_from_records(read_stream(arn), stream_arn=arn), context) == {
        "batchItemFailures": []
    }
    # Then the summary counts three requests, two of them hits, one call's cost, two calls saved
    today = datetime.now(UTC).date()
    summary = summarize("alice", today - timedelta(days=1), today + timedelta(days=1))
    assert (summary.total_requests, summary.cache_hits) == (3, 2)
    assert summary.total_cost_usd == FIRST_COST
    assert summary.saved_cost_usd == 2 * FIRST_COST
    assert summary.total_tokens == 2000
    assert summary.unpriced_requests == 0
    # And the raw entries show which calls were hits
    client: Any = aws.client("dynamodb")
    items = client.query(
        TableName=get_settings().names.usage_table,
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": "alice"}},
    )["Items"]
    rows = sorted((entry_row(RawEntry.from_dynamodb(i)) for i in items), key=lambda r: r["cache_hit"])
    assert [(r["cache_hit"], r["saved_cost_usd"], r["total_tokens"]) for r in rows] == [
        (False, None, 2000),
        (True, FIRST_COST, 0),
        (True, FIRST_COST, 0),
    ]

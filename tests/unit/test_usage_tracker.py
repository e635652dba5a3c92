"""The seed's tracking API: UsageTracker.track_usage and UsageTrackerMiddleware.track_llm_call."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmtally import publisher as publisher_module
from llmtally.events import Status, UsageEvent, UsageSource
from llmtally.pricing import CostSource
from llmtally.providers.base import ProviderResponse
from llmtally.publisher import UsagePublisher, set_default_publisher
from llmtally.responses import LLMResponse, LLMUsage
from llmtally.usage_tracker import InvalidCostError, UsageTracker, UsageTrackerMiddleware, to_cost_decimal


class RecordingSqs:
    """SendMessageBatch that accepts everything and keeps the bodies."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.bodies += [entry["MessageBody"] for entry in Entries]
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}


@pytest.fixture
def sqs() -> RecordingSqs:
    return RecordingSqs()


@pytest.fixture
def publisher(sqs: RecordingSqs) -> Iterator[UsagePublisher]:
    built = UsagePublisher.for_sqs("https://sqs.us-east-1.amazonaws.com/1/q", client=sqs, background=False)
    yield built
    built.close(timeout=1)


def sent(publisher: UsagePublisher, sqs: RecordingSqs) -> list[UsageEvent]:
    assert publisher.flush(timeout=5)
    return [UsageEvent.from_json(body) for body in sqs.bodies]


def seed_call(tracker: UsageTracker, **changes: Any) -> UsageEvent | None:
    """The seed's worked example: Claude 3.5 Sonnet, 1500 in / 500 out, $0.0120."""
    args: dict[str, Any] = {
        "user_id": "user-1",
        "provider": "anthropic",
        "model": "claude-3-5-sonnet-20241022",
        "operation_type": "query_generation",
        "input_tokens": 1500,
        "output_tokens": 500,
        "cost_usd": Decimal("0.0120"),
        "latency_ms": 842,
        "request_id": "req-42",
    }
    args.update(changes)
    return tracker.track_usage(**args)


# -- track_usage ---------------------------------------------------------------------------------


def test_track_usage_publishes_the_event_it_returns(publisher: UsagePublisher, sqs: RecordingSqs) -> None:
    tracker = UsageTracker(publisher)

    event = seed_call(tracker, metadata={"feature": "search"})

    assert event is not None
    assert (event.user_id, event.provider.value, event.model) == ("user-1", "anthropic", "claude-3-5-sonnet-20241022")
    assert (event.input_tokens, event.output_tokens, event.latency_ms) == (1500, 500, 842)
    assert event.reported_cost_usd == Decimal("0.0120")
    assert event.request_id == "req-42"
    assert event.metadata == {"feature": "search"}
    assert event.status is Status.OK
    assert sent(publisher, sqs) == [event]


def test_track_usage_takes_every_ledger_bucket_status_time_and_id(publisher: UsagePublisher, sqs: RecordingSqs) -> None:
    tracker = UsageTracker(publisher)
    when = datetime.now(UTC).replace(microsecond=123_000) - timedelta(minutes=1)

    event = seed_call(
        tracker,
        cache_read_tokens=3000,
        cache_write_tokens=700,
        cache_write_5m_tokens=200,
        cache_write_1h_tokens=500,
        reasoning_tokens=64,
        status="error",
        error_type="rate_limit",
        timestamp=when,
        event_id="evt-fixed-0001",
    )

    assert event is not None
    assert (event.cache_read_tokens, event.cache_write_tokens, event.reasoning_tokens) == (3000, 700, 64)
    assert (event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (200, 500)
    assert event.total_tokens == 1500 + 500 + 3000 + 700 + 64
    assert (event.status, event.error_type) == (Status.ERROR, "rate_limit")
    assert event.timestamp == when
    assert event.event_id == "evt-fixed-0001"
    assert sent(publisher, sqs) == [event]


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        (Decimal("0.0120"), Decimal("0.0120")),
        (3, Decimal(3)),
        ("0.000015", Decimal("0.000015")),
        (" 1.5 ", Decimal("1.5")),
        (0.1, Decimal("0.1")),  # through repr, never 0.1000000000000000055511151231257827…
        (0.1 + 0.2, Decimal("0.300000000")),  # 0.30000000000000004: rounded to the contract's nano-dollar
        (Decimal("0.0000000015"), Decimal("0.000000002")),  # half-even to 9 places
        (None, None),
    ],
)
def test_costs_are_exact_decimals(cost: Any, expected: Decimal | None) -> None:
    result = to_cost_decimal(cost)

    assert result == expected
    if result is not None:
        assert isinstance(result, Decimal)
        exponent = result.as_tuple().exponent
        assert isinstance(exponent, int)
        assert exponent >= -9


@pytest.mark.parametrize("cost", [float("nan"), float("inf"), "abc", "NaN", True, [1], b"1"])
def test_costs_that_are_not_finite_numbers_are_refused(cost: Any) -> None:
    with pytest.raises(InvalidCostError):
        to_cost_decimal(cost)


@pytest.mark.parametrize(
    "changes",
    [
        {"user_id": "sk-ant-api03 abcdefghijklmnopqrstuvwxyz"},
        {"user_id": ""},
        {"provider": "mistral"},
        {"operation_type": "Not Valid"},
        {"input_tokens": -1},
        {"input_tokens": "12"},
        {"output_tokens": 1.5},
        {"latency_ms": None},
        {"cost_usd": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"},
        {"cost_usd": Decimal(-1)},
        {"metadata": {"api_key": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"}},
        {"metadata": {"note": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"}},
        {"error_type": "timeout"},  # only on errors
        {"timestamp": datetime(2000, 1, 1, tzinfo=UTC)},
        {"cache_write_tokens": 10, "cache_write_5m_tokens": 3},
    ],
)
def test_invalid_input_is_logged_without_values_and_never_raises(
    changes: dict[str, Any],
    publisher: UsagePublisher,
    sqs: RecordingSqs,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="llmtally.usage_tracker")
    tracker = UsageTracker(publisher)

    assert seed_call(tracker, **changes) is None

    assert "usage not tracked" in caplog.text
    assert "sk-ant" not in caplog.text
    assert sent(publisher, sqs) == []
    assert publisher.stats().dropped == 0


def test_the_log_names_the_bad_field(publisher: UsagePublisher, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="llmtally.usage_tracker")

    seed_call(UsageTracker(publisher), operation_type="Bad Op")

    assert "operation_type" in caplog.text
    assert "Bad Op" not in caplog.text


def test_a_dropped_event_is_still_returned_and_counted_by_the_publisher(sqs: RecordingSqs) -> None:
    full = UsagePublisher.for_sqs("https://q", client=sqs, background=False, max_buffer=1)
    tracker = UsageTracker(full)
    try:
        first, second = seed_call(tracker), seed_call(tracker)
        assert first is not None
        assert second is not None
        assert full.stats().dropped == 1
    finally:
        full.close(timeout=1)


def test_without_a_publisher_the_process_default_is_used(publisher: UsagePublisher, sqs: RecordingSqs) -> None:
    previous = set_default_publisher(publisher)
    try:
        event = seed_call(UsageTracker())
    finally:
        set_default_publisher(previous)

    assert event is not None
    assert sent(publisher, sqs) == [event]


def test_a_default_publisher_that_cannot_be_built_does_not_break_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> UsagePublisher:
        raise RuntimeError("no settings")

    monkeypatch.setattr(publisher_module, "default_publisher", broken)

    assert seed_call(UsageTracker()) is not None


# -- the middleware ------------------------------------------------------------------------------


def llm_response(**usage_changes: Any) -> LLMResponse:
    usage_fields: dict[str, Any] = {
        "input_tokens": 1200,
        "output_tokens": 300,
        "cost_usd": Decimal("0.012345678"),
        "latency_ms": 1234,
        "model": "claude-sonnet-4-5-20250929",
        "provider": "anthropic",
        "cache_read_tokens": 5000,
        "cache_write_tokens": 900,
        "cache_write_5m_tokens": 400,
        "cache_write_1h_tokens": 500,
        "reasoning_tokens": 77,
        "cost_source": CostSource.CATALOG,
    }
    usage_fields.update(usage_changes)
    usage = LLMUsage(**usage_fields)
    return LLMResponse(content="SELECT 1", usage=usage, model=usage.model, provider=usage.provider)


def test_middleware_maps_every_ledger_bucket_latency_and_cost(publisher: UsagePublisher, sqs: RecordingSqs) -> None:
    middleware = UsageTrackerMiddleware(UsageTracker(publisher))
    response = llm_response()

    event = middleware.track_llm_call("user-7", "conversation", response, "req-9", {"session": "s1"})

    assert event is not None
    usage = response.usage
    assert event.ledger() == usage.tokens()
    assert event.total_tokens == usage.total_tokens
    assert (event.provider.value, event.model) == (usage.provider, usage.model)
    assert event.latency_ms == usage.latency_ms
    assert event.reported_cost_usd == usage.cost_usd
    assert (event.user_id, event.operation_type, event.request_id) == ("user-7", "conversation", "req-9")
    assert event.metadata == {"session": "s1"}
    assert sent(publisher, sqs) == [event]


def test_an_unpriced_response_reports_no_cost_rather_than_zero(publisher: UsagePublisher) -> None:
    middleware = UsageTrackerMiddleware(UsageTracker(publisher))

    event = middleware.track_llm_call(
        "user-7", "conversation", llm_response(cost_usd=Decimal(0), cost_source=CostSource.UNPRICED), None
    )

    assert event is not None
    assert event.reported_cost_usd is None
    assert "reported_cost_usd" not in json.loads(event.to_json())


def test_middleware_never_raises_on_a_bad_response(publisher: UsagePublisher) -> None:
    middleware = UsageTrackerMiddleware(UsageTracker(publisher))

    assert middleware.track_llm_call("user-7", "conversation", object(), "r") is None  # type: ignore[arg-type]
    assert middleware.track_llm_call("user-7", "conversation", llm_response(input_tokens=-5), "r") is None
    assert middleware.track_llm_call("bad user!", "conversation", llm_response(), "r") is None


def test_track_usage_takes_tags_and_usage_provenance(publisher: UsagePublisher, sqs: RecordingSqs) -> None:
    # Given a call attributed to a customer whose usage the provider never reported
    tracker = UsageTracker(publisher)
    # When tracked
    event = seed_call(tracker, cost_usd=None, tags={"customer": "acme-corp"}, usage_source="missing")
    # Then the event carries both, on the wire too
    assert event is not None
    assert (event.tags, event.usage_source) == ({"customer": "acme-corp"}, UsageSource.MISSING)
    assert sent(publisher, sqs) == [event]
    assert json.loads(sqs.bodies[0])["usage_source"] == "missing"
    # And secret-shaped tags are refused like any invalid input (logged, never raised)
    assert seed_call(tracker, tags={"customer": "sk-proj-0123456789abcdefghij"}) is None


def test_a_response_whose_usage_is_missing_reports_no_cost_rather_than_zero(publisher: UsagePublisher) -> None:
    # Given a streamed response whose usage never arrived (llmtally's adapters mark it)
    base = llm_response(
        input_tokens=0,
        output_tokens=0,
        cache_read_tokens=0,
        cache_write_tokens=0,
        cache_write_5m_tokens=None,
        cache_write_1h_tokens=None,
        reasoning_tokens=0,
        cost_usd=Decimal(0),
    )
    response = ProviderResponse(
        content=base.content,
        usage=base.usage,
        model=base.model,
        provider=base.provider,
        usage_source=UsageSource.MISSING,
    )
    # When the middleware tracks it
    event = UsageTrackerMiddleware(UsageTracker(publisher)).track_llm_call("user-7", "conversation", response, None)
    # Then it is a usage-missing event without a cost, never a $0 success
    assert event is not None
    assert event.usage_source is UsageSource.MISSING
    assert event.reported_cost_usd is None

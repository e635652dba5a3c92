"""The seed's round trip: `UsageTracker.track_usage` → bus → rule → queue → ingest → stream →
aggregate → `UsageTracker.get_usage_summary`, every hop the real code on the moto server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aggregate.handler import lambda_handler as aggregate_handler
from ingest.handler import lambda_handler as ingest_handler
from llmtally import aws
from llmtally.publisher import UsagePublisher
from llmtally.usage_tracker import UsageTracker
from tests.conftest import MotoServer
from tests.integration.test_aggregate import read_stream, stream_arn
from tests.support.lambda_events import (
    FakeLambdaContext,
    receive_all,
    sqs_event_from_messages,
    stream_event_from_records,
)
from tests.support.pipeline import IngestRoute, create_pipeline, reset_ingest_state

pytestmark = pytest.mark.integration


@pytest.fixture
def route(moto: MotoServer) -> Iterator[IngestRoute]:
    reset_ingest_state()
    yield create_pipeline()
    reset_ingest_state()


def test_the_seed_example_comes_back_in_the_summary(route: IngestRoute) -> None:
    publisher = UsagePublisher.for_eventbridge(route.bus_name, background=False)
    tracker = UsageTracker(publisher)
    at = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    common: dict[str, Any] = {"user_id": "user-123", "provider": "anthropic", "latency_ms": 842, "timestamp": at}
    # The seed's worked example (Claude 3.5 Sonnet, 1,500 in + 500 out = $0.0120), sent twice with
    # one event id (a producer retry), and a gpt-4o call for a second provider and operation.
    for _ in range(2):
        tracker.track_usage(
            **common,
            model="claude-3-5-sonnet-20241022",
            operation_type="query_generation",
            input_tokens=1500,
            output_tokens=500,
            cost_usd=Decimal("0.0120"),
            request_id="req-1",
            event_id="evt-seed-0001",
        )
    tracker.track_usage(
        **{**common, "provider": "openai"},
        model="gpt-4o-2024-08-06",
        operation_type="detection_rule",
        input_tokens=1000,
        output_tokens=1000,
        cost_usd=None,
        request_id="req-2",
    )
    assert publisher.flush(timeout=10)
    publisher.close(timeout=1)

    messages = receive_all(aws.client("sqs"), route.queue_url)
    assert len(messages) == 3
    assert ingest_handler(sqs_event_from_messages(messages, queue_arn=route.queue_arn), FakeLambdaContext()) == {
        "batchItemFailures": []
    }
    arn = stream_arn()
    assert aggregate_handler(stream_event_from_records(read_stream(arn), stream_arn=arn), FakeLambdaContext()) == {
        "batchItemFailures": []
    }

    summary = tracker.get_usage_summary("user-123", at.date(), at.date())
    # gpt-4o (2024-08-06): $2.50 / $10 per 1M → 0.0025 + 0.01
    assert summary["total_requests"] == 2
    assert summary["total_tokens"] == 4000
    assert summary["total_cost_usd"] == Decimal("0.0120") + Decimal("0.0125")
    assert summary["by_provider"]["anthropic"]["cost_usd"] == Decimal("0.0120")
    assert summary["by_provider"]["openai"]["tokens"] == 2000
    assert summary["by_operation"]["query_generation"]["requests"] == 1
    assert summary["by_operation"]["detection_rule"]["cost_usd"] == Decimal("0.0125")
    assert (
        tracker.get_usage_summary("user-123", at.date() - timedelta(days=2), at.date() - timedelta(days=1))[
            "total_requests"
        ]
        == 0
    )

"""Tags and usage provenance end to end on moto: ingest → raw entries → aggregate → the usage routes.

Events with tags and with `usage_source=missing` go through the real ingest and aggregate handlers;
the summary, its breakdowns and the daily series count `usage_missing`; the entries route and the
CSV export return the tags and the provenance of each entry.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from llmtally.api.csv_export import CSV_COLUMNS
from llmtally.events import Provider, UsageEvent, UsageSource
from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE
from tests.integration.api.test_usage_routes import get, raw, send
from tests.integration.test_aggregate import (  # noqa: F401  (an autouse fixture: keeps moto's transactions fast)
    cheap_transaction_backups,
    stream_arn,
    usage_event,
)
from tests.support.pipeline import reset_ingest_state

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(stack: MotoServer) -> Iterator[str]:
    reset_ingest_state()
    yield stream_arn()
    reset_ingest_state()


def events_with_tags_and_missing_usage() -> list[UsageEvent]:
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    plain = usage_event(ALICE, at)
    tagged = usage_event(ALICE, at + timedelta(minutes=1), provider=Provider.OPENAI, model="gpt-4o").model_copy(
        update={"tags": {"customer": "acme-corp", "feature": "=search"}}
    )
    missing = usage_event(ALICE, at + timedelta(minutes=2)).model_copy(
        update={"usage_source": UsageSource.MISSING, "input_tokens": 0, "output_tokens": 0}
    )
    cancelled = usage_event(ALICE, at + timedelta(minutes=3), error=True).model_copy(
        update={"usage_source": UsageSource.MISSING, "error_type": "cancelled", "tags": {"team": "detections"}}
    )
    # through the wire form, as a producer would send them
    return [UsageEvent.model_validate(e.to_detail()) for e in (plain, tagged, missing, cancelled)]


def test_usage_missing_is_counted_in_the_summary_its_breakdowns_and_the_daily_series(pipeline: str) -> None:
    # Given two of four calls whose usage never arrived (one completed, one cancelled)
    send(events_with_tags_and_missing_usage(), pipeline)
    # When the summary and the daily series are read
    summary = get(f"/api/llm-usage/{ALICE}/summary").json()
    daily = get(f"/api/llm-usage/{ALICE}/daily", days=2).json()["daily_usage"]
    # Then both count them, per dimension too
    assert (summary["total_requests"], summary["usage_missing"], summary["errors"]) == (4, 2, 1)
    assert summary["by_provider"]["anthropic"]["usage_missing"] == 2
    assert summary["by_provider"]["openai"]["usage_missing"] == 0
    assert summary["by_operation"]["conversation"]["usage_missing"] == 2
    assert sum(day["usage_missing"] for day in daily) == 2


def test_entries_and_csv_return_tags_and_usage_source(pipeline: str) -> None:
    # Given tagged and usage-missing events
    sent = events_with_tags_and_missing_usage()
    send(sent, pipeline)
    by_id = {e.event_id: e for e in sent}
    # When the entries are read as JSON
    rows = get(f"/api/llm-usage/{ALICE}", limit=10).json()["entries"]
    # Then each carries its tags ({} when none) and its usage provenance
    assert len(rows) == 4
    for row in rows:
        event = by_id[row["event_id"]]
        assert row["tags"] == event.tags
        assert row["usage_source"] == event.usage_source.value
    # And the raw entries hold the tags and provenance, leaving the defaults off the item
    entries = {e.event_id: e for e in raw(ALICE)}
    assert {e.usage_source for e in entries.values()} == {UsageSource.REPORTED, UsageSource.MISSING}
    # When exported as CSV
    response = get(f"/api/llm-usage/{ALICE}", format="csv")
    reader = csv.reader(io.StringIO(response.text))
    header = next(reader)
    assert tuple(header) == CSV_COLUMNS
    csv_rows = [dict(zip(header, r, strict=True)) for r in reader]
    # Then `tags` is compact JSON with sorted keys (empty when none), `usage_source` a plain column
    for row in csv_rows:
        event = by_id[row["event_id"]]
        assert row["usage_source"] == event.usage_source.value
        if event.tags:
            assert row["tags"] == json.dumps(event.tags, separators=(",", ":"), sort_keys=True)
            assert json.loads(row["tags"]) == event.tags
        else:
            assert row["tags"] == ""
    # A tag value that starts like a formula cannot run: the cell starts with `{`
    assert '"{""customer"":""acme-corp"",""feature"":""=search""}"' in response.text

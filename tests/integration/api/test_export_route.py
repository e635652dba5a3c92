"""The CSV export's own path, `/api/llm-usage/{userId}/export` (its own route, hence its own throttle,
when deployed: tests/infra/test_limits.py), and `?format=csv` on the entries path: the same export
locally, a 307 to the export path when it came through the deployed API's catch-all route."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE, BOB
from tests.support.apigw import ApiResponse, call, http_event
from tests.support.bad_inputs import valid_detail

pytestmark = pytest.mark.integration

CATCH_ALL = "GET /api/{proxy+}"
QUERY = {"start": "2020-01-01", "tz": "Europe/Paris", "order": "oldest", "limit": "2", "format": "csv"}


@pytest.fixture
def entries(stack: MotoServer) -> list[str]:
    """Three raw entries of alice, stored as ingest stores them."""
    from llmtally.events import UsageEvent
    from llmtally.ingest import raw_entry_item
    from llmtally.pricing import PriceBook
    from llmtally.repositories.usage import UsageRepository

    now = datetime.now(UTC)
    ids = []
    for minute in range(3):
        event = UsageEvent.model_validate(
            valid_detail(now - timedelta(minutes=minute), user_id=ALICE, event_id=f"evt-export-{minute:04d}")
        )
        UsageRepository().put_if_absent(raw_entry_item(event, PriceBook().price_event(event), ttl_days=90, now=now))
        ids.append(event.event_id)
    return ids


def get(path: str, query: dict[str, str], *, user: str = ALICE, route_key: str | None = None) -> ApiResponse:
    event = http_event("GET", path, claims={"sub": user}, query=query)
    if route_key is not None:  # as the deployed HTTP API names the route that matched
        event["routeKey"] = event["requestContext"]["routeKey"] = route_key
    return call(event)


def rows(response: ApiResponse) -> list[str]:
    return [line.split(",", 1)[0] for line in response.text.splitlines()[1:]]


def test_the_export_path_answers_the_same_csv_as_format_csv(entries: list[str]) -> None:
    query = {k: v for k, v in QUERY.items() if k != "format"}
    # When alice asks the export path, and the entries path with format=csv (as locally)
    exported = get(f"/api/llm-usage/{ALICE}/export", query)
    legacy = get(f"/api/llm-usage/{ALICE}", QUERY)
    # Then both are the same CSV page, cursor header included
    for response in (exported, legacy):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in response.headers["Content-Disposition"]
    assert exported.text == legacy.text
    assert exported.headers["X-Next-Cursor"] == legacy.headers["X-Next-Cursor"]
    # And following the cursor on the export path gives the rest
    rest = get(f"/api/llm-usage/{ALICE}/export", {**query, "cursor": exported.headers["X-Next-Cursor"]})
    assert rest.status == 200
    assert len(exported.text.splitlines()) + len(rest.text.splitlines()) - 2 == len(entries)


def test_format_csv_through_the_catch_all_route_is_redirected_to_the_export(entries: list[str]) -> None:
    # Given a request the deployed API routed through its catch-all route (no export throttle there)
    response = get(f"/api/llm-usage/{ALICE}", QUERY, route_key=CATCH_ALL)
    # Then it is sent to the export path, with the same query but `format`, and no rows
    assert response.status == 307
    location = urlsplit(response.headers["Location"])
    assert location.path == f"/api/llm-usage/{ALICE}/export"
    assert dict(parse_qsl(location.query)) == {k: v for k, v in QUERY.items() if k != "format"}
    assert response.text == ""
    # And the redirect target, reached through the export route, answers the CSV
    target: dict[str, Any] = dict(parse_qsl(location.query))
    followed = get(location.path, target, route_key="GET /api/llm-usage/{userId}/export")
    assert followed.status == 200
    assert followed.headers["Content-Type"].startswith("text/csv")
    # And JSON entries through the catch-all route are answered as before
    json_page = get(f"/api/llm-usage/{ALICE}", {"limit": "1"}, route_key=CATCH_ALL)
    assert json_page.status == 200
    assert json_page.json()["entries"]


def test_the_redirect_never_helps_another_tenant(entries: list[str]) -> None:
    # bob asking for alice's export is refused before any redirect
    assert get(f"/api/llm-usage/{ALICE}", QUERY, user=BOB, route_key=CATCH_ALL).status == 403
    assert get(f"/api/llm-usage/{ALICE}/export", {}, user=BOB).status == 403


def test_the_export_path_refuses_format_and_unknown_parameters(entries: list[str]) -> None:
    for query in ({"format": "json"}, {"pretty": "1"}):
        response = get(f"/api/llm-usage/{ALICE}/export", query)
        assert response.status == 400, query
        assert "error" in response.json()

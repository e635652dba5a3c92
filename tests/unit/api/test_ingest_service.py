"""IngestService on in-memory stores (the moto-backed routes are tests/integration/api/test_ingest_routes.py):
per-event answers as a property — one bad event never costs its neighbours — the key check, and the rate limit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally.api.errors import NotAuthenticatedError, RateLimitedError, ServiceUnavailableError
from llmtally.api.ingest import IngestService, IngestSettings
from llmtally.events import UsageEvent
from llmtally.ingest_keys import IngestPrincipal, new_key

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AT = (NOW - timedelta(minutes=3)).isoformat()
ALICE = IngestPrincipal(key_id="a" * 16, user_id="alice", all_tenants=False)


class Keys:
    def __init__(self) -> None:
        self.items: dict[str, tuple[str, bool, str]] = {}
        self.touched: list[str] = []

    def lookup(self, key_id: str) -> tuple[str, bool, str] | None:
        return self.items.get(key_id)

    def touch(self, user_id: str, key_id: str, used_at: datetime) -> None:
        self.touched.append(key_id)


class Limiter:
    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take_rate_limit_token(self, user_id: str, name: str, *, window_start: int, limit: int, expires_at: int) -> bool:
        self.used += 1
        return self.used <= self.limit


class Bus:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.sent: list[UsageEvent] = []
        self.refuse = refuse or set()

    def send(self, events: Sequence[UsageEvent]) -> list[str | None]:
        self.sent.extend(e for e in events if e.event_id not in self.refuse)
        return ["ThrottlingException" if e.event_id in self.refuse else None for e in events]


class Recorded:
    def __init__(self, keys: set[tuple[str, str]] | None = None) -> None:
        self.keys = keys or set()

    def recorded(self, events: Sequence[UsageEvent]) -> set[tuple[str, str]]:
        return {(e.user_id, e.sort_key) for e in events} & self.keys


def service(
    *, keys: Keys | None = None, limit: int = 1000, bus: Bus | None = None, recorded: Recorded | None = None
) -> IngestService:
    k, lim, b, r = keys or Keys(), Limiter(limit), bus or Bus(), recorded or Recorded()
    return IngestService(lambda: k, lambda: lim, lambda: b, lambda: r, IngestSettings(), clock=NOW.timestamp)


def event(n: int, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"evt-{n:08d}",
        "user_id": "alice",
        "timestamp": AT,
        "provider": "openai",
        "model": "gpt-4o",
        "operation_type": "chat",
        "input_tokens": n,
        **overrides,
    }


BAD: list[dict[str, Any]] = [
    {"input_tokens": -1},
    {"provider": "cohere"},
    {"user_id": "bob"},
    {"timestamp": "2020-01-01T00:00:00Z"},
    {"metadata": {"api_key": "x"}},
    {"unknown_field": 1},
]


@given(st.lists(st.one_of(st.none(), st.sampled_from(range(len(BAD)))), min_size=1, max_size=60))
def test_each_event_is_answered_on_its_own(plan: list[int | None]) -> None:
    # Given a batch mixing valid events and events broken in different ways
    bus = Bus()
    items = [event(n) if bad is None else event(n, **BAD[bad]) for n, bad in enumerate(plan)]
    # When it is submitted
    answer = service(bus=bus).submit_events(ALICE, json.dumps({"events": items}).encode())
    # Then every event has an answer at its index, the valid ones accepted and sent, the others rejected with a reason
    assert [r["index"] for r in answer["results"]] == list(range(len(plan)))
    for result, bad in zip(answer["results"], plan, strict=True):
        assert result["status"] == ("accepted" if bad is None else "rejected")
        assert (result.get("reason") is None) == (bad is None)
    assert sorted(e.event_id for e in bus.sent) == sorted(f"evt-{n:08d}" for n, bad in enumerate(plan) if bad is None)
    assert answer["accepted"] + answer["rejected"] == len(plan)


def test_repeats_and_recorded_events_are_duplicates_and_a_refused_one_is_retryable() -> None:
    recorded_event = UsageEvent.model_validate(event(2), context={"now": NOW})
    bus = Bus(refuse={"evt-00000003"})
    svc = service(bus=bus, recorded=Recorded({("alice", recorded_event.sort_key)}))
    body = json.dumps({"events": [event(1), event(1), event(2), event(3)]}).encode()
    answer = svc.submit_events(ALICE, body)
    assert [(r["status"], r.get("retryable", False)) for r in answer["results"]] == [
        ("accepted", False),
        ("duplicate", False),
        ("duplicate", False),
        ("rejected", True),
    ]
    assert [e.event_id for e in bus.sent] == ["evt-00000001"]


def test_a_bus_that_refuses_everything_is_a_503() -> None:
    svc = service(bus=Bus(refuse={"evt-00000001"}))
    with pytest.raises(ServiceUnavailableError):
        svc.submit_events(ALICE, json.dumps({"events": [event(1)]}).encode())


def test_keys_are_checked_by_hash_and_rate_limited() -> None:
    keys = Keys()
    made = new_key()
    keys.items[made.key_id] = ("alice", False, made.secret_hash)
    svc = service(keys=keys, limit=2)
    principal = svc.authenticate({"Authorization": f"Bearer {made.plaintext}"})
    assert principal == IngestPrincipal(made.key_id, "alice", False)
    assert keys.touched == [made.key_id]
    # a second request within the minute is not written as a use again
    svc.authenticate({"authorization": f"bearer {made.plaintext}"})
    assert keys.touched == [made.key_id]
    with pytest.raises(RateLimitedError):
        svc.authenticate({"authorization": f"Bearer {made.plaintext}"})
    wrong = made.plaintext[:-1] + ("A" if made.plaintext[-1] != "A" else "B")
    with pytest.raises(NotAuthenticatedError) as refused:
        svc.authenticate({"authorization": f"Bearer {wrong}"})
    assert made.plaintext[21:] not in str(refused.value)

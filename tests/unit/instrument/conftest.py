"""Instrumentation tests: real SDK clients on mocked HTTP transports, a recording publisher, a clean slate per test."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from llmtally.events import UsageEvent
from llmtally.instrumentation import uninstrument_all
from llmtally.instrumentation._core import GLOBAL, _NoTenantWarning, instrument_settings
from llmtally.instrumentation.stats import STATS
from llmtally.pricing import PriceBook
from tests.unit.providers.conftest import FIXTURES, fixture_json, fixture_text

__all__ = ["FIXTURES", "fixture_json", "fixture_text"]


class RecordingPublisher:
    """A publisher that keeps what it is given (thread-safe, like UsagePublisher.publish)."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self._lock = threading.Lock()

    def publish(self, event: UsageEvent) -> bool:
        with self._lock:
            self.events.append(event)
        return True

    @property
    def only(self) -> UsageEvent:
        assert len(self.events) == 1, self.events
        return self.events[0]


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture(autouse=True)
def _clean_instrumentation(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No default tenant from the environment, zeroed counters; every patch removed afterwards."""
    monkeypatch.delenv("LLMTALLY_DEFAULT_USER_ID", raising=False)
    monkeypatch.delenv("LLMTALLY_DEFAULT_OPERATION_TYPE", raising=False)
    instrument_settings.cache_clear()
    STATS.reset()
    _NoTenantWarning.said = False
    yield
    uninstrument_all()
    assert GLOBAL.defaults is None
    from llmtally.instrumentation import anthropic, bedrock, google, openai

    for module in (anthropic, openai, google, bedrock):
        module.unpatch()
    instrument_settings.cache_clear()


CATALOG = PriceBook()


def cost(event: UsageEvent) -> Decimal:
    """The event's cost as the ingest prices it (the catalog, by the event's timestamp)."""
    return CATALOG.price_event(event).cost_usd


Handler = Callable[[httpx2.Request], httpx2.Response]


class Recorder:
    """An httpx2 MockTransport handler that records requests and answers with `reply(request)`."""

    def __init__(self, reply: Handler) -> None:
        self.reply = reply
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.reply(request)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def sync_client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self))

    def async_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))


def sse(text: str, headers: dict[str, str] | None = None) -> Handler:
    return lambda _: httpx2.Response(
        200, content=text.encode(), headers={"content-type": "text/event-stream", **(headers or {})}
    )


def json_body(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda _: httpx2.Response(status, json=body, headers=headers or {})


def ledger(event: UsageEvent) -> dict[str, Any]:
    return event.ledger().model_dump(exclude={"total_tokens"}, exclude_none=True)

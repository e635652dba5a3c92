"""The API on moto: every table created, the API's caches forgotten before and after each test."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import MotoServer
from tests.support.apigw import ApiResponse, request

ALICE = "alice"
BOB = "bob"
ADMIN_CLAIMS = {"sub": "ops-1", "cognito:groups": "[llmtally-admin users]"}


@pytest.fixture(autouse=True)
def _fresh_api() -> Iterator[None]:
    from api import deps

    deps.reset()
    yield
    deps.reset()


@pytest.fixture
def stack(moto: MotoServer) -> MotoServer:
    """The moto server with llmtally's tables (the same specs the CDK app and the local stack use)."""
    from llmtally.settings import get_settings
    from llmtally.tables import create_tables

    create_tables(moto.client("dynamodb"), get_settings().names)
    return moto


Api = Callable[..., ApiResponse]


@pytest.fixture
def as_alice() -> Api:
    def _call(method: str, path: str, **kwargs: Any) -> ApiResponse:
        return request(method, path, claims={"sub": ALICE}, **kwargs)

    return _call


class JsonLogs:
    """Everything the Powertools handler wrote (the structured JSON that CloudWatch would receive)."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    """Point the one Powertools log handler (`llmtally.observability`) at a buffer for this test."""
    import logging

    from llmtally.observability import LIBRARY_LOGGER, logger

    handler = logger.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    assert handler in logging.getLogger(LIBRARY_LOGGER).handlers  # library lines go through it too
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield JsonLogs(buffer)
    finally:
        handler.setStream(previous)

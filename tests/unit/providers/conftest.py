"""Shared helpers: provider payload fixtures, an httpx2 MockTransport that records, a Bedrock stream encoder."""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest

from llmtally.pricing import PriceBook
from llmtally.providers import RetryPolicy

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers"

ANTHROPIC_KEY = "sk-ant-api03-TESTKEY0123456789abcdefABCDEF-0123456789abcdefAA"
OPENAI_KEY = "sk-proj-TESTKEY0123456789abcdefABCDEF0123456789wxyz"
GOOGLE_KEY = "AIzaSyTESTKEY0123456789abcdefABCDEF01234"
KEYS = {"anthropic": ANTHROPIC_KEY, "openai": OPENAI_KEY, "google": GOOGLE_KEY}

#: No waiting between our retries in tests.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)


def fixture_json(provider: str, name: str) -> Any:
    return json.loads((FIXTURES / provider / name).read_text(encoding="utf-8"))


def fixture_text(provider: str, name: str) -> str:
    return (FIXTURES / provider / name).read_text(encoding="utf-8")


def usd(value: str) -> Decimal:
    """A hand-computed cost, at the nine decimals LLMUsage carries."""
    return Decimal(value).quantize(Decimal("0.000000001"))


Reply = httpx2.Response | Exception | Callable[[httpx2.Request], httpx2.Response]


@dataclass
class MockAPI:
    """Answers requests in order with the given replies (the last one repeats); records every request."""

    replies: list[Reply]
    requests: list[httpx2.Request] = field(default_factory=list)

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx2.Response):
            return reply
        return reply(request)

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self.handler))

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, json=body, headers=headers or {})


def sse_reply(text: str) -> httpx2.Response:
    return httpx2.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


def error_reply(case: dict[str, Any]) -> httpx2.Response:
    return httpx2.Response(case["status"], json=case["body"], headers=case.get("headers") or {})


@pytest.fixture
def price_book() -> PriceBook:
    """The catalog alone (no override file), so costs are the hand-computed catalog figures."""
    return PriceBook()


def no_sleep(_: float) -> None:
    return None


# -- Bedrock: botocore's Stubber cannot return an event stream, so ConverseStream is answered at
# the HTTP layer (`before-send`) with real AWS event-stream bytes that botocore itself parses.


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("B", len(raw_name)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value


def event_stream_message(event_type: str, payload: dict[str, Any], *, exception: bool = False) -> bytes:
    """One `application/vnd.amazon.eventstream` message (prelude, CRCs, headers, JSON payload)."""
    kind = "exception" if exception else "event"
    headers = (
        _header(":event-type" if not exception else ":exception-type", event_type)
        + _header(":content-type", "application/json")
        + _header(":message-type", kind)
    )
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def bedrock_stream_body(events: list[dict[str, Any]]) -> bytes:
    out = b""
    for event in events:
        ((name, payload),) = event.items()
        out += event_stream_message(name, payload, exception=name.endswith("Exception"))
    return out


class _RawBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data

    def read(self, *_: Any) -> bytes:
        data, self._data = self._data, b""
        return data

    def close(self) -> None:
        return None


def answer_bedrock_http(client: Any, operation: str, status: int, body: bytes, content_type: str) -> list[Any]:
    """Answer `operation` on a boto3 client with a canned HTTP response; returns the sent requests."""
    from botocore.awsrequest import AWSResponse

    sent: list[Any] = []

    def before_send(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(
            request.url, status, {"content-type": content_type, "x-amzn-requestid": "req-stream-1"}, _RawBody(body)
        )

    client.meta.events.register(f"before-send.bedrock-runtime.{operation}", before_send)
    return sent

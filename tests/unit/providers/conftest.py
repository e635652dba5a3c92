"""Shared helpers: provider payload fixtures, an httpx2 MockTransport that records, a Bedrock stream encoder.

`sync_and_async` runs a test module twice: as written (sync calls), and with every provider the
test builds through `driven(...)` answering its `generate` / `stream` with `agenerate` / `astream`
on one event loop — so the async path passes exactly the sync path's tests.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import struct
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

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


#: A reply, an exception to raise, or a handler (async handlers answer the async transport only).
Reply = httpx2.Response | Exception | Callable[[httpx2.Request], httpx2.Response | Awaitable[httpx2.Response]]


@dataclass
class MockAPI:
    """Answers requests in order with the given replies (the last one repeats); records every request."""

    replies: list[Reply]
    requests: list[httpx2.Request] = field(default_factory=list)

    def handler(self, request: httpx2.Request) -> Any:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx2.Response):
            return reply
        return reply(request)

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self.handler))

    def aclient(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler))

    def clients(self) -> dict[str, Any]:
        """Both transports, for a provider's `http_client` and `async_http_client`."""
        return {"http_client": self.client(), "async_http_client": self.aclient()}

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


# -- sync and async: one set of tests ----------------------------------------------------------------

T = TypeVar("T")


class _Mode:
    loop: asyncio.AbstractEventLoop | None = None


MODE = _Mode()


@pytest.fixture(params=["sync", "async"])
def sync_and_async(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test as written, then through the async API (see the module doc)."""
    if request.param == "sync":
        yield "sync"
        return
    loop = asyncio.new_event_loop()
    MODE.loop = loop
    try:
        yield "async"
    finally:
        MODE.loop = None
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def run_finalizers() -> None:
    """Async mode: let the loop run what it scheduled (an abandoned async generator's `aclose`)."""
    loop = MODE.loop
    if loop is None:
        return
    import gc

    gc.collect()
    loop.run_until_complete(asyncio.sleep(0))  # the finalizer hook's call_soon creates the aclose task
    pending = asyncio.all_tasks(loop)
    if pending:
        loop.run_until_complete(asyncio.gather(*pending))


def driven(target: T) -> T:
    """`target` itself in sync mode; in async mode, `target` answered by its async methods."""
    if MODE.loop is None:
        return target
    return AsyncDriven(target, MODE.loop)  # type: ignore[return-value]


class AsyncDriven:
    """Sync calls answered by the async API on one loop: `generate` → `agenerate`, `stream` → `astream`."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "loop", loop)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_sleep":  # a test recording the waits: the async path waits with `_asleep`
            sleep = value

            async def asleep(delay: float) -> None:
                sleep(delay)

            self.target._asleep = asleep
            return
        setattr(self.target, name, value)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.loop.run_until_complete(self.target.agenerate(*args, **kwargs))

    def stream(self, *args: Any, **kwargs: Any) -> DrivenStream:
        return DrivenStream(self.target.astream(*args, **kwargs), self.loop)


class DrivenStream:
    """An `LLMAsyncStream` iterated from sync code (same items, same close semantics)."""

    def __init__(self, stream: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.stream = stream
        self.loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __iter__(self) -> DrivenStream:
        return self

    def __next__(self) -> Any:
        try:
            return self.loop.run_until_complete(self.stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def __enter__(self) -> DrivenStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.loop.run_until_complete(self.stream.aclose())

    def text_chunks(self) -> Iterator[str]:
        for item in self:
            if isinstance(item, str):
                yield item

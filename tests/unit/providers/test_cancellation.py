"""Async cancellation: a task cancelled mid-call or mid-stream gets its CancelledError, and the call is one event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from llmtally.events import Status, UsageEvent, UsageSource
from llmtally.pricing import PriceBook
from llmtally.providers import LLMProviderFactory, RetryPolicy, track
from tests.unit.providers.conftest import ANTHROPIC_KEY, MockAPI, fixture_text
from tests.unit.providers.test_tracking import RecordingSink


def tracked_anthropic(api: MockAPI, price_book: PriceBook) -> Any:
    return LLMProviderFactory.create(
        "anthropic", api_key=ANTHROPIC_KEY, **api.clients(), price_book=price_book, retry=RetryPolicy(max_attempts=1)
    )


def test_a_cancelled_agenerate_is_one_cancelled_usage_missing_event_and_the_cancellation_propagates(
    price_book: PriceBook,
) -> None:
    # Given a tracked provider whose upstream never answers
    async def main() -> list[UsageEvent]:
        sent = asyncio.Event()

        async def never(request: httpx2.Request) -> httpx2.Response:
            sent.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        api, sink = MockAPI([never]), RecordingSink()
        provider = track(
            LLMProviderFactory.create(
                "anthropic",
                api_key=ANTHROPIC_KEY,
                **api.clients(),
                price_book=price_book,
                retry=RetryPolicy(max_attempts=1),
            ),
            sink,
            user_id="user-123",
        )
        # When the caller's task is cancelled while the request is in flight
        task = asyncio.create_task(provider.agenerate(prompt="q"))
        await sent.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return sink.events

    # Then exactly one event: cancelled, its usage missing (the request may have been billed)
    (event,) = asyncio.run(main())
    assert (event.status, event.error_type, event.usage_source) == (Status.ERROR, "cancelled", UsageSource.MISSING)
    assert event.reported_cost_usd is None


def test_a_tracked_astream_cancelled_while_waiting_for_a_chunk_is_one_event_with_the_tokens_seen(
    price_book: PriceBook,
) -> None:
    # Given a tracked stream that sends message_start and one text delta, then stalls
    text = fixture_text("anthropic", "stream_cache.sse")
    head, _, _ = text.partition("event: content_block_delta")
    first_delta = next(b for b in text.split("\n\n") if '"text_delta"' in b) + "\n\n"

    async def main() -> list[UsageEvent]:
        async def stalls(request: httpx2.Request) -> httpx2.Response:
            async def body() -> AsyncIterator[bytes]:
                yield (head + first_delta).encode()
                await asyncio.Event().wait()
                yield b""

            return httpx2.Response(200, content=body(), headers={"content-type": "text/event-stream"})

        api, sink = MockAPI([stalls]), RecordingSink()
        provider = track(
            LLMProviderFactory.create(
                "anthropic",
                api_key=ANTHROPIC_KEY,
                **api.clients(),
                price_book=price_book,
                retry=RetryPolicy(max_attempts=1),
            ),
            sink,
            user_id="user-123",
        )
        got_first = asyncio.Event()

        async def consume() -> None:
            async for _ in provider.astream(prompt="hi"):
                got_first.set()

        # When the consuming task is cancelled while it waits for the next chunk
        task = asyncio.create_task(consume())
        await got_first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return sink.events

    # Then one event: cancelled, usage missing, with the input and cache tokens message_start reported
    (event,) = asyncio.run(main())
    assert (event.status, event.error_type, event.usage_source) == (Status.ERROR, "cancelled", UsageSource.MISSING)
    assert (event.input_tokens, event.cache_write_tokens) == (25, 1500)

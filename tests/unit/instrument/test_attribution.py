"""attribution(...) on contextvars, the no-tenant rule, instrument_all() with a framework-built client,
and the guarantees of the shared core (same exception object, bugs counted, never raised)."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import threading
from typing import Any

import anthropic
import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmtally
from llmtally.events import MAX_TAGS, UsageEvent
from llmtally.instrumentation import current_attribution, stats
from llmtally.instrumentation._core import Defaults, sync_wrapper
from llmtally.instrumentation.anthropic import CREATE
from llmtally.instrumentation.context import clean_tags
from tests.unit.instrument.conftest import Recorder, RecordingPublisher, fixture_json, json_body

MESSAGES: Any = [{"role": "user", "content": "Hi"}]


def async_client(publisher: RecordingPublisher, **defaults: Any) -> anthropic.AsyncAnthropic:
    recorder = Recorder(json_body(fixture_json("anthropic", "message_plain.json")))
    client = anthropic.AsyncAnthropic(
        api_key="k", base_url="http://anthropic.test", http_client=recorder.async_client(), max_retries=0
    )
    return llmtally.instrument(client, publisher=publisher, **defaults)


def test_nested_blocks_inner_wins_and_tags_merge() -> None:
    with llmtally.attribution(user_id="outer", operation_type="search", tags={"team": "a", "env": "prod"}):
        with llmtally.attribution(user_id="inner", tags={"team": "b", "feature": "x"}):
            inside = current_attribution()
        after = current_attribution()
    assert (inside.user_id, inside.operation_type) == ("inner", "search")
    assert dict(inside.tags) == {"team": "b", "env": "prod", "feature": "x"}
    assert (after.user_id, dict(after.tags)) == ("outer", {"team": "a", "env": "prod"})
    assert current_attribution().user_id is None


def test_two_hundred_concurrent_tasks_are_each_attributed_to_their_own_tenant(publisher: RecordingPublisher) -> None:
    # Given one instrumented async client with defaults
    client = async_client(publisher, user_id="fallback", tags={"env": "test"})

    async def one(n: int) -> None:
        async with llmtally.attribution(user_id=f"tenant-{n}", tags={"customer": f"c{n}"}):
            await asyncio.sleep(0)  # interleave with the other tasks
            await client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=MESSAGES)

    async def main() -> None:
        await asyncio.gather(*(one(n) for n in range(200)))

    # When 200 tasks call at once, each under its own attribution
    asyncio.run(main())

    # Then each event carries its own task's tenant and tags, merged over the client's defaults
    assert len(publisher.events) == 200
    for event in publisher.events:
        n = event.user_id.removeprefix("tenant-")
        assert event.tags == {"env": "test", "customer": f"c{n}"}
    assert {e.user_id for e in publisher.events} == {f"tenant-{n}" for n in range(200)}


def test_a_thread_run_through_copy_context_keeps_the_attribution() -> None:
    seen: list[str | None] = []
    with llmtally.attribution(user_id="acme"):
        context = contextvars.copy_context()
    thread = threading.Thread(target=lambda: context.run(lambda: seen.append(current_attribution().user_id)))
    plain = threading.Thread(target=lambda: seen.append(current_attribution().user_id))
    thread.start()
    thread.join()
    plain.start()
    plain.join()
    assert seen == ["acme", None]


def test_no_tenant_anywhere_is_not_published_but_counted(
    publisher: RecordingPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    client = async_client(publisher)
    asyncio.run(client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=MESSAGES))
    assert publisher.events == []
    assert stats().no_tenant == 1
    assert "had no tenant" in caplog.text


def test_the_default_tenant_setting_catches_calls_with_no_tenant(
    publisher: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtally.instrumentation._core import instrument_settings

    monkeypatch.setenv("LLMTALLY_DEFAULT_USER_ID", "house-account")
    instrument_settings.cache_clear()
    client = async_client(publisher)
    asyncio.run(client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=MESSAGES))
    assert publisher.only.user_id == "house-account"


def test_bad_attribution_never_raises_and_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX0123"
    with llmtally.attribution(
        user_id="bad tenant!", operation_type="Not Valid", tags={"ok": "1", "Bad": "x", "k": secret}
    ):
        here = current_attribution()
    assert (here.user_id, here.operation_type, dict(here.tags)) == (None, None, {"ok": "1"})
    assert stats().invalid_attribution == 4
    assert secret not in caplog.text


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=20), st.integers(), st.none()), max_size=12))
def test_any_tags_mapping_is_sanitised_into_valid_event_tags(raw: dict[str, Any]) -> None:
    tags = dict(clean_tags(raw))
    assert len(tags) <= MAX_TAGS
    UsageEvent(user_id="t", provider="openai", model="gpt-4o", operation_type="x", tags=tags)  # never rejected


def test_the_sdks_exception_object_reaches_the_caller_unchanged(publisher: RecordingPublisher) -> None:
    # Given the shared sync wrapper around a method that raises a specific object
    failure = anthropic.APIConnectionError(request=httpx2.Request("POST", "http://x"))
    wrapper = sync_wrapper(CREATE, lambda _: Defaults(publisher=publisher))

    def method(**_: Any) -> Any:
        raise failure

    # When it is called, then the very same object propagates, and an error event is published
    with pytest.raises(anthropic.APIConnectionError) as raised, llmtally.attribution(user_id="acme"):
        wrapper(method, None, (), {"model": "claude-sonnet-4-6"})
    assert raised.value is failure
    assert publisher.only.error_type == "unavailable"


def test_a_publisher_that_explodes_never_reaches_the_caller() -> None:
    class Exploding:
        def publish(self, event: UsageEvent) -> bool:
            raise RuntimeError("boom")

    wrapper = sync_wrapper(CREATE, lambda _: Defaults(publisher=Exploding()))
    result = fixture_json("anthropic", "message_plain.json")
    message = anthropic.types.Message.model_validate(result)
    with llmtally.attribution(user_id="acme"):
        assert wrapper(lambda **_: message, None, (), {"model": "claude-sonnet-4-6"}) is message
    assert stats().failures == 1


def test_instrument_all_meters_a_langchain_client_built_afterwards_and_is_reversible(
    publisher: RecordingPublisher,
) -> None:
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    recorder = Recorder(json_body(fixture_json("openai", "chat_cached.json")))

    def chain() -> Any:
        llm = ChatOpenAI(
            model="gpt-4o",
            api_key="sk-test",
            base_url="http://openai.test/v1",
            http_client=recorder.sync_client(),
            max_retries=0,
        )
        return ChatPromptTemplate.from_messages([("user", "{question}")]) | llm

    # Given instrument_all() (twice: idempotent), then a LangChain chain built afterwards
    llmtally.instrument_all(publisher=publisher, user_id="lc-tenant", operation_type="conversation")
    llmtally.instrument_all(publisher=publisher, user_id="lc-tenant", operation_type="conversation")
    with llmtally.attribution(tags={"feature": "triage"}):
        answer = chain().invoke({"question": "Which rule?"})

    # Then the framework's internal client was metered once, with the exact ledger
    assert answer.content
    event = publisher.only
    assert (event.user_id, event.tags, event.model) == ("lc-tenant", {"feature": "triage"}, "gpt-4o-2024-08-06")
    assert (event.input_tokens, event.cache_read_tokens, event.output_tokens) == (512, 1536, 100)

    # And after uninstrument_all() nothing more is metered
    llmtally.uninstrument_all()
    chain().invoke({"question": "Again?"})
    assert len(publisher.events) == 1


def test_instrument_all_can_be_turned_off_and_on_again(publisher: RecordingPublisher) -> None:
    client = async_client(publisher)
    llmtally.uninstrument(client)

    async def call() -> None:
        await client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=MESSAGES)

    llmtally.instrument_all(publisher=publisher, user_id="first")
    asyncio.run(call())
    llmtally.uninstrument_all()
    asyncio.run(call())
    llmtally.instrument_all(publisher=publisher, user_id="second")
    asyncio.run(call())
    assert [e.user_id for e in publisher.events] == ["first", "second"]


def test_instrument_all_imports_no_sdk_and_patches_one_when_it_is_imported() -> None:
    # Given a fresh interpreter: instrument_all() first, the SDK imported afterwards
    code = textwrap.dedent(
        """
        import sys, llmtally
        assert "wrapt" not in sys.modules and "llmtally.instrumentation" not in sys.modules
        llmtally.instrument_all(user_id="acme")
        before = [m for m in ("anthropic", "openai", "google.genai", "botocore") if m in sys.modules]
        import openai, wrapt
        from openai.resources.chat.completions import Completions
        print(before, isinstance(Completions.__dict__["create"], wrapt.FunctionWrapper))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[] True"


def test_instrument_all_meters_a_langchain_stream(publisher: RecordingPublisher) -> None:
    from langchain_openai import ChatOpenAI

    from tests.unit.instrument.conftest import fixture_text, sse

    # Given a streaming ChatOpenAI built after instrument_all()
    recorder = Recorder(sse(fixture_text("openai", "stream_usage.sse")))
    llmtally.instrument_all(publisher=publisher, user_id="lc-tenant")
    llm = ChatOpenAI(
        model="gpt-4o",
        api_key="sk-test",
        base_url="http://openai.test/v1",
        http_client=recorder.sync_client(),
        max_retries=0,
    )

    # When the caller streams through LangChain
    text = "".join(str(chunk.content) for chunk in llm.stream("Hi"))

    # Then LangChain sees its text, and one event carries the stream's usage
    assert text == "Hello, world"
    event = publisher.only
    assert (event.input_tokens, event.cache_read_tokens, event.output_tokens) == (744, 256, 50)

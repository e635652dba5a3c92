"""Done-when of issue 15, end to end: a service that adds one `llmtally.instrument(...)` line sees its calls
in `llmtally summary` on the local stack.

The "service" is a separate Python process: an async OpenAI Responses stream, an Anthropic tool
call and a chat stream it leaves after the first chunk, each through a client with one
`llmtally.instrument(...)` line, publishing through the
default publisher (EventBridge of the local stack). The provider HTTP is a mocked transport
answering with the fixtures (it stands in for the providers; the service's code is otherwise
what it would be). Then `llmtally summary --json` shows the calls with the exact ledger and cost, and
the abandoned stream as `usage_missing`.

Reuses `llmtally local` from tests/e2e/test_local_stack.py (its `stack` fixture, module-scoped:
this module starts its own instance, on its own free ports).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_local_stack import PREFIX, ROOT, Stack, stack, wait_for

__all__ = ["stack"]

pytestmark = pytest.mark.xdist_group("local-stack")

TENANT = "e2e-instrumented"
FIXTURES = ROOT / "tests" / "fixtures" / "providers"

SERVICE = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path

    import anthropic, httpx2, openai
    import llmtally

    FIXTURES = Path(sys.argv[1])

    def provider(path, kind):  # stands in for the provider's HTTP API
        body = (FIXTURES / path).read_bytes()
        return httpx2.MockTransport(lambda request: httpx2.Response(200, content=body, headers={"content-type": kind}))

    # The service's clients, each with the one added line.
    responses_api = provider("openai/responses_stream.sse", "text/event-stream")
    messages_api = provider("anthropic/message_tool_use.json", "application/json")
    gpt = openai.AsyncOpenAI(api_key="sk-e2e", http_client=httpx2.AsyncClient(transport=responses_api))
    gpt = llmtally.instrument(gpt, user_id="TENANT")
    claude = anthropic.AsyncAnthropic(api_key="sk-ant-e2e", http_client=httpx2.AsyncClient(transport=messages_api))
    claude = llmtally.instrument(claude, user_id="TENANT", operation_type="detection_rule")
    chat_api = provider("openai/stream_usage.sse", "text/event-stream")
    chat_gpt = openai.AsyncOpenAI(api_key="sk-e2e", http_client=httpx2.AsyncClient(transport=chat_api))
    chat_gpt = llmtally.instrument(chat_gpt, user_id="TENANT")

    async def main():
        stream = await gpt.responses.create(model="gpt-5", input="Summarise the alert", stream=True)
        text = "".join([event.delta async for event in stream if event.type == "response.output_text.delta"])
        message = await claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=512,
            tools=[{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
            messages=[{"role": "user", "content": "Weather in SF?"}],
        )
        # A chat stream the service leaves after its first chunk: usage never arrives.
        hi = [{"role": "user", "content": "Hi"}]
        chat = await chat_gpt.chat.completions.create(model="gpt-4o", messages=hi, stream=True)
        async for _ in chat:
            break
        await chat.close()
        print(text, message.stop_reason)

    asyncio.run(main())
    """
).replace("TENANT", TENANT)


def test_a_service_with_one_instrument_line_shows_up_in_llmtally_summary(stack: Stack, tmp_path: Path) -> None:
    # Given the service, pointed at the local stack like any producer
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    env = stack.env() | {
        "LLMTALLY_ENDPOINT_URL": stack.aws_endpoint,
        "LLMTALLY_PREFIX": PREFIX,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }

    # When it runs (the default publisher flushes at exit)
    ran = subprocess.run(
        [sys.executable, str(script), str(FIXTURES)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "Hello, world tool_use"

    # Then `llmtally summary` shows both calls, with the exact ledger and cost
    def summary() -> dict[str, Any]:
        done = stack.cli("summary", "--target", "local", "--user", TENANT, "--days", "1", "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout, parse_float=Decimal)["summary"])

    # (a batch's rollup items are written one by one: wait for the model dimension too, not only the total)
    totals = wait_for(
        "the three instrumented calls in the rollups",
        summary,
        lambda s: s["total_requests"] == 3 and len(s["by_model"]) == 3,
    )
    # Responses stream (gpt-5): 2000 in incl. 1536 cached, 300 out incl. 256 reasoning.
    # Tool call (claude-sonnet-4-6): 472 uncached in, 1024 cache reads, 89 out.
    assert totals["input_tokens"] == 464 + 472
    assert totals["cache_read_tokens"] == 1536 + 1024
    assert totals["output_tokens"] == 44 + 89
    assert totals["reasoning_tokens"] == 256
    assert Decimal(str(totals["total_cost_usd"])) == Decimal("0.003772") + Decimal("0.0030582")
    assert set(totals["by_model"]) == {"gpt-5-2025-08-07", "claude-sonnet-4-6", "gpt-4o-2024-08-06"}
    assert totals["errors"] == 0
    # And the chat stream left mid-way is counted as usage missing — not as a silent $0 success
    assert totals["usage_missing"] == 1

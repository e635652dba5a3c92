"""Done-when of issue 18, end to end on `llmtally local`: three producers that are not the library's own.

* a Node script (the `node` on the machine, plain `fetch`, no npm package) posts events to
  `POST /api/usage-events` with an ingest key, and posts the same batch again;
* a Python service instrumented with OpenTelemetry (the real SDK, the real OTLP/HTTP exporter and
  opentelemetry-instrumentation-openai around an OpenAI client whose HTTP is a mocked transport
  answering a cached chat completion) exports its spans to `POST /api/otel/v1/traces`, then exports
  them again (a collector's retry);
* the same service makes a LiteLLM call (`mock_response`, offline) with `LLMTallyCallback`.

All three show up exactly once in the summary with the ledger the provider payloads imply — the
OpenAI prompt's cached tokens are not counted twice — and revoking the key stops the Node script.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmtally.events import UsageEvent
from llmtally.money import nanos_to_usd
from llmtally.pricing import default_price_book
from tests.e2e.test_local_stack import PREFIX, ROOT, USER, Stack, stack, wait_for

__all__ = ["stack"]

pytestmark = pytest.mark.xdist_group("local-stack")

FIXTURES = ROOT / "tests" / "fixtures" / "providers"
AT = "2026-12-01T10:00:00.000Z"

NODE_PRODUCER = textwrap.dedent(
    """
    // A TypeScript/JavaScript service's producer: plain fetch, no SDK.
    const [url, key, at] = process.argv.slice(2);
    const events = [{
      event_id: "node-checkout-0001",
      timestamp: at,
      provider: "anthropic",
      model: "claude-3-5-sonnet-20241022",
      operation_type: "conversation",
      input_tokens: 1500,
      output_tokens: 500,
      tags: { feature: "checkout" },
    }];
    async function post() {
      const response = await fetch(`${url}/api/usage-events`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify({ events }),
      });
      return { status: response.status, body: await response.json() };
    }
    const first = await post();
    const again = await post();
    console.log(JSON.stringify({ first, again }));
    """
)

OTEL_AND_LITELLM_SERVICE = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from pathlib import Path

    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # offline: LiteLLM's bundled cost map
    import httpx2, openai
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    api, key, fixtures = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    # 1. OpenTelemetry: the service's usual tracing setup, exporting OTLP/HTTP (protobuf) to llmtally.
    exporter = OTLPSpanExporter(endpoint=f"{api}/api/otel/v1/traces", headers={"authorization": f"Bearer {key}"})
    kept = InMemorySpanExporter()
    tracing = TracerProvider(resource=Resource.create({"service.name": "e2e-otel", "llmtally.tags.feature": "search"}))
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.add_span_processor(SimpleSpanProcessor(kept))
    OpenAIInstrumentor().instrument(tracer_provider=tracing)
    body = (fixtures / "openai" / "chat_cached.json").read_bytes()
    json_type = {"content-type": "application/json"}
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, content=body, headers=json_type))
    client = openai.OpenAI(api_key="sk-e2e-not-a-key", http_client=httpx2.Client(transport=transport))
    with tracing.get_tracer("e2e").start_as_current_span("POST /search"):  # not a GenAI span: ignored
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Find alerts"}])
    again = exporter.export(kept.get_finished_spans())  # a collector's retry: the same spans again
    tracing.shutdown()

    # 2. LiteLLM with llmtally's callback (publishes through the library's publisher).
    import litellm
    from litellm import ModelResponse, Usage
    from llmtally.integrations.litellm import LLMTallyCallback

    callback = LLMTallyCallback()
    litellm.callbacks = [callback]
    answer = ModelResponse(
        model="claude-3-5-haiku-20241022",
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
        usage=Usage(prompt_tokens=3000, completion_tokens=200, total_tokens=3200,
                    cache_read_input_tokens=2000, cache_creation_input_tokens=500),
    )
    async def call():
        await litellm.acompletion(
            model="anthropic/claude-3-5-haiku-20241022", messages=[{"role": "user", "content": "hi"}],
            mock_response=answer, user="USER", metadata={"llmtally_tags": {"feature": "triage"}},
        )
        for _ in range(400):  # LiteLLM runs async success callbacks as tasks after the call returns
            if callback.stats.published:
                break
            await asyncio.sleep(0.05)
    asyncio.run(call())
    print(json.dumps({"reexport": again.name, "litellm": callback.stats.published}))
    """
).replace("USER", USER)


def _request(stack: Stack, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{stack.api_url}{path}", data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _run_node(script: Path, stack: Stack, key: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is on the machine (make preflight checks it)"
    ran = subprocess.run(
        [node, str(script), stack.api_url, key, AT], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    result: dict[str, Any] = json.loads(ran.stdout)
    return result


def _cost(**ledger: Any) -> Decimal:
    event = UsageEvent(user_id=USER, operation_type="chat", **ledger)
    return nanos_to_usd(default_price_book().price_event(event).cost_nanos)


def test_node_otel_and_litellm_producers_show_up_once_and_revoking_the_key_stops_the_node_script(
    stack: Stack, tmp_path: Path
) -> None:
    # Given an ingest key the tenant created through the API (shown once)
    status, created = _request(stack, "POST", f"/api/llm-settings/{USER}/ingest-keys", {"name": "e2e producers"})
    assert status == 201, created
    key = created["key"]
    node_script = tmp_path / "producer.mjs"
    node_script.write_text(NODE_PRODUCER)

    # When the Node script posts its batch twice
    node = _run_node(node_script, stack, key)
    # Then the first post is accepted and the second is a duplicate (or accepted again while still in flight)
    assert node["first"]["status"] == 200
    assert node["first"]["body"]["results"] == [{"index": 0, "status": "accepted", "event_id": "node-checkout-0001"}]
    assert node["again"]["body"]["results"][0]["status"] in {"duplicate", "accepted"}

    # When the OTel + LiteLLM service runs
    service = tmp_path / "service.py"
    service.write_text(OTEL_AND_LITELLM_SERVICE)
    env = stack.env() | {
        "LLMTALLY_ENDPOINT_URL": stack.aws_endpoint,
        "LLMTALLY_PREFIX": PREFIX,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    ran = subprocess.run(
        [sys.executable, str(service), stack.api_url, key, str(FIXTURES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout.strip().splitlines()[-1]) == {"reexport": "SUCCESS", "litellm": 1}

    # Then the summary holds each call exactly once, with the ledger its provider payload implies
    def summary() -> dict[str, Any]:
        done = stack.cli("summary", "--target", "local", "--user", USER, "--days", "30", "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout, parse_float=Decimal)["summary"])

    models = {"claude-3-5-sonnet-20241022", "gpt-4o-2024-08-06", "claude-3-5-haiku-20241022"}
    totals = wait_for(
        "the three producers' calls in the rollups",
        summary,
        lambda s: models <= set(s["by_model"]) and s["total_requests"] >= 3,
    )
    assert totals["total_requests"] == 3
    by_model = totals["by_model"]
    assert {m: by_model[m]["requests"] for m in models} == dict.fromkeys(models, 1)
    # Node: the seed's worked example, 1500 in / 500 out = $0.012
    node_cost = _cost(provider="anthropic", model="claude-3-5-sonnet-20241022", input_tokens=1500, output_tokens=500)
    assert node_cost == Decimal("0.012")
    # OTel: chat_cached.json has prompt_tokens 2048 of which 1536 cached, 100 completion tokens; the span's
    # gen_ai.usage.input_tokens (2048) includes the cache, so uncached input is 512, not 2048.
    otel = {"input_tokens": 512, "cache_read_tokens": 1536, "output_tokens": 100}
    otel_cost = _cost(provider="openai", model="gpt-4o-2024-08-06", **otel)
    # LiteLLM: prompt_tokens 3000 include 2000 cache reads and 500 cache writes
    lite = {"input_tokens": 500, "cache_read_tokens": 2000, "cache_write_tokens": 500, "output_tokens": 200}
    lite_cost = _cost(provider="anthropic", model="claude-3-5-haiku-20241022", **lite)
    assert totals["input_tokens"] == 1500 + 512 + 500
    assert totals["cache_read_tokens"] == 1536 + 2000
    assert totals["cache_write_tokens"] == 500
    assert totals["output_tokens"] == 500 + 100 + 200
    assert totals["reasoning_tokens"] == 0
    assert Decimal(str(by_model["gpt-4o-2024-08-06"]["cost_usd"])) == otel_cost
    assert Decimal(str(by_model["claude-3-5-haiku-20241022"]["cost_usd"])) == lite_cost
    assert Decimal(str(totals["total_cost_usd"])) == node_cost + otel_cost + lite_cost
    assert totals["errors"] == 0
    assert totals["usage_missing"] == 0

    # And the key's last use is listed; the key itself never is
    status, listed = _request(stack, "GET", f"/api/llm-settings/{USER}/ingest-keys")
    assert status == 200
    [info] = listed["keys"]
    assert info["last_used_at"] is not None
    assert key not in json.dumps(listed)

    # When the tenant revokes the key, the Node script is refused
    status, _ = _request(stack, "DELETE", f"/api/llm-settings/{USER}/ingest-keys/{created['key_id']}")
    assert status == 200
    refused = _run_node(node_script, stack, key)
    assert refused["first"]["status"] == 401
    assert refused["again"]["status"] == 401
    # And nothing logged the key
    logs = stack.stdout.read_text(errors="replace") + stack.stderr.read_text(errors="replace")
    assert key[len("llt_") + 17 :] not in logs  # the secret part

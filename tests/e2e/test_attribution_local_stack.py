"""Done-when of issue 17, end to end: a service instrumented with `attribution(tags={"customer": …})`
sees its per-customer cost in the API and the CLI on the local stack, exactly equal to a
recomputation from its raw entries.

The "service" is a separate Python process: one instrumented OpenAI client, calls made under
`llmtally.attribution(tags={"customer": …})` for two customers and one call without a customer,
publishing through the default publisher (EventBridge of the local stack). The provider HTTP is a
mocked transport answering with a fixture. Then `GET …/breakdown?by=tag:customer`, the same
breakdown under `where=model:…`, and `llmtally summary --by tag:customer --json` are compared with
the raw entries the API lists.

Reuses `llmtally local` from tests/e2e/test_local_stack.py (its `stack` fixture, module-scoped: this
module starts its own instance, on its own free ports).
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

from tests.e2e.test_local_stack import PREFIX, ROOT, USER, Stack, stack, wait_for

__all__ = ["stack"]

pytestmark = pytest.mark.xdist_group("local-stack")

TENANT = USER  # the local API answers as the user the stack was started for
FIXTURES = ROOT / "tests" / "fixtures" / "providers"

SERVICE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import httpx2, openai
    import llmtally

    body = (Path(sys.argv[1]) / "openai/chat_plain.json").read_bytes()
    kind = {"content-type": "application/json"}
    api = httpx2.MockTransport(lambda request: httpx2.Response(200, content=body, headers=kind))
    client = openai.OpenAI(api_key="sk-e2e", http_client=httpx2.Client(transport=api))
    client = llmtally.instrument(client, user_id="TENANT")

    def ask():
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])

    for customer, calls in (("acme", 3), ("initech", 1)):
        with llmtally.attribution(tags={"customer": customer, "feature": "triage"}):
            for _ in range(calls):
                ask()
    ask()  # no customer
    print("done")
    """
).replace("TENANT", TENANT)


def test_per_customer_cost_in_the_api_and_the_cli_equals_the_raw_entries(stack: Stack, tmp_path: Path) -> None:
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

    # Then the breakdown by customer shows acme, initech and the untagged call
    def by_customer() -> dict[str, Any]:
        return dict(stack.get(f"/api/llm-usage/{TENANT}/breakdown?by=tag:customer"))

    entries = wait_for(
        "the five raw entries",
        lambda: stack.get(f"/api/llm-usage/{TENANT}?limit=100")["entries"],
        lambda found: len(found) == 5,
    )
    expected: dict[str, tuple[int, Decimal]] = {}
    for entry in entries:
        customer = entry["tags"].get("customer", "(none)")
        requests, cost = expected.get(customer, (0, Decimal(0)))
        expected[customer] = (requests + 1, cost + Decimal(str(entry["cost_usd"])))

    def rows(body: dict[str, Any]) -> dict[str, tuple[int, Decimal]]:
        return {row["value"]: (row["requests"], Decimal(str(row["cost_usd"]))) for row in body["rows"]}

    # exactly the recomputation from the raw entries, once the batch's rollup items have all landed:
    # they are written one by one, and until a tag value's item is there its calls count in the
    # `(none)` row (the total minus the tagged rows), so a count of five rows proves nothing yet
    body = wait_for("the breakdown to equal the raw entries", by_customer, lambda b: rows(b) == expected)
    assert rows(body) == expected
    assert body["rows"][0]["value"] == "acme"
    # And the same breakdown under a model filter, and acme's cost by model
    model = entries[0]["model"]
    # (their items are other items of the same batch: waited for like the breakdown's)
    wanted = {k: v[0] for k, v in expected.items()}
    wait_for(
        "the breakdown under a model filter",
        lambda: stack.get(f"/api/llm-usage/{TENANT}/breakdown?by=tag:customer&where=model:{model}"),
        lambda b: {row["value"]: row["requests"] for row in b["rows"]} == wanted,
    )
    wait_for(
        "acme's cost by model",
        lambda: stack.get(f"/api/llm-usage/{TENANT}/breakdown?by=model&where=tag:customer:acme"),
        lambda b: [(row["value"], row["requests"]) for row in b["rows"]] == [(model, 3)],
    )
    # And the tenant's tag keys are listed for the dashboard's selector
    keys = stack.get(f"/api/llm-usage/{TENANT}/tags")["keys"]
    assert [(k["key"], k["values"]) for k in keys] == [("customer", 2), ("feature", 1)]
    # And the CLI answers the same figures
    done = stack.cli("summary", "--target", "local", "--user", TENANT, "--days", "1", "--by", "tag:customer", "--json")
    assert done.returncode == 0, done.stderr
    cli_rows = json.loads(done.stdout, parse_float=Decimal)["breakdown"]["rows"]
    assert {row["value"]: (row["requests"], Decimal(str(row["cost_usd"]))) for row in cli_rows} == expected

"""Budget enforcement benchmark: what checking a budget and a strict reservation add to a call, on moto.

    .venv/bin/python -m bench budgets

The provider is the Anthropic SDK over httpx2.MockTransport (it answers at once, so the figures are
the library's own time plus the DynamoDB round trips to a moto server on loopback). Per call,
median and p99, in one run:

- tracked: a `TrackedProvider`, no budget wrapper (the baseline);
- budgeted, cached state: a `BudgetedProvider` whose budget state is in the guard's 30 s cache;
- strict: every call reads the ledger, reserves with a conditional UpdateItem and settles with
  another (three round trips);
- strict tag budget: the same on customer c-42's ledger, for calls under
  `llmtally.attribution(tags={"customer": "c-42"})` (plus the cached read of the tag budget);
- strict tenant + strict tag: both ledgers, all or none (six round trips).

A strict tag call's settled hold stays in the ledger's `holds` map until the aggregator rolls its
event up; no aggregator runs here, so in the rows above the map grows by one hold per call (a
stalled pipeline, the worst case). The last row releases the settled holds every 25 calls, untimed,
as a running pipeline would.

Figures print; nothing is asserted (docs/BENCHMARKS.md records them).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from bench.bench_publisher import _percentiles, moto_server
from bench.bench_response_cache import _provider, _timed

CALLS = 300


def main() -> None:
    with moto_server() as endpoint:
        os.environ["LLMTALLY_ENDPOINT_URL"] = endpoint
        import llmtally
        from llmtally import aws
        from llmtally.budgets import Budget, BudgetAction, TagScope
        from llmtally.money import usd_to_nanos
        from llmtally.providers.budget import BudgetedProvider, BudgetGuard
        from llmtally.repositories.budgets import BudgetRepository
        from llmtally.resources import ResourceNames
        from llmtally.tables import create_tables

        aws.reset_clients()
        create_tables(aws.client("dynamodb"), ResourceNames())
        repo = BudgetRepository()
        tracked = _provider(None)
        repo.put_budget("bench", Budget(limit_nanos=usd_to_nanos(Decimal(1_000_000)), action=BudgetAction.BLOCK))
        cached = BudgetedProvider(tracked, guard=BudgetGuard(repo))
        strict_tracked = _provider(None)
        strict_tracked.user_id = "bench-strict"
        repo.put_budget(
            "bench-strict",
            Budget(limit_nanos=usd_to_nanos(Decimal(1_000_000)), action=BudgetAction.BLOCK, strict=True),
        )
        strict = BudgetedProvider(strict_tracked, guard=BudgetGuard(repo))
        c42 = TagScope(key="customer", value="c-42")
        big_strict = Budget(limit_nanos=usd_to_nanos(Decimal(1_000_000)), action=BudgetAction.BLOCK, strict=True)
        tag_tracked = _provider(None)
        tag_tracked.user_id = "bench-tag"
        repo.put_budget("bench-tag", big_strict, tag=c42)
        tagged = BudgetedProvider(tag_tracked, guard=BudgetGuard(repo))
        both_tracked = _provider(None)
        both_tracked.user_id = "bench-both"
        repo.put_budget("bench-both", big_strict)
        repo.put_budget("bench-both", big_strict, tag=c42)
        both = BudgetedProvider(both_tracked, guard=BudgetGuard(repo))
        with llmtally.attribution(tags={"customer": "c-42"}):
            for n in range(20):  # warm up: clients, connections, price lookups
                for provider in (tracked, cached, strict, tagged, both):
                    provider.generate(prompt=f"warm {n}")
            runs = {
                label: _timed([partial(provider.generate, prompt=f"q {n}") for n in range(CALLS)])
                for label, provider in (
                    ("tracked (baseline)", tracked),
                    ("budgeted, cached state", cached),
                    ("strict (reserve + settle)", strict),
                    ("strict tag budget", tagged),
                    ("strict tenant + strict tag", both),
                )
            }
            # a running pipeline: the aggregator releases the settled holds every 25 calls (untimed)
            piped_tracked = _provider(None)
            piped_tracked.user_id = "bench-piped"
            piped = BudgetedProvider(piped_tracked, guard=BudgetGuard(repo))
            repo.put_budget("bench-piped", big_strict, tag=c42)
            period = big_strict.period(datetime.now(UTC)).key
            samples: list[int] = []
            for start in range(0, CALLS, 25):
                samples += _timed([partial(piped.generate, prompt=f"q {n}") for n in range(start, start + 25)])
                held = repo.get_ledger("bench-piped", period, tag=c42).holds
                repo.release_rolled_holds("bench-piped", period, c42, list(held))
            runs["strict tag, pipeline running"] = samples
        base = _percentiles(runs["tracked (baseline)"])[0]
        print(f"{CALLS} calls each, moto server on loopback; median / p99 per call (µs), median vs baseline")
        for label, samples in runs.items():
            median, p99 = _percentiles(samples)
            print(f"  {label:<28} {median:>9.0f} {p99:>9.0f}   {median / base:>5.2f}×")
        os.environ.pop("LLMTALLY_ENDPOINT_URL", None)
        aws.reset_clients()


if __name__ == "__main__":
    main()

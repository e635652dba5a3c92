"""Reconciliation quality on synthetic months with known injected discrepancies.

    .venv/bin/python -m bench reconcile

Each month (one tenant, OpenAI and Anthropic, 2–3 models each, 30 days, daily tokens with ±40% noise)
is billed exactly as metered, with the bill's cost lines rounded the way the providers report them
(OpenAI dollars to 1e-6, Anthropic cents to 1e-4 of a cent), and then 0–3 discrepancies are injected,
each on one (provider, day):

- missing day: no event of that provider was metered that day (its bill is whole);
- wrong price: one model's output (or input) is billed 5–30% above or below the catalog price,
  for the day;
- unmetered service: a script on another key adds 5–60% tokens to one model that day, or calls a
  model nobody meters;
- late billing data: the last day of the month is read while only 30–90% of it is billed
  (a provisional day: it must NOT alert — an alert there is a false alarm).

A third of the months are left clean (apart from late billing data). The reconciliation (the real
`llmtally.reconcile.core`, the deployment's default thresholds: 2% drift, $1.00 unmetered a day)
*alerts* on a discrepancy when it raises the right alert kind on the right (provider, day) — a price
drift alert for a wrong price, an unmetered alert for a missing day or an unmetered service — and
*attributes* it when a row of that day carries the injected cause (`price`, `missing_day`,
`unmetered`), shown on the dashboard whether or not it is large enough to alert. A false alarm is an
alert on a (provider, day) with nothing injected. Baseline, in the same run: compare each provider's
monthly totals only (flag when they differ by more than 2%): a flagged month counts every discrepancy
in it as found (it can name neither the day nor the cause); a flagged clean month is a false alarm.

Nothing is asserted (docs/BENCHMARKS.md records the figures).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from llmtally.events import Provider
from llmtally.reconcile.core import (
    BillingReport,
    Cause,
    CostLine,
    Metered,
    Thresholds,
    TokenKind,
    UsageLine,
    day_totals,
    drift_alert_due,
    reconcile,
    unmetered_alert_due,
)

MONTHS = 300
FIRST = date(2026, 11, 1)
DAYS = 30
NANOS = Decimal(1_000_000_000)
MODELS = {
    Provider.OPENAI: {
        "gpt-4o-mini-2024-07-18": {"input": Decimal("0.15"), "cache_read": Decimal("0.075"), "output": Decimal("0.6")},
        "gpt-4.1-2025-04-14": {"input": Decimal(2), "cache_read": Decimal("0.5"), "output": Decimal(8)},
        "o4-mini-2025-04-16": {"input": Decimal("1.1"), "cache_read": Decimal("0.275"), "output": Decimal("4.4")},
    },
    Provider.ANTHROPIC: {
        "claude-sonnet-4-5-20250929": {"input": Decimal(3), "cache_read": Decimal("0.3"), "output": Decimal(15)},
        "claude-haiku-4-5-20251001": {"input": Decimal(1), "cache_read": Decimal("0.1"), "output": Decimal(5)},
        "claude-opus-4-1-20250805": {"input": Decimal(15), "cache_read": Decimal("1.5"), "output": Decimal(75)},
    },
}
ROGUE = {Provider.OPENAI: "gpt-4.1-nano-2025-04-14", Provider.ANTHROPIC: "claude-3-5-haiku-20241022"}
ROGUE_PRICE = {"input": Decimal("0.5"), "cache_read": Decimal("0.1"), "output": Decimal(2)}
KINDS = {"input": TokenKind.INPUT, "cache_read": TokenKind.CACHE_READ, "output": TokenKind.OUTPUT}
EXPECTED = {
    "missing_day": ("unmetered", Cause.MISSING_DAY),
    "price": ("drift", Cause.PRICE),
    "unmetered": ("unmetered", Cause.UNMETERED),
}


@dataclass
class Month:
    usage: dict[Provider, list[UsageLine]] = field(default_factory=dict)
    costs: dict[Provider, list[CostLine]] = field(default_factory=dict)
    metered: dict[Provider, dict[date, dict[str, Metered]]] = field(default_factory=dict)
    injected: dict[tuple[Provider, date], str] = field(default_factory=dict)
    late_day: date | None = None


def _round(usd: Decimal) -> int:
    """A cost line as the providers report it: to 1e-6 USD (OpenAI in dollars, Anthropic in cents to 4 places)."""
    return int((usd.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN) * NANOS).to_integral_value())


def _cost(tokens: int, per_mtok: Decimal) -> Decimal:
    return Decimal(tokens) * per_mtok / 1_000_000


def _bill(
    month: Month, provider: Provider, day: date, model: str, toks: dict[str, int], prices: dict[str, Decimal], key: str
) -> None:
    month.usage.setdefault(provider, []).append(
        UsageLine(
            day,
            model,
            {KINDS.get(k, TokenKind.CACHE_WRITE): v for k, v in toks.items()} | {TokenKind.CACHE_WRITE: 0},
            key,
        )
    )
    for kind, n in toks.items():
        month.costs.setdefault(provider, []).append(
            CostLine(day, _round(_cost(n, prices[kind])), f"{model}, {kind}", model, KINDS[kind])
        )


def synthesize(rng: random.Random) -> Month:
    month = Month()
    days = [FIRST + timedelta(days=i) for i in range(DAYS)]
    plan: dict[tuple[Provider, date], str] = {}
    if rng.random() > 1 / 3:
        for _ in range(rng.randint(1, 3)):
            provider = rng.choice(list(MODELS))
            plan[(provider, rng.choice(days[:-3]))] = rng.choice(("missing_day", "price", "unmetered"))
    month.injected = plan
    month.late_day = days[-1]
    for provider, models in MODELS.items():
        chosen = rng.sample(sorted(models), rng.randint(2, 3))
        base = {m: rng.randint(200_000, 3_000_000) for m in chosen}
        month.metered[provider] = {}
        for day in days:
            what = plan.get((provider, day))
            metered_day: dict[str, Metered] = {}
            for i, model in enumerate(chosen):
                scale = Decimal(rng.randint(60, 140)) / 100
                toks = {
                    "input": int(base[model] * scale),
                    "cache_read": int(base[model] * scale / 3),
                    "output": int(base[model] * scale / 5),
                }
                prices = dict(models[model])
                metered_cost = sum(_cost(n, prices[k]) for k, n in toks.items())
                billed_toks = dict(toks)
                billed_prices = dict(prices)
                if what == "price" and i == 0:
                    kind = rng.choice(("output", "input"))
                    factor = Decimal(rng.choice((1, -1)) * rng.randint(5, 30)) / 100
                    billed_prices[kind] = prices[kind] * (1 + factor)
                if day == month.late_day:
                    share = Decimal(rng.randint(30, 90)) / 100
                    billed_toks = {k: int(v * share) for k, v in toks.items()}
                _bill(month, provider, day, model, billed_toks, billed_prices, "key_service")
                if what == "unmetered" and i == 0:
                    if rng.random() < 0.5:
                        share = Decimal(rng.randint(5, 60)) / 100
                        extra = {k: int(v * share) for k, v in toks.items()}
                        _bill(month, provider, day, model, extra, prices, "key_script")
                    else:
                        extra = {
                            "input": rng.randint(2_000_000, 6_000_000),
                            "cache_read": 0,
                            "output": rng.randint(200_000, 900_000),
                        }
                        _bill(month, provider, day, ROGUE[provider], extra, ROGUE_PRICE, "key_script")
                if what != "missing_day":
                    metered_day[model] = Metered(
                        tokens={
                            TokenKind.INPUT: toks["input"],
                            TokenKind.CACHE_READ: toks["cache_read"],
                            TokenKind.CACHE_WRITE: 0,
                            TokenKind.OUTPUT: toks["output"],
                        },
                        cost_nanos=int((metered_cost * NANOS).to_integral_value(rounding=ROUND_HALF_EVEN)),
                        requests=100,
                    )
            month.metered[provider][day] = metered_day
    return month


@dataclass
class Score:
    injected: int = 0
    found: int = 0
    attributed: int = 0
    false_alarms: int = 0
    clean_cells: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)


def evaluate(month: Month, thresholds: Thresholds, ours: Score, base: Score, seconds: list[float]) -> None:
    end = FIRST + timedelta(days=DAYS)
    for provider in MODELS:
        report = BillingReport(provider, FIRST, end, tuple(month.usage[provider]), tuple(month.costs[provider]))
        started = time.perf_counter()
        rows = reconcile(
            "bench",
            report,
            month.metered[provider],
            thresholds=thresholds,
            settled_before=month.late_day or end,
            unit_prices=lambda p, m, d: None,
        )
        seconds.append(time.perf_counter() - started)
        alerts = set()
        for totals in day_totals(rows):
            if drift_alert_due(totals, thresholds):
                alerts.add((totals.day, "drift"))
            if unmetered_alert_due(totals, thresholds):
                alerts.add((totals.day, "unmetered"))
        causes = {(r.day, r.cause) for r in rows}
        mine = {day: what for (p, day), what in month.injected.items() if p is provider}
        for day, what in mine.items():
            kind, cause = EXPECTED[what]
            ours.injected += 1
            tally = ours.by_kind.setdefault(what, [0, 0])
            tally[0] += 1
            if (day, kind) in alerts:
                tally[1] += 1
                ours.found += 1
            if (day, cause) in causes:
                ours.attributed += 1
        ours.false_alarms += len({day for day, _ in alerts if day not in mine})
        ours.clean_cells += DAYS - len(mine)
        # Baseline: the provider's monthly totals only.
        billed = sum(r.billed_cost_nanos for r in rows)
        metered = sum(r.metered_cost_nanos for r in rows)
        flagged = billed > 0 and abs(billed - metered) * 100 > thresholds.drift_percent * billed
        base.injected += len(mine)
        base.found += len(mine) if flagged else 0
        base.false_alarms += 1 if flagged and not mine else 0
        base.clean_cells += 1 if not mine else 0


def main() -> None:
    rng = random.Random(20261207)
    thresholds = Thresholds()
    ours, base = Score(), Score()
    seconds: list[float] = []
    started = time.perf_counter()
    for _ in range(MONTHS):
        evaluate(synthesize(rng), thresholds, ours, base, seconds)
    elapsed = time.perf_counter() - started
    print(f"{MONTHS} synthetic months × 2 providers, {ours.injected} injected discrepancies (seed 20261207)")
    print("                        alerted   attributed   false alarms")
    print(
        f"  daily reconciliation  {ours.found / ours.injected:7.1%}   {ours.attributed / ours.injected:9.1%}"
        f"   {ours.false_alarms} of {ours.clean_cells} clean provider-days ({ours.false_alarms / ours.clean_cells:.2%})"
    )
    print(
        f"  monthly totals only   {base.found / base.injected:7.1%}   {0:9.1%}"
        f"   {base.false_alarms} of {base.clean_cells} clean provider-months"
        f" ({base.false_alarms / max(1, base.clean_cells):.1%})"
    )
    for what, (injected, found) in sorted(ours.by_kind.items()):
        print(f"    {what:<12} {found}/{injected} found ({found / injected:.0%})")
    per_month = sorted(seconds)[len(seconds) // 2] * 1000
    print(f"  reconcile() of one provider-month: median {per_month:.1f} ms; whole run {elapsed:.1f} s")

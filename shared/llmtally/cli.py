"""`llmtally`: the command line. Every command that reads or writes usage works against the local
stack or a deployed one.

`--target local` uses the endpoint `llmtally local` recorded in its state file
(`~/.llmtally/local.json`, or `$LLMTALLY_STATE_DIR`); `--target aws` uses the usual AWS settings
(profile, region, credentials, `AWS_ENDPOINT_URL`) and `LLMTALLY_PREFIX` or `--prefix`; `auto` (the
default) is `local` while a local stack is running, else `aws`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TextIO

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_FILE_NAME: Final = "local.json"
PROVIDERS: Final = ("anthropic", "openai", "google", "bedrock")
BAR_WIDTH: Final = 40
_EIGHTHS: Final = " ▏▎▍▌▋▊▉█"


class CliError(Exception):
    """A user-facing reason a command cannot run (printed without a traceback)."""


class CliSettings(BaseSettings):
    """Where `llmtally local` records its endpoints for the other commands."""

    model_config = SettingsConfigDict(env_prefix="LLMTALLY_", frozen=True, extra="ignore")

    state_dir: Path = Field(default_factory=lambda: Path.home() / ".llmtally")


def state_path() -> Path:
    return CliSettings().state_dir / STATE_FILE_NAME


# -- target selection --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # "local" or "aws"
    description: str
    api_url: str | None = None


def _running_local_state() -> dict[str, Any] | None:
    """The running local stack's state, or None (no state file, or its emulator does not answer)."""
    try:
        state: dict[str, Any] = json.loads(state_path().read_text())
        endpoint = str(state["aws_endpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not endpoint.startswith("http://127.0.0.1:"):
        return None
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2) as response:  # noqa: S310 - loopback only
            response.read()
    except OSError:
        return None
    return state


def use_target(target: str, prefix: str | None = None) -> Target:
    """Point the library's settings at the chosen stack (they are read from the environment)."""
    from llmtally.aws import reset_clients

    state = None if target == "aws" else _running_local_state()
    if target == "local" and state is None:
        raise CliError("no local stack is running: start one with `make run` (or `llmtally local`)")
    if state is not None:
        os.environ.update(
            {
                "LLMTALLY_ENDPOINT_URL": state["aws_endpoint"],
                "LLMTALLY_PREFIX": prefix or state["prefix"],
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
            }
        )
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        reset_clients()
        return Target("local", f"the local stack ({state['aws_endpoint']})", state.get("api_url"))
    if prefix:
        os.environ["LLMTALLY_PREFIX"] = prefix
    reset_clients()
    from llmtally.settings import get_settings

    settings = get_settings()
    where = f"AWS {settings.region}, prefix {settings.prefix}"
    if settings.endpoint_url:
        where += f", endpoint {settings.endpoint_url}"
    hint = "" if target == "aws" else "; no local stack is running"
    return Target("aws", f"{where}{hint}")


# -- local ---------------------------------------------------------------------------------------------


def cmd_local(args: argparse.Namespace) -> int:
    """Run the whole system on this machine: AWS emulator, pipeline, HTTP API and dashboard."""
    from llmtally.local.stack import LocalStack, LocalStackConfig, LocalStackError

    stopping = threading.Event()
    signals = 0

    def _on_signal(signum: int, frame: Any) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # a second Ctrl-C: the user does not want to wait for the drain
            print("llmtally local: stopped without draining", file=sys.stderr, flush=True)
            os._exit(130)
        stopping.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    extra_env = {"POWERTOOLS_LOG_LEVEL": "DEBUG" if args.verbose else "WARNING"}
    stack = LocalStack(
        LocalStackConfig(
            host=args.host,
            port=args.port,
            aws_port=args.aws_port,
            prefix=args.prefix,
            user=args.user,
            web_root=Path(args.web_root) if args.web_root else None,
            require_web=args.require_web,
            extra_env=extra_env,
        )
    )
    try:
        try:
            stack.start()
        except LocalStackError as exc:
            stack.stop(drain_timeout=0)
            raise CliError(str(exc)) from exc
        except BaseException:
            stack.stop(drain_timeout=0)
            raise
        path = state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "aws_endpoint": stack.aws_endpoint,
                    "api_url": stack.api_url,
                    "prefix": args.prefix,
                    "user": args.user,
                    "pid": os.getpid(),
                }
            )
        )
        _print_banner(args, stack)
        seeder = None
        if args.demo and not stopping.is_set():
            seeder = threading.Thread(target=_seed_demo, args=(args, stack, stopping), name="llmtally-demo")
            seeder.start()
        stopping.wait()
        print("stopping: flushing the publisher and draining the runners…", flush=True)
        if seeder is not None:
            seeder.join()
        stack.stop(drain_timeout=args.drain_timeout)
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
        print("stopped.", flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_banner(args: argparse.Namespace, stack: Any) -> None:
    from llmtally.local.stack import repo_root

    dashboard = f"{stack.api_url}/"
    if stack.web_root is None:
        built = (Path(args.web_root) if args.web_root else repo_root() / "web" / "dist") / "index.html"
        dashboard += f"  (dashboard not built: {built} is missing; `make run` builds it when web/ exists)"
    lines = [
        "llmtally local stack is up",
        f"  dashboard  {dashboard}",
        f"  API        {stack.api_url}/api/  (docs: {stack.api_url}/api/docs)",
        f"  AWS (moto) {stack.aws_endpoint}",
        f"  identity   {args.user} (every request acts as this user)",
        f"  state      {state_path()} (what `llmtally demo|summary|rejects` read)",
    ]
    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        lines.append(f"  WARNING    listening on {args.host}: anyone who reaches it acts as {args.user}")
    lines.append("Ctrl-C to stop." + ("" if args.demo else "  Try `llmtally demo` in another terminal."))
    print("\n".join(lines), flush=True)


def _seed_demo(args: argparse.Namespace, stack: Any, stopping: threading.Event) -> None:
    from llmtally.demo import demo_events, publish_demo

    started = time.monotonic()
    print(f"demo: publishing {args.demo_events:,} events over the last {args.demo_days} days…", flush=True)
    report = publish_demo(demo_events(count=args.demo_events, days=args.demo_days, seed=7), stop=stopping)
    _print_demo_report(report, sys.stdout)
    while not stopping.is_set():
        if stack.wait_idle(timeout=1.0):
            print(f"demo: ingested and aggregated ({time.monotonic() - started:.0f} s)", flush=True)
            return


# -- demo ----------------------------------------------------------------------------------------------


def _print_demo_report(report: Any, out: TextIO) -> None:
    stats = report.stats
    users = ", ".join(f"{user} {count:,}" for user, count in sorted(report.per_user.items(), key=lambda kv: -kv[1]))
    print(f"demo: published {stats.published:,} of {report.attempted:,} events ({users})", file=out, flush=True)
    if not report.ok:
        print(
            f"demo: {stats.dropped:,} dropped, {stats.failed:,} failed, {stats.queued:,} unsent "
            "(see the warnings above)",
            file=sys.stderr,
            flush=True,
        )


def _visible_requests(users: Sequence[str], days: int) -> int:
    from llmtally.queries import daily_usage

    return sum(row.requests for user in users for row in daily_usage(user, days=days).days)


def cmd_demo(args: argparse.Namespace) -> int:
    """Publish realistic synthetic usage through the real publisher."""
    from llmtally.demo import DEMO_USERS, MAX_DAYS, demo_events, publish_demo

    if not 1 <= args.days <= MAX_DAYS:
        raise CliError(f"--days must be between 1 and {MAX_DAYS} (events older than 90 days are refused)")
    if args.events < 1:
        raise CliError("--events must be at least 1")
    target = use_target(args.target, args.prefix)
    users = tuple(args.users or DEMO_USERS)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    window = args.days + 1  # local days holding the events
    before = _visible_requests(users, window) if args.wait else 0
    print(
        f"publishing {args.events:,} demo events (seed {seed}) over the last {args.days} days to {target.description}"
    )
    started = time.monotonic()
    report = publish_demo(demo_events(count=args.events, days=args.days, seed=seed, users=users))
    _print_demo_report(report, sys.stdout)
    if not args.wait or not report.stats.published:
        return 0 if report.ok else 1
    expected = before + report.stats.published
    deadline = time.monotonic() + args.wait_timeout
    visible = before
    while time.monotonic() < deadline:
        visible = _visible_requests(users, window)
        if visible >= expected:
            break
        time.sleep(1.0)
    if visible >= expected:
        print(f"all {report.stats.published:,} events are in the rollups ({time.monotonic() - started:.0f} s)")
        print(f"see them: `llmtally summary --user {users[0]}`" + (f" or {target.api_url}/" if target.api_url else ""))
    else:
        print(
            f"{visible - before:,} of {report.stats.published:,} events in the rollups after "
            f"{args.wait_timeout:.0f} s; "
            "the rest are still on their way (or were duplicates of an earlier run with the same --seed)"
        )
    return 0 if report.ok else 1


# -- summary -------------------------------------------------------------------------------------------


def _usd(value: Decimal, places: int = 4) -> str:
    return f"${value:,.{places}f}"


def bar(value: Decimal | int, peak: Decimal | int, width: int = BAR_WIDTH) -> str:
    """A horizontal bar in eighths of a character, `width` characters at `peak` (exact arithmetic)."""
    if not peak or not value:
        return ""
    eighths = int(Decimal(value) * width * 8 / Decimal(peak))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "") or "▏"


def cmd_summary(args: argparse.Namespace) -> int:
    """Totals, breakdowns and a daily bar chart for one tenant, from the rollups."""
    from llmtally.queries import Filter, breakdown, daily_usage, last_days, summarize

    use_target(args.target, args.prefix)
    where = Filter.parse(args.where) if args.where else None
    dates = last_days(args.days, args.tz)
    summary = summarize(args.user, dates[0], dates[-1], args.tz, where=where)
    daily = daily_usage(args.user, days=args.days, tz=args.tz, today=dates[-1], where=where).days
    by = None
    if args.by:
        by = breakdown(args.user, args.by, dates[0], dates[-1], args.tz, where=where, limit=args.top)
    if args.json:
        document: dict[str, Any] = {
            "summary": summary.model_dump(mode="json"),
            "daily": [d.model_dump(mode="json") for d in daily],
        }
        if by is not None:
            document["breakdown"] = json.loads(json.dumps(by.as_dict(), default=str))
        print(json.dumps(document, indent=2))
        return 0
    scope = f", where {where.dimension} = {where.value}" if where else ""
    out: list[str] = [f"{args.user}: last {args.days} days, {dates[0]} to {dates[-1]} ({args.tz}){scope}"]
    if not summary.total_requests:
        out.append("  no usage in this range (publish some with `llmtally demo`)")
        print("\n".join(out))
        return 0
    out += [
        f"  cost       {_usd(summary.total_cost_usd)}"
        + (
            f"  (billed at ingest {_usd(summary.billed_cost_usd)})"
            if summary.billed_cost_usd != summary.total_cost_usd
            else ""
        ),
        f"  requests   {summary.total_requests:,}  ({summary.errors:,} errors, {summary.unpriced_requests:,} unpriced"
        + (f", {summary.usage_missing:,} usage missing" if summary.usage_missing else "")
        + ")",
        f"  tokens     {summary.total_tokens:,}  = input {summary.input_tokens:,} + cache read "
        f"{summary.cache_read_tokens:,} + cache write {summary.cache_write_tokens:,} + output "
        f"{summary.output_tokens:,} + reasoning {summary.reasoning_tokens:,}",
        f"  per call   {_usd(summary.avg_cost_per_request_usd, 6)}, {summary.avg_latency_ms:,} ms on average",
    ]
    if by is not None:
        out += _breakdown_lines(by.as_dict())
    sections = (("provider", summary.by_provider), ("operation", summary.by_operation), ("model", summary.by_model))
    for title, rows in sections if by is None else ():
        ranked = sorted(rows.items(), key=lambda kv: (-kv[1].cost_usd, kv[0]))
        out.append(f"\n  by {title}{'' if len(ranked) <= args.top else f' (top {args.top} of {len(ranked)})'}")
        width = max(len(name) for name, _ in ranked)
        for name, row in ranked[: args.top]:
            share = row.cost_usd * 100 / summary.total_cost_usd if summary.total_cost_usd else Decimal(0)
            out.append(
                f"    {name:<{width}}  {_usd(row.cost_usd):>12} {share:>5.1f}%  {row.requests:>8,} req  "
                f"{row.tokens:>13,} tok"
            )
    out.append(f"\n  daily cost ({args.tz})")
    peak = max(d.cost_usd for d in daily)
    for day in daily:
        out.append(
            f"    {day.date} {day.date:%a}  {_usd(day.cost_usd, 2):>10} {day.requests:>7,} req  "
            + bar(day.cost_usd, peak)
        )
    print("\n".join(out))
    return 0


def _breakdown_lines(result: dict[str, Any]) -> list[str]:
    """`llmtally summary --by`: the breakdown's rows, costliest first, then the rest and the total."""
    rows = [*result["rows"], *([result["other"]] if result["other"] else [])]
    names = [row["value"] + (f" ({row['provider']})" if row["provider"] else "") for row in rows]
    width = max([len(name) for name in names] + [len("(total)")])
    folded = f"; {result['folded_values']:,} values folded into (other)" if result["folded_values"] else ""
    lines = [f"\n  by {result['by']}{folded}"]
    for name, row in zip(names, rows, strict=True):
        lines.append(
            f"    {name:<{width}}  {_usd(row['cost_usd']):>12} {row['share_percent']:>6}%  {row['requests']:>8,} req  "
            f"{row['total_tokens']:>13,} tok  {row['errors']:,} err"
        )
    total = result["total"]
    lines.append(f"    {'(total)':<{width}}  {_usd(total['cost_usd']):>12} {'100.00':>6}%  {total['requests']:>8,} req")
    return lines


# -- rebuild -------------------------------------------------------------------------------------------


def _parse_instant(text: str, what: str) -> datetime:
    """An ISO date (its UTC midnight) or datetime (naive: UTC)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CliError(f"{what} {text!r} is not an ISO 8601 date or date-time") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _next_quarter(at: datetime) -> datetime:
    base = at.astimezone(UTC).replace(second=0, microsecond=0)
    return base.replace(minute=base.minute - base.minute % 15) + timedelta(minutes=15)


def progress_bar(out: TextIO, label: str, width: int = BAR_WIDTH) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        filled = width * done // total if total else width
        end = "\n" if done >= total else ""
        print(f"\r  {label} [{'█' * filled}{'·' * (width - filled)}] {done}/{total}", end=end, file=out, flush=True)

    return show


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Recompute a tenant's rollups from its raw entries, optionally re-rated at today's prices."""
    from llmtally.rebuild import rebuild_rollups

    target = use_target(args.target, args.prefix)
    now = datetime.now(UTC)
    if args.start:
        start = _parse_instant(args.start, "--start")
        end = _parse_instant(args.end, "--end") if args.end else _next_quarter(now)
    else:
        start = datetime.combine(now.date() - timedelta(days=args.days - 1), datetime.min.time(), tzinfo=UTC)
        end = _next_quarter(now)
    print(f"rebuilding {args.user}'s rollups, {start.isoformat()} to {end.isoformat()}, on {target.description}")
    report = rebuild_rollups(args.user, start, end, reprice=args.reprice, progress=progress_bar(sys.stderr, "UTC days"))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"  {report['entries']:,} raw entries over {report['days']} days; {report['quarters_changed']:,} "
        f"15-minute rollups corrected in {report['transactions']:,} transactions"
    )
    print(f"  cost before {_usd(Decimal(report['cost_usd_before']))}, after {_usd(Decimal(report['cost_usd_after']))}")
    if report["repriced"]:
        print(f"  billed at ingest {_usd(Decimal(report['billed_cost_usd']))} (kept beside the re-rated figure)")
    return 0


def cmd_migrate_rollups(args: argparse.Namespace) -> int:
    """Move rollups written before the packed layout (`R#…` items) into packed items, exactly once.

    Run once after deploying the packed layout: until then the periods before the deploy read low
    (docs/pipeline.md, "Migration"). Safe to interrupt and to run again: items already moved are
    skipped. `--all` migrates every tenant that has old rollups or a checkpoint in the table."""
    from llmtally.migrate import migrate_all, migrate_tenant

    if bool(args.user) == bool(args.all):
        raise CliError("name one tenant with --user, or every tenant with --all")
    target = use_target(args.target, args.prefix)
    print(f"moving rollups to the packed layout on {target.description}")
    if args.user:
        reports = [migrate_tenant(args.user, args.tag_key or ())]
    else:
        reports = migrate_all(progress=progress_bar(sys.stderr, "tenants"))
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    unmatched = 0
    for report in reports:
        print(
            f"  {report['user_id']}: {report['items_migrated']:,} old items moved in {report['transactions']:,} "
            f"transactions, {report['items_already_migrated']:,} already moved; 15-minute cost "
            f"{_usd(Decimal(report['cost_usd_quarters']))}"
        )
        for bucket in report["unmatched"]:
            print(f"    cells do not add up to the total: {bucket}")
        unmatched += len(report["unmatched"])
    if unmatched:
        print(
            f"  {unmatched} old buckets held cells that do not add up to their total: "
            "`llmtally rebuild` over those days (inside the raw retention) restores them"
        )
    return 0


# -- reconcile -----------------------------------------------------------------------------------------


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Reconcile metered spend with the providers' bills and store the figures (docs/reconciliation.md).

    Reads the usage and cost reports with each tenant's stored admin key (and Bedrock's Cost Explorer
    when configured), replaces the window's rows and raises the alerts that are due. Exit status 1
    when a source could not be read.
    """
    from datetime import date

    from llmtally.reconcile.job import ReconciliationJob, summary_lines

    target = use_target(args.target, args.prefix)
    try:
        start = date.fromisoformat(args.start) if args.start else None
        end = date.fromisoformat(args.end) if args.end else None
    except ValueError as exc:
        raise CliError("--start/--end: a UTC day, YYYY-MM-DD") from exc
    print(f"reconciling on {target.description}", file=sys.stderr)
    try:
        outcome = ReconciliationJob().run(start=start, end=end, users=args.user or None)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(
            json.dumps(
                {
                    "start": outcome.start.isoformat(),
                    "end": outcome.end.isoformat(),
                    "sources": [
                        {"user_id": s.user_id, "provider": s.provider.value, "rows": s.rows, "error": s.error}
                        for s in outcome.sources
                    ],
                    "alerts": outcome.alerts,
                },
                indent=2,
            )
        )
    else:
        print("\n".join(summary_lines(outcome)))
    return 1 if outcome.failures else 0


# -- prices --------------------------------------------------------------------------------------------


def _price(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:,.3f}"


def cmd_prices(args: argparse.Namespace) -> int:
    """The curated model catalog with USD prices per 1M tokens (no AWS needed)."""
    from llmtally.events import Provider
    from llmtally.pricing import PriceBook
    from llmtally.settings import get_settings

    providers = [Provider(args.provider)] if args.provider else list(Provider)
    overrides = get_settings().price_overrides_file
    rows = PriceBook.from_file(overrides).catalog(providers)
    if args.search:
        needle = args.search.lower()
        rows = [r for r in rows if needle in r.model.lower() or needle in r.label.lower()]
    if args.current:
        rows = [r for r in rows if r.status == "current"]
    if args.json:
        document = [
            {
                "provider": r.provider.value,
                "model": r.model,
                "label": r.label,
                "status": r.status,
                "source": r.source.value,
                "prices_per_mtok": None
                if r.prices is None
                else {k: None if v is None else str(v) for k, v in vars_of(r.prices).items()},
            }
            for r in rows
        ]
        print(json.dumps(document, indent=2))
        return 0
    if not rows:
        print("no model matches")
        return 0
    width = max(len(r.model) for r in rows)
    print("USD per 1M tokens" + (f" (overrides: {overrides})" if overrides else ""))
    headings = ("input", "output", "cache rd", "cache wr", "1M+1M")
    print(f"{'provider':<10} {'model':<{width}} " + " ".join(f"{h:>8}" for h in headings) + "  source")
    for r in rows:
        p = r.prices
        legacy = " (legacy)" if r.status == "legacy" else ""
        if p is None:
            cells = ["—"] * 5
        else:
            cells = [_price(p.input_mtok), _price(p.output_mtok), _price(p.cache_read_mtok), _price(p.cache_write_mtok)]
            cells.append(f"{p.preview_usd():,.2f}")
        print(
            f"{r.provider.value:<10} {r.model:<{width}} "
            + " ".join(f"{c:>8}" for c in cells)
            + f"  {r.source.value}{legacy}"
        )
    return 0


def vars_of(prices: Any) -> dict[str, Decimal | None]:
    from dataclasses import fields

    return {f.name: getattr(prices, f.name) for f in fields(prices)}


# -- rejects -------------------------------------------------------------------------------------------


def cmd_rejects(args: argparse.Namespace) -> int:
    """Recorded bad events, newest first, with why they were refused (bodies are redacted)."""
    from llmtally.rejects import RejectReason
    from llmtally.repositories.rejects import RejectsRepository

    use_target(args.target, args.prefix)
    reason = RejectReason(args.reason) if args.reason else None
    rejects = RejectsRepository().list_recent(limit=args.limit, days=args.days, reason=reason)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rejects], indent=2))
        return 0
    if not rejects:
        print(f"no rejected events in the last {args.days} days")
        return 0
    for reject in rejects:
        who = " ".join(f"{k}={v}" for k, v in (("user", reject.user_id), ("event", reject.event_id)) if v)
        print(f"{reject.received_at:%Y-%m-%d %H:%M:%S}Z  {reject.reason.value}  {who}".rstrip())
        print(f"    {reject.message}")
        body = reject.body if len(reject.body) <= 160 else reject.body[:157] + "…"
        print(f"    body ({reject.body_bytes:,} bytes): {body}")
    print(f"{len(rejects)} rejected event(s)")
    return 0


# -- parser --------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _limit(text: str) -> int:
    from llmtally.repositories.rejects import MAX_LIST

    value = int(text)
    if not 1 <= value <= MAX_LIST:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIST}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number (0: any free port)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from llmtally.demo import DEFAULT_DAYS, DEFAULT_EVENTS
    from llmtally.rejects import RejectReason
    from llmtally.resources import DEFAULT_PREFIX

    parser = argparse.ArgumentParser(
        prog="llmtally",
        description="LLM usage metering: run the whole system locally, publish demo traffic, read reports.",
        epilog="`llmtally COMMAND --help` describes each command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=func.__doc__)
        p.set_defaults(func=func)
        return p

    def targeted(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = command(name, func, help_text)
        p.add_argument(
            "--target",
            choices=("auto", "local", "aws"),
            default="auto",
            help="the local stack, a deployed stack (usual AWS settings), or auto: local when one is running",
        )
        p.add_argument(
            "--prefix", help=f"resource name prefix of a deployed stack (default $LLMTALLY_PREFIX or {DEFAULT_PREFIX})"
        )
        return p

    local = command("local", cmd_local, "run the whole system on this machine (no AWS account needed)")
    local.add_argument("--host", default="127.0.0.1", help="address for the dashboard and API (default: loopback only)")
    local.add_argument(
        "--port", type=_port, default=8787, help="dashboard and API port (default 8787; 0: any free port)"
    )
    local.add_argument(
        "--aws-port", type=_port, default=4566, help="AWS emulator port (default 4566; 0: any free port)"
    )
    local.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"resource name prefix (default {DEFAULT_PREFIX})")
    local.add_argument("--user", default="demo-user", help="the identity every request acts as (default demo-user)")
    local.add_argument("--web-root", help="the built dashboard to serve at / (default web/dist)")
    local.add_argument("--require-web", action="store_true", help="refuse to start when the dashboard is not built")
    local.add_argument("--demo", action="store_true", help="seed demo traffic at start (see `llmtally demo`)")
    local.add_argument(
        "--demo-events", type=_positive, default=DEFAULT_EVENTS, help=f"demo events (default {DEFAULT_EVENTS})"
    )
    local.add_argument(
        "--demo-days", type=_positive, default=DEFAULT_DAYS, help=f"over the last N days (default {DEFAULT_DAYS})"
    )
    local.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to drain queued work at shutdown")

    demo = targeted("demo", cmd_demo, "publish realistic synthetic usage through the real publisher")
    demo.add_argument("--events", type=int, default=DEFAULT_EVENTS, help=f"how many events (default {DEFAULT_EVENTS})")
    demo.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help=f"spread over the last N days (default and most: {DEFAULT_DAYS})"
    )
    demo.add_argument(
        "--seed", type=int, help="random seed: the same seed publishes the same events (default: a new one)"
    )
    demo.add_argument("--users", nargs="+", metavar="USER", help="tenants (default: demo-user and four more)")
    demo.add_argument("--no-wait", dest="wait", action="store_false", help="return once published, before aggregation")
    demo.add_argument("--wait-timeout", type=float, default=180.0, help="seconds to wait for the rollups (default 180)")

    summary = targeted("summary", cmd_summary, "totals, breakdowns and a daily bar chart for a tenant")
    summary.add_argument("--user", default="demo-user", help="the tenant (default demo-user)")
    summary.add_argument(
        "--days", type=_positive, default=30, help="the last N local days, today included (default 30)"
    )
    summary.add_argument("--tz", default="UTC", help="IANA timezone of the days (default UTC; e.g. Asia/Kolkata)")
    summary.add_argument("--top", type=_positive, default=10, help="rows per breakdown (default 10)")
    summary.add_argument("--json", action="store_true", help="print the summary and daily series as JSON")
    summary.add_argument(
        "--by", metavar="DIMENSION", help="one breakdown instead: provider, model, operation or tag:<key>"
    )
    summary.add_argument(
        "--where",
        metavar="DIMENSION:VALUE",
        help="only the calls with this value, e.g. model:gpt-5, tag:customer:acme (summary, breakdown and daily)",
    )

    rebuild = targeted("rebuild", cmd_rebuild, "recompute a tenant's rollups from raw entries (optionally re-rated)")
    rebuild.add_argument("--user", required=True, help="the tenant")
    rebuild.add_argument("--days", type=_positive, default=30, help="the last N UTC days (default 30; at most 89)")
    rebuild.add_argument(
        "--start", help="instead of --days: ISO date or date-time (naive is UTC, on a 15-minute boundary)"
    )
    rebuild.add_argument("--end", help="with --start: exclusive end (default: now, rounded up to 15 minutes)")
    rebuild.add_argument("--reprice", action="store_true", help="re-rate with today's catalog and overrides")
    rebuild.add_argument("--json", action="store_true", help="print the report as JSON")

    migrate = targeted(
        "migrate-rollups",
        cmd_migrate_rollups,
        "move rollups written before the packed layout into it (once, after deploying; safe to rerun)",
    )
    who = migrate.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="one tenant")
    who.add_argument("--all", action="store_true", help="every tenant with old rollups or a checkpoint")
    migrate.add_argument(
        "--tag-key", action="append", metavar="KEY", help="with --user: a tag key besides the registry's (repeatable)"
    )
    migrate.add_argument("--json", action="store_true", help="print the reports as JSON")

    prices = command("prices", cmd_prices, "the model catalog with prices per 1M tokens")
    prices.add_argument("--provider", choices=PROVIDERS, help="one provider only")
    prices.add_argument("--search", help="models whose id or name contains this text")
    prices.add_argument("--current", action="store_true", help="hide legacy models")
    prices.add_argument("--json", action="store_true", help="print JSON (prices as decimal strings)")

    rejects = targeted("rejects", cmd_rejects, "recorded bad events, newest first, with their reasons")
    rejects.add_argument("--limit", type=_limit, default=20, help="at most N (default 20)")
    rejects.add_argument("--days", type=_positive, default=7, help="from the last N UTC days (default 7)")
    rejects.add_argument("--reason", choices=[r.value for r in RejectReason], help="only this reason")
    rejects.add_argument("--json", action="store_true", help="print JSON")

    reconcile = targeted("reconcile", cmd_reconcile, "metered spend against the providers' bills, stored per day")
    reconcile.add_argument("--user", action="append", metavar="USER", help="only this tenant (repeatable)")
    reconcile.add_argument("--start", help="first UTC day, YYYY-MM-DD (default: the last LOOKBACK days)")
    reconcile.add_argument("--end", help="with --start: exclusive end day (default: today)")
    reconcile.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from botocore.exceptions import BotoCoreError, ClientError

    from llmtally.errors import LLMTallyError

    try:
        result: int = args.func(args)
    except CliError as exc:
        print(f"llmtally {args.command}: {exc}", file=sys.stderr)
        return 2
    except LLMTallyError as exc:  # InvalidRangeError (a bad --tz or range), StorageError, …
        print(f"llmtally {args.command}: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(f"llmtally {args.command}: AWS call failed: {exc}", file=sys.stderr)
        if args.command != "local" and getattr(args, "target", "") == "auto":
            print(
                "  (no local stack is running, so the usual AWS settings were used; `make run` starts one)",
                file=sys.stderr,
            )
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `llmtally summary | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return result


if __name__ == "__main__":
    raise SystemExit(main())

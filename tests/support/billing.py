"""The providers' admin APIs on 127.0.0.1: a real HTTP server serving documented-shape pages.

The billing sources use the stdlib HTTP client (`llmtally.reconcile.http`, urllib), so the honest
equivalent of a mocked transport is a loopback server: every request goes through the real client —
URL encoding, headers, status handling, `Retry-After`, redirects refused — and the server records
what it received (path, query, headers) for the tests to check.

`report_pages` cuts a list of daily buckets into pages chained with `has_more` / `next_page`, as
both providers document; the bucket and result objects are built in the providers' own shapes
(the static fixtures in tests/fixtures/billing/ are the reference the builders mirror).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from llmtally.reconcile.core import day_start

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "billing"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"), parse_float=Decimal)


@dataclass
class Received:
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]


@dataclass
class BillingServer:
    """path → pages by cursor (None: the first page); `throttle[path]` 429s answered first."""

    routes: dict[str, dict[str | None, Any]] = field(default_factory=dict)
    throttle: dict[str, int] = field(default_factory=dict)
    retry_after: str = "0"
    status: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def serve_pages(self, path: str, pages: Sequence[Mapping[str, Any]]) -> None:
        """Serve `pages` (each carrying its own `next_page`) at `path`."""
        by_cursor: dict[str | None, Any] = {None: pages[0]}
        for previous, page in itertools.pairwise(pages):
            by_cursor[str(previous["next_page"])] = page
        self.routes[path] = by_cursor

    def reset(self) -> None:
        self.routes.clear()
        self.throttle.clear()
        self.status.clear()
        self.received.clear()


def _handler(server: BillingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qsl(parts.query, keep_blank_values=True)
            server.received.append(Received(parts.path, query, {k.lower(): v for k, v in self.headers.items()}))
            if server.throttle.get(parts.path, 0) > 0:
                server.throttle[parts.path] -= 1
                self._send(429, {"error": {"type": "rate_limit_error", "message": "slow down"}}, server.retry_after)
                return
            if parts.path in server.status:
                self._send(server.status[parts.path], {"error": {"message": "refused"}})
                return
            pages = server.routes.get(parts.path)
            cursor = dict(query).get("page")
            if pages is None or cursor not in pages:
                self._send(404, {"error": {"message": "no such page"}})
                return
            self._send(200, pages[cursor])

        def _send(self, status: int, body: Any, retry_after: str | None = None) -> None:
            data = json.dumps(body, default=_json_default).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral() else int(value)
    raise TypeError(type(value).__name__)


@contextmanager
def billing_server() -> Iterator[BillingServer]:
    state = BillingServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# -- documented shapes -------------------------------------------------------------------------------


def report_pages(
    buckets: Sequence[dict[str, Any]], per_page: int, *, openai: bool, cursor: str
) -> list[dict[str, Any]]:
    """Daily buckets cut into pages chained by `has_more` / `next_page`."""
    chunks = [list(buckets[i : i + per_page]) for i in range(0, len(buckets), per_page)] or [[]]
    pages = []
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        page: dict[str, Any] = {"data": chunk, "has_more": not last, "next_page": None if last else f"{cursor}_{n + 1}"}
        if openai:
            page = {"object": "page", **page}
        pages.append(page)
    return pages


def openai_bucket(day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    start = int(day_start(day).timestamp())
    return {"object": "bucket", "start_time": start, "end_time": start + 86_400, "results": results}


def openai_usage_result(
    model: str, *, input_tokens: int, cached: int, output: int, requests: int, api_key_id: str
) -> dict[str, Any]:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": input_tokens + cached,
        "output_tokens": output,
        "input_cached_tokens": cached,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": requests,
        "project_id": None,
        "user_id": None,
        "api_key_id": api_key_id,
        "model": model,
        "batch": None,
    }


def openai_cost_result(line_item: str, usd: Decimal) -> dict[str, Any]:
    return {
        "object": "organization.costs.result",
        "amount": {"value": usd, "currency": "usd"},
        "line_item": line_item,
        "project_id": None,
    }


def anthropic_bucket(day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "starting_at": f"{day.isoformat()}T00:00:00Z",
        "ending_at": f"{date.fromordinal(day.toordinal() + 1).isoformat()}T00:00:00Z",
        "results": results,
    }


def anthropic_usage_result(
    model: str, *, uncached: int, cache_read: int, cache_write_5m: int, output: int, api_key_id: str | None
) -> dict[str, Any]:
    return {
        "uncached_input_tokens": uncached,
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": cache_write_5m},
        "cache_read_input_tokens": cache_read,
        "output_tokens": output,
        "server_tool_use": {"web_search_requests": 0},
        "api_key_id": api_key_id,
        "workspace_id": None,
        "model": model,
        "service_tier": "standard",
        "context_window": "0-200k",
    }


_DESCRIPTIONS = {
    "uncached_input_tokens": "Input Tokens",
    "output_tokens": "Output Tokens",
    "cache_read_input_tokens": "Cache Read",
    "cache_creation.ephemeral_5m_input_tokens": "Cache Write (5m)",
}


def anthropic_cost_result(model: str, token_type: str, usd: Decimal) -> dict[str, Any]:
    return {
        "currency": "USD",
        "amount": str(usd * 100),  # the lowest currency unit: cents
        "workspace_id": None,
        "description": f"{model} Usage - {_DESCRIPTIONS[token_type]}",
        "cost_type": "tokens",
        "context_window": "0-200k",
        "model": model,
        "service_tier": "standard",
        "token_type": token_type,
    }


def ce_group(usage_type: str, user: str | None, usd: Decimal, quantity: int) -> dict[str, Any]:
    return {
        "Keys": [usage_type, f"llmtally-user${user or ''}"],
        "Metrics": {
            "UnblendedCost": {"Amount": str(usd), "Unit": "USD"},
            "UsageQuantity": {"Amount": str(quantity), "Unit": "N/A"},
        },
    }


def set_ce_results(endpoint_url: str, results: Sequence[Mapping[str, Any]]) -> None:
    """Queue Cost Explorer answers in the moto server (`/moto-api/static/ce/cost-and-usage-results`)."""
    import urllib.request

    body = json.dumps({"results": list(results)}).encode()
    request = urllib.request.Request(
        f"{endpoint_url}/moto-api/static/ce/cost-and-usage-results",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201

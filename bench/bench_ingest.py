"""Ingest's handling of hostile bodies: redaction of a refused body and the bounded JSON parser.

    .venv/bin/python -m bench ingest

1. Redacting a refused body made of one open string of repeated `token` (the worst case of the
   pattern ingest used before: `"[^"\\]*token[^"\\]*"\\s*:…`, quadratic): the previous pattern
   (reproduced here as the baseline, measured in the same run) at 16/32/64 KiB, against
   `redaction.redact_bounded` — what ingest does now — at 16/64/256 KiB, and a whole
   `Ingestor.ingest` of the 256 KiB body (in-memory repositories: parse, reject, redact, record).
2. `safejson.loads` against `json.loads` on an ordinary event body (the price of the bounds), and
   on 10,000 nested arrays.
3. `POST /api/usage-events` and the OTLP receiver on the local stack against publishing the same
   events through the library, in the same run (`bench/http_ingest.py`).
Figures print; nothing is asserted (docs/BENCHMARKS.md records them).
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from llmtally import redaction, safejson
from llmtally.events import SECRET_KEY_NAME, SECRET_VALUE
from llmtally.ingest import MAX_STORED_BODY_BYTES, Ingestor
from llmtally.pricing import PriceBook

#: The redaction pattern ingest used until issue 14 (the baseline).
_PREVIOUS_FIELD = re.compile(
    r'("[^"\\]*' + SECRET_KEY_NAME.pattern + r'[^"\\]*"\s*:\s*)"(?:[^"\\]|\\.)*"', SECRET_KEY_NAME.flags
)


def previous_redact(body: str) -> str:
    body = SECRET_VALUE.sub("[REDACTED]", body)
    return _PREVIOUS_FIELD.sub(r'\1"[REDACTED]"', body)


def hostile(kib: int) -> str:
    return '"' + "token" * (kib * 1024 // 5 - 1)


def best_ms(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


class _Sink:
    def put_if_absent(self, item: Any) -> bool:
        return True

    def record(self, **kwargs: Any) -> None:
        pass

    def admit(self, user_id: str, value: str) -> bool:
        return True


def main() -> None:
    print("1. redacting a refused body of one open string of repeated 'token'")
    print(f"   {'what':<46} {'KiB':>5} {'best ms':>10}")
    previous: dict[int, float] = {}
    for kib in (16, 32, 64):
        body = hostile(kib)
        previous[kib] = best_ms(partial(previous_redact, body), 1)
        print(f"   {'baseline: previous pattern, whole body':<46} {kib:>5} {previous[kib]:>10.1f}")
    bounded: dict[int, float] = {}
    for kib in (16, 64, 256):
        body = hostile(kib)
        bounded[kib] = best_ms(partial(redaction.redact_bounded, body, MAX_STORED_BODY_BYTES), 5)
        print(f"   {'redact_bounded (cut to 16 KiB, then linear)':<46} {kib:>5} {bounded[kib]:>10.2f}")
    unbounded = best_ms(lambda: redaction.redact(hostile(256)), 3)
    print(f"   {'redaction.redact, whole body (linear)':<46} {256:>5} {unbounded:>10.2f}")
    sink = _Sink()
    ingestor = Ingestor(sink, sink, sink, PriceBook(), ttl_days=90)  # type: ignore[arg-type]
    body = hostile(256)
    whole = best_ms(lambda: ingestor.ingest(body, message_id="m"), 5)
    print(f"   {'Ingestor.ingest → rejected (in-memory repos)':<46} {256:>5} {whole:>10.2f}")
    print(f"   ratio at 64 KiB, previous / bounded: {previous[64] / bounded[64]:,.0f}×")
    print(f"   growth 16 → 64 KiB: previous {previous[64] / previous[16]:.1f}× (quadratic: 16×), ", end="")
    print(f"bounded {bounded[64] / bounded[16]:.1f}×")

    print("2. safejson.loads vs json.loads")
    now = datetime.now(UTC)
    event = json.dumps(
        {
            "schema_version": 1,
            "event_id": "evt-0001-abcdef",
            "user_id": "user-1",
            "timestamp": (now - timedelta(minutes=1)).isoformat(),
            "provider": "anthropic",
            "model": "claude-3-5-sonnet-20241022",
            "operation_type": "query_generation",
            "status": "ok",
            "input_tokens": 1500,
            "output_tokens": 500,
            "latency_ms": 842,
            "reported_cost_usd": 0.012,
            "metadata": {"team": "detections", "attempt": 1},
        }
    )
    runs = 20_000
    plain = statistics.median(
        best_ms(lambda: [json.loads(event, parse_float=Decimal) for _ in range(runs)], 1) for _ in range(3)
    )
    safe = statistics.median(
        best_ms(lambda: [safejson.loads(event, parse_float=Decimal) for _ in range(runs)], 1) for _ in range(3)
    )
    print(f"   event body ({len(event)} bytes): json.loads {plain * 1000 / runs:.2f} µs, ", end="")
    print(f"safejson.loads {safe * 1000 / runs:.2f} µs (ratio {safe / plain:.2f})")
    nested = "[" * 10_000 + "]" * 10_000

    def refuse() -> None:
        with contextlib.suppress(safejson.JSONLimitError):
            safejson.loads(nested)

    print(f"   10,000 nested arrays refused in {best_ms(refuse, 5):.2f} ms")

    # 3. the HTTP ingest routes on the local stack against the library (bench/http_ingest.py)
    from bench import http_ingest

    print("3. ", end="")
    http_ingest.main()


if __name__ == "__main__":
    main()

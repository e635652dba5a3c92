"""Exact money: integer nano-USD in storage and arithmetic, Decimal USD at the edges. Never float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

NANOS_PER_USD: Final = 1_000_000_000
_NANO: Final = Decimal(1)
_USD_QUANTUM: Final = Decimal("0.000000001")


def usd_to_nanos(amount: Decimal) -> int:
    """USD (Decimal) to integer nano-USD, rounding half to even below one nano-dollar."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be Decimal, not {type(amount).__name__}")
    return int((amount * NANOS_PER_USD).quantize(_NANO, rounding=ROUND_HALF_EVEN))


def nanos_to_usd(nanos: int) -> Decimal:
    """Integer nano-USD to Decimal USD with exactly nine decimal places."""
    if isinstance(nanos, bool) or not isinstance(nanos, int):
        raise TypeError(f"nanos must be int, not {type(nanos).__name__}")
    return (Decimal(nanos) / NANOS_PER_USD).quantize(_USD_QUANTUM)


def format_usd(nanos: int, places: int = 4) -> str:
    """Display form, e.g. `$0.0120` (rounded half-even to `places`)."""
    quantum = Decimal(1).scaleb(-places)
    return f"${nanos_to_usd(nanos).quantize(quantum, rounding=ROUND_HALF_EVEN)}"

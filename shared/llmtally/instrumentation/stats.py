"""Counters of what instrumentation did, for a service's health endpoint or a test.

Everything that instrumentation swallows so that the caller is never disturbed — an event it could
not build, a call with no tenant, a tag it dropped — is counted here (and logged), never raised.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from typing import Final


@dataclass(frozen=True, slots=True)
class InstrumentStats:
    #: Usage events handed to a publisher that accepted them.
    published: int = 0
    #: Events the publisher refused (its buffer full or it was closed).
    dropped: int = 0
    #: Calls with no tenant anywhere (no attribution block, no instrument() default, no
    #: LLMTALLY_DEFAULT_USER_ID): not published.
    no_tenant: int = 0
    #: Bugs in usage extraction or event building: logged with a traceback, the call unaffected.
    failures: int = 0
    #: Invalid user_id / operation_type / tags given to attribution() or instrument(): ignored.
    invalid_attribution: int = 0
    #: Calls through an entry point that is not metered (raw-response wrappers, Azure, Vertex AI).
    unmetered: int = 0


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys((f.name for f in fields(InstrumentStats)), 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> InstrumentStats:
        with self._lock:
            return InstrumentStats(**self._values)

    def reset(self) -> None:
        with self._lock:
            for name in self._values:
                self._values[name] = 0


STATS: Final = _Counters()


def stats() -> InstrumentStats:
    """What instrumentation has done in this process so far."""
    return STATS.snapshot()

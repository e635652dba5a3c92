"""llmtally: bring-your-own-key LLM usage metering.

`import llmtally` stays light: no provider SDK, no boto3 client, no price data until first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmtally.events import Provider, Status, TokenCounts, UsageEvent
from llmtally.money import nanos_to_usd, usd_to_nanos

__all__ = [
    "Provider",
    "Status",
    "TokenCounts",
    "UsageEvent",
    "__version__",
    "attribution",
    "instrument",
    "instrument_all",
    "nanos_to_usd",
    "uninstrument",
    "uninstrument_all",
    "usd_to_nanos",
]
__version__ = "0.1.0"

#: Loaded on first use (`llmtally.instrument(client)`): no SDK and no wrapt at `import llmtally`.
_INSTRUMENTATION = frozenset({"attribution", "instrument", "instrument_all", "uninstrument", "uninstrument_all"})

if TYPE_CHECKING:
    from llmtally.instrumentation import attribution, instrument, instrument_all, uninstrument, uninstrument_all


def __getattr__(name: str) -> Any:
    if name in _INSTRUMENTATION:
        from llmtally import instrumentation

        value = getattr(instrumentation, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llmtally' has no attribute {name!r}")

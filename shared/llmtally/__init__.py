"""llmtally: bring-your-own-key LLM usage metering.

`import llmtally` stays light: no provider SDK, no boto3 client, no price data until first used.
"""

from __future__ import annotations

from llmtally.events import Provider, Status, TokenCounts, UsageEvent
from llmtally.money import nanos_to_usd, usd_to_nanos

__all__ = ["Provider", "Status", "TokenCounts", "UsageEvent", "__version__", "nanos_to_usd", "usd_to_nanos"]
__version__ = "0.1.0"

"""Remove key material from text that may reach a caller or a log (provider error messages)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

REDACTED: Final = "[redacted]"
MAX_MESSAGE_CHARS: Final = 500
# Shapes of provider credentials, redacted even when we do not know the exact key
# (e.g. a provider echoing a prefix of it).
_KEY_SHAPES: Final = re.compile(
    r"(sk-ant-[A-Za-z0-9_-]{4,}|sk-[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{8,}|AKIA[0-9A-Z]{12,}|ASIA[0-9A-Z]{12,}"
    r"|Bearer\s+[A-Za-z0-9._~+/=-]{8,}|x-api-key[\"':=\s]+[A-Za-z0-9._-]{8,})",
    re.IGNORECASE,
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without any of `secrets` (or a 6+ char fragment of one's end), nor anything shaped like a key."""
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, REDACTED)
        # Providers echo keys partially ("Incorrect API key provided: sk-abc***...wxyz"): cut the tail too.
        if len(secret) >= 12:
            text = text.replace(secret[-6:], REDACTED).replace(secret[:12], REDACTED)
    text = _KEY_SHAPES.sub(REDACTED, text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text

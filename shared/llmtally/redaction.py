"""Redaction of refused bodies before they are kept: linear time, on a bounded window.

A refused event may be refused *because* it carried a key, so the rejects table must not become
the place secrets end up. Two things are replaced by `[REDACTED]`:

- anything shaped like a provider key, wherever it is (`events.SECRET_VALUE`: `sk-…`, `AIza…`,
  `AKIA…`/`ASIA…`, Slack `xox[abp]-…`);
- the string value of any member whose name looks like a secret (`events.SECRET_KEY_NAME`:
  `api_key`, `apiKey`, `secret`, `password`, `token`, `authorization`, `credential`, …). Numbers
  are left alone — `input_tokens` is secret-named by that rule, and a reject keeps its counts —
  and so are object and array values (their own members are redacted by name and shape).

Both passes run in time linear in their input, whatever it holds: the key shapes are one
character class each after a literal prefix, and member values are found by a tokenizer (one
non-backtracking pattern for JSON strings, visited once each) instead of a pattern with nested
`[^"]*` runs — that one backtracked quadratically over an unclosed string, 2.7 s for 64 KiB.
`redact_bounded` also cuts first: a 256 KiB body costs what its kept 16 KiB costs.
"""

from __future__ import annotations

import re
from typing import Final

from llmtally.events import SECRET_KEY_NAME, SECRET_VALUE

REDACTED: Final = "[REDACTED]"
#: Characters redacted beyond the kept prefix, so a key cut by the final cut is still recognised
#: (longer than every key shape's minimum length; a member value cut open is redacted anyway).
WINDOW_MARGIN_CHARS: Final = 1024

#: A JSON string token, possibly left open at the end of the text: the unrolled loop
#: `"[^"\\]*(?:\\.[^"\\]*)*` matches each character one way only, so it never backtracks.
_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
#: What separates a member name from its value.
_COLON: Final = re.compile(r"\s*:\s*")


def redact(text: str) -> str:
    """`text` with key-shaped values and secret-named members' string values replaced (linear time)."""
    text = SECRET_VALUE.sub(REDACTED, text)
    parts: list[str] = []
    kept = 0  # text[:kept] is already in `parts`
    previous: re.Match[str] | None = None
    for token in _STRING.finditer(text):
        if (
            previous is not None
            and _COLON.fullmatch(text, previous.end(), token.start())
            and SECRET_KEY_NAME.search(previous.group())
        ):
            parts.append(text[kept : token.start()])
            parts.append(f'"{REDACTED}"')
            kept = token.end()
            previous = None  # a value is never the name of the next member
        else:
            previous = token
    parts.append(text[kept:])
    return "".join(parts)


def truncate_utf8(text: str, max_bytes: int) -> tuple[str, bool]:
    """`text` cut to at most `max_bytes` of UTF-8 on a character boundary, and whether it was cut.

    A lone surrogate (possible in a Lambda event's JSON) becomes `?` rather than failing.
    """
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return raw.decode("utf-8"), False
    return raw[:max_bytes].decode("utf-8", errors="ignore"), True


def redact_bounded(body: str, max_bytes: int) -> tuple[str, bool]:
    """At most `max_bytes` of `body`, redacted, and whether the body was cut.

    The body is cut to `max_bytes + WINDOW_MARGIN_CHARS` characters *before* redaction (every
    character is at least one byte, so nothing the final cut keeps is lost), redacted, then cut to
    `max_bytes` bytes. Work is bounded by `max_bytes`, never by the body.
    """
    window = body[: max_bytes + WINDOW_MARGIN_CHARS]
    kept, cut = truncate_utf8(redact(window), max_bytes)
    return kept, cut or len(window) < len(body)

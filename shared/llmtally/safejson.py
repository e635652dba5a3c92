"""JSON from untrusted callers, parsed in bounded time and memory (API bodies, ingest messages).

`json.loads` has two failure modes that are not `JSONDecodeError`, so a caller that handles only
the latter answers 500 (or crashes a batch):

- an integer of more than 4,300 digits raises `ValueError` (CPython's int-from-string limit;
  below it, converting a long digit run is quadratic);
- deep nesting raises `RecursionError` (at a depth that depends on the caller's own stack).

`loads` bounds both before they are reached — the nesting depth is checked before parsing, each
number's length while parsing — and raises `JSONLimitError`, a `JSONDecodeError`, so every
existing "not valid JSON" path (Powertools' validation middleware included) handles it as bad input.
Its message names the limit and never quotes the input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

#: Deeper than any document llmtally accepts (an enveloped event is 3 levels, an API body 3).
MAX_DEPTH: Final = 32
#: Longer than any number llmtally accepts (token counts ≤ 10 digits, money ≤ 1e6 with 9 decimals).
MAX_NUMBER_CHARS: Final = 64

#: A complete JSON string, as the unrolled loop `"[^"\\]*(?:\\.[^"\\]*)*"`: linear, no backtracking.
_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET: Final = re.compile(r"[\[\]{}]")
_OPENERS: Final = frozenset("[{")


class JSONLimitError(json.JSONDecodeError):
    """A body beyond one of the parser's bounds (a `JSONDecodeError`, so it is handled as bad JSON)."""


def is_limit_message(message: str) -> bool:
    """Whether a `JSONDecodeError` message is one of this module's (safe and useful to show)."""
    return message.startswith(("nested deeper than", "a number longer than"))


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, brackets inside strings ignored.

    Linear: strings are removed with one non-backtracking pattern, then only brackets are visited.
    """
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


@lru_cache(maxsize=32)
def _bounded(convert: Callable[[str], Any], max_chars: int) -> Callable[[str], Any]:
    def parse(literal: str) -> Any:
        if len(literal) > max_chars:
            raise JSONLimitError(f"a number longer than {max_chars} characters", "", 0)
        return convert(literal)

    return parse


def loads(
    text: str | bytes,
    *,
    parse_float: Callable[[str], Any] = float,
    parse_constant: Callable[[str], Any] | None = None,
    max_depth: int = MAX_DEPTH,
    max_number_chars: int = MAX_NUMBER_CHARS,
) -> Any:
    """`json.loads` with a nesting bound and a number-length bound; raises `JSONDecodeError`.

    `parse_float` and `parse_constant` are `json.loads`' own (e.g. `Decimal`, a NaN refuser).
    """
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    # Counting brackets is C speed; the exact (string-aware) depth is computed only when it could matter.
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
        raise JSONLimitError(f"nested deeper than {max_depth} levels", "", 0)
    options: dict[str, Any] = {"parse_int": _bounded(int, max_number_chars)}
    options["parse_float"] = _bounded(parse_float, max_number_chars)
    if parse_constant is not None:
        options["parse_constant"] = parse_constant
    try:
        return json.loads(text, **options)
    except JSONLimitError as exc:
        # Raised inside the scanner's callback: re-raised with no document attached.
        raise JSONLimitError(exc.msg, "", 0) from None

"""Attribution: who a metered call is billed to, what it was for, and its tags — on contextvars.

    with llmtally.attribution(user_id="acme", operation_type="support_chat", tags={"feature": "triage"}):
        client.messages.create(...)          # billed to acme, tagged feature=triage

The current attribution lives in a `ContextVar`, so it follows the code that runs under it: each
asyncio task starts with a copy of its creator's context (a task created inside the block keeps it
even after the block exits), a thread runs under it when started through
`contextvars.copy_context().run(...)` (or `asyncio.to_thread`), and nested blocks compose — the inner
block's user_id and operation_type win, tags merge (inner keys override outer ones).

The attribution is captured when a call *starts*: a stream consumed later, elsewhere, is still
billed to whoever made the call.

Nothing here raises into the caller: a malformed user_id / operation_type is ignored (the outer
value stays), a malformed tag is dropped, each logged and counted in `stats().invalid_attribution`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final

from llmtally.events import (
    MAX_TAGS,
    OPERATION_TYPE_PATTERN,
    SECRET_KEY_NAME,
    SECRET_VALUE,
    TAG_KEY_PATTERN,
    TAG_VALUE_PATTERN,
    is_valid_user_id,
)
from llmtally.instrumentation.stats import STATS

logger = logging.getLogger("llmtally.instrumentation")

_OPERATION: Final = re.compile(OPERATION_TYPE_PATTERN)
_TAG_KEY: Final = re.compile(TAG_KEY_PATTERN)
_TAG_VALUE: Final = re.compile(TAG_VALUE_PATTERN)
_NO_TAGS: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Attribution:
    """The tenant, operation and tags a call is billed under (None: not set at this level)."""

    user_id: str | None = None
    operation_type: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: _NO_TAGS)

    def under(self, outer: Attribution) -> Attribution:
        """This attribution nested inside `outer`: set fields win, tags merge (this one's keys win)."""
        return Attribution(
            user_id=self.user_id or outer.user_id,
            operation_type=self.operation_type or outer.operation_type,
            tags=merge_tags(outer.tags, self.tags),
        )


EMPTY: Final = Attribution()
_current: ContextVar[Attribution] = ContextVar("llmtally_attribution", default=EMPTY)


def current_attribution() -> Attribution:
    """The attribution in force here (the merge of every enclosing `attribution(...)` block)."""
    return _current.get()


def _invalid(what: str, shown: object) -> None:
    STATS.add("invalid_attribution")
    logger.warning("llmtally attribution: ignoring an invalid %s (%.70r)", what, shown)


def clean_user_id(value: object) -> str | None:
    if value is None:
        return None
    if is_valid_user_id(value):
        return value
    _invalid("user_id", value)
    return None


def clean_operation_type(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and _OPERATION.match(value):
        return value
    _invalid("operation_type", value)
    return None


def clean_tags(value: object) -> Mapping[str, str]:
    """The valid tags of `value` (int/bool values become strings); anything else dropped and counted."""
    if value is None:
        return _NO_TAGS
    if not isinstance(value, Mapping):
        _invalid("tags mapping", type(value).__name__)
        return _NO_TAGS
    kept: dict[str, str] = {}
    for key, raw in value.items():
        item = str(raw) if isinstance(raw, int) else raw  # bool is an int
        if not isinstance(key, str) or not _TAG_KEY.match(key) or SECRET_KEY_NAME.search(key):
            _invalid("tag key", key)
        elif not isinstance(item, str) or not _TAG_VALUE.match(item):
            _invalid(f"value for tag {key!r}", type(raw).__name__ if not isinstance(raw, str) else raw)
        elif SECRET_VALUE.search(item):
            # Never echo a secret-shaped value, not even in a log line.
            _invalid(f"value for tag {key!r}", "[secret-shaped]")
        elif len(kept) >= MAX_TAGS:
            _invalid("tag beyond the limit of 8", key)
        else:
            kept[key] = item
    return MappingProxyType(kept) if kept else _NO_TAGS


def merge_tags(outer: Mapping[str, str], inner: Mapping[str, str]) -> Mapping[str, str]:
    """Outer tags overridden by inner ones; past MAX_TAGS keys the inner block's new keys are dropped."""
    if not inner:
        return outer
    if not outer:
        return inner
    merged = dict(outer)
    for key, value in inner.items():
        if key in merged or len(merged) < MAX_TAGS:
            merged[key] = value
        else:
            _invalid("tag beyond the limit of 8", key)
    return MappingProxyType(merged)


class attribution:  # lower case: used like a function, `with llmtally.attribution(...):`
    """Bill every metered call made inside the block to `user_id`, as `operation_type`, with `tags`.

    A sync (`with`) and async (`async with`) context manager. Enter each instance in one place at a
    time (the usual `with attribution(...):` does); re-entering it after exit is fine.
    """

    __slots__ = ("_own", "_tokens")

    def __init__(
        self,
        user_id: str | None = None,
        *,
        operation_type: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            self._own = Attribution(clean_user_id(user_id), clean_operation_type(operation_type), clean_tags(tags))
        except Exception:  # never raise into the caller
            logger.exception("llmtally attribution: could not read the arguments")
            STATS.add("invalid_attribution")
            self._own = EMPTY
        self._tokens: list[Token[Attribution]] = []

    def __enter__(self) -> Attribution:
        merged = self._own.under(_current.get())
        self._tokens.append(_current.set(merged))
        return merged

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tokens:
            token = self._tokens.pop()
            try:
                _current.reset(token)
            except ValueError:  # exited in another context than it was entered in (misuse): restore anyway
                _current.set(token.old_value if token.old_value is not Token.MISSING else EMPTY)

    async def __aenter__(self) -> Attribution:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

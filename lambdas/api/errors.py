"""Domain errors → HTTP, in one place. No message, detail or log line here ever carries a request's input.

Validation errors list where and what (`loc`, `msg`) but never pydantic's `input`/`ctx`: the input
may be an API key. An unexpected exception is logged by type and traceback frames only (its message
could quote a value) and answered with a plain 500.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from api.responses import error_response
from llmtally import safejson
from llmtally.api.errors import ApiError
from llmtally.errors import InvalidCursorError, StorageError
from llmtally.rollups import InvalidRangeError

logger = logging.getLogger("llmtally.api")
MAX_DETAILS = 20


def _loc(loc: Any) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in (loc or ())]


def _msg(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        # The bounded parser's own messages name the limit (and never quote the body).
        detail = str((error.get("ctx") or {}).get("error", ""))
        return f"the body is refused: {detail}" if safejson.is_limit_message(detail) else "the body is not valid JSON"
    msg = str(error.get("msg", "invalid value"))
    # pydantic prefixes our own validators' messages with "Value error, ".
    return msg.removeprefix("Value error, ")


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    details = []
    for error in errors[:MAX_DETAILS]:
        # A JSON syntax error's loc ends with a character offset: where in the body, not which field.
        loc = ["body"] if error.get("type") == "json_invalid" else _loc(error.get("loc"))
        details.append({"loc": loc, "msg": _msg(error)})
    return details


def validation_message(details: list[dict[str, Any]]) -> str:
    if not details:
        return "invalid request"
    first = details[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def _invalid(exc: RequestValidationError) -> Response[Any]:
    details = validation_details(list(exc.errors()))
    logger.info("request refused: invalid", extra={"status": 400, "fields": [d["loc"] for d in details]})
    return error_response(400, validation_message(details), details)


def _unsupported(exc: RequestUnsupportedContentType) -> Response[Any]:
    return error_response(415, "the body must be application/json")


def _api_error(exc: ApiError) -> Response[Any]:
    logger.info("request refused", extra={"status": exc.status, "reason": exc.message})
    return error_response(exc.status, exc.message, headers=exc.headers)


def _bad_cursor(exc: InvalidCursorError) -> Response[Any]:
    logger.info("request refused: invalid cursor", extra={"status": 400})
    return error_response(400, "invalid cursor: use the next_cursor of a previous page of the same query")


def _bad_range(exc: InvalidRangeError) -> Response[Any]:
    logger.info("request refused: invalid range", extra={"status": 400, "reason": exc.reason})
    return error_response(400, exc.reason)


def _storage(exc: StorageError) -> Response[Any]:
    logger.error("storage unavailable", extra={"status": 503, "reason": str(exc)})
    return error_response(503, "a backing store is unavailable; retry shortly", headers={"Retry-After": "1"})


def _unexpected(exc: Exception) -> Response[Any]:
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("unhandled error", extra={"status": 500, "error_type": type(exc).__name__, "frames": frames})
    return error_response(500, "internal error")


def _not_found(exc: Exception) -> Response[Any]:
    return error_response(404, "no such route")


def register(app: APIGatewayHttpResolver) -> None:
    """Map every domain error to its response (Powertools' registration functions are untyped: via Any)."""
    resolver: Any = app
    resolver.exception_handler(RequestValidationError)(_invalid)
    resolver.exception_handler(RequestUnsupportedContentType)(_unsupported)
    resolver.exception_handler(ApiError)(_api_error)
    resolver.exception_handler(InvalidCursorError)(_bad_cursor)
    resolver.exception_handler(InvalidRangeError)(_bad_range)
    resolver.exception_handler(StorageError)(_storage)
    resolver.exception_handler(Exception)(_unexpected)
    resolver.not_found(_not_found)

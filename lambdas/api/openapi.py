"""OpenAPI helpers: response declarations per route, and the served document.

Powertools declares a 422 on every validated route; this API answers validation errors with 400
(the seed's and the design's contract), so the served document drops the 422s and declares the
error responses each route can give, all with the one `ErrorResponse` body.
"""

from __future__ import annotations

from copy import deepcopy
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from llmtally.api.models import ErrorResponse

TITLE = "llmtally API"
VERSION = "1.0.0"
DESCRIPTION = (
    "BYOK LLM settings and usage analytics. Every `{userId}` route requires the caller's identity "
    "(a JWT validated by API Gateway) to match `userId`, unless the caller holds the admin claim. "
    "Errors are `{error, details?}` with a 4xx status; validation errors are 400."
)
_ERROR_TEXT = {
    400: "Invalid request: malformed JSON, unknown fields, bad parameters (the message says which)",
    401: "No caller identity",
    403: "The caller may not access this user's data",
    404: "Not found",
    413: "Request body too large",
    415: "The body is not application/json",
    429: "Too many requests; see Retry-After",
    503: "A backing store is unavailable; retry",
}


def ok(model: type[Any], description: str = "OK") -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": model}}}


def error_responses(*statuses: int) -> dict[int, OpenAPIResponse]:
    return {status: ok(ErrorResponse, _ERROR_TEXT.get(status, HTTPStatus(status).phrase)) for status in statuses}


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """The served document: 422s replaced by 400s carrying `ErrorResponse`; 503 declared everywhere."""
    document = deepcopy(document)
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            responses.pop(422, None)
            if "parameters" in operation or "requestBody" in operation:
                responses.setdefault("400", {"description": _ERROR_TEXT[400], "content": deepcopy(error_content)})
            if "requestBody" in operation:
                responses.setdefault("413", {"description": _ERROR_TEXT[413], "content": deepcopy(error_content)})
                responses.setdefault("415", {"description": _ERROR_TEXT[415], "content": deepcopy(error_content)})
            responses.setdefault("503", {"description": _ERROR_TEXT[503], "content": deepcopy(error_content)})
    schemas = document.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return document

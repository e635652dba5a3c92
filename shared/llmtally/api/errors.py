"""Domain errors of the HTTP API, each with the status it maps to (mapped in one place, lambdas/api).

Messages are shown to the caller as they are: they never contain a key, a secret ARN or a stack.
"""

from __future__ import annotations

from llmtally.errors import LLMTallyError


class ApiError(LLMTallyError):
    """A request the API refuses; `status` and `message` become the response."""

    status: int = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequestError(ApiError):
    status = 400


class NotAuthenticatedError(ApiError):
    status = 401


class ForbiddenError(ApiError):
    status = 403


class NotFoundError(ApiError):
    status = 404


class PayloadTooLargeError(ApiError):
    status = 413


class RateLimitedError(ApiError):
    status = 429

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_seconds))})
        self.retry_after_seconds = retry_after_seconds


class ServiceUnavailableError(ApiError):
    status = 503

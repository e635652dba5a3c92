"""One small error taxonomy for every provider, with messages that never carry key material.

Adapters map each SDK's exceptions onto these classes. The message is composed by llmtally
from the error class, the HTTP status and the provider's stable error *code* — never from the
SDK exception's text, which can echo a (masked) key. The SDK exception is not chained
(`raise ... from None`) for the same reason: a logged traceback would print it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Final

from llmtally.errors import LLMTallyError

if TYPE_CHECKING:
    from llmtally.responses import LLMUsage


class ErrorType(StrEnum):
    AUTHENTICATION = "authentication"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    INVALID_REQUEST = "invalid_request"
    CONTENT_FILTERED = "content_filtered"


#: Worth another attempt (ours, with backoff) and a fallback to the next provider.
RETRYABLE: Final = frozenset({ErrorType.RATE_LIMIT, ErrorType.TIMEOUT, ErrorType.UNAVAILABLE})

# Shapes of provider keys and of the masked forms some providers echo back ("sk-proj-***abcd").
_KEY_SHAPES: Final = re.compile(
    r"(sk-[A-Za-z0-9_*.-]{4,}|AIza[0-9A-Za-z_-]{10,}|AKIA[0-9A-Z]{12,}|ASIA[0-9A-Z]{12,}|"
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}|x-api-key[:=]\s*\S+)"
)
_SAFE_CODE: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_DETAIL_CHARS: Final = 200


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove the given secrets (and anything shaped like a provider key) from `text`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _KEY_SHAPES.sub("[redacted]", text)


def safe_code(value: object) -> str | None:
    """A provider's machine-readable error code, if it looks like one (never free text)."""
    return value if isinstance(value, str) and _SAFE_CODE.match(value) else None


class ProviderError(LLMTallyError):
    """A provider call failed. `error_type` is the taxonomy value recorded on the usage event."""

    error_type: ClassVar[ErrorType]
    #: Whether another attempt may succeed (a quota error is a rate limit that is not).
    retryable: bool

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        usage: LLMUsage | None = None,
        network: bool = False,
        content: str = "",
        secrets: Iterable[str] = (),
    ) -> None:
        message = scrub(message, secrets)
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.code = safe_code(code)
        self.request_id = safe_code(request_id)
        self.retry_after = retry_after
        self.retryable = self.error_type in RETRYABLE if retryable is None else retryable
        #: Tokens the provider billed for the failed call (a filtered answer still costs).
        self.usage = usage
        #: For `unavailable`: the provider was never reached (DNS, refused connection, no route).
        self.network = network
        #: For `content_filtered`: any partial text the provider returned.
        self.content = content

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, status_code={self.status_code!r}, code={self.code!r})"
        )


class AuthenticationError(ProviderError):
    """The key (or AWS credentials) was refused, lacks permission, or the account cannot be billed."""

    error_type = ErrorType.AUTHENTICATION


class RateLimitError(ProviderError):
    error_type = ErrorType.RATE_LIMIT


class ProviderTimeoutError(ProviderError):
    error_type = ErrorType.TIMEOUT


class UnavailableError(ProviderError):
    """The provider could not be reached (`network=True`) or answered with a server error."""

    error_type = ErrorType.UNAVAILABLE


class InvalidRequestError(ProviderError):
    error_type = ErrorType.INVALID_REQUEST


class ModelNotFoundError(InvalidRequestError):
    """The model does not exist or this key cannot use it."""


class ContentFilteredError(ProviderError):
    """The provider refused or filtered the answer. `content` holds any partial text, `usage` the billed tokens."""

    error_type = ErrorType.CONTENT_FILTERED


ERROR_CLASSES: Final[dict[ErrorType, type[ProviderError]]] = {
    ErrorType.AUTHENTICATION: AuthenticationError,
    ErrorType.RATE_LIMIT: RateLimitError,
    ErrorType.TIMEOUT: ProviderTimeoutError,
    ErrorType.UNAVAILABLE: UnavailableError,
    ErrorType.INVALID_REQUEST: InvalidRequestError,
    ErrorType.CONTENT_FILTERED: ContentFilteredError,
}

_TEMPLATES: Final[dict[ErrorType, str]] = {
    ErrorType.AUTHENTICATION: "{label} rejected the credentials (check that the API key is correct, active and allowed "
    "to use this model)",
    ErrorType.RATE_LIMIT: "{label} rate limit or quota exceeded",
    ErrorType.TIMEOUT: "{label} did not answer in time",
    ErrorType.UNAVAILABLE: "{label} is unavailable (server error or overloaded)",
    ErrorType.INVALID_REQUEST: "{label} rejected the request as invalid",
    ErrorType.CONTENT_FILTERED: "{label} filtered the content (safety system or refusal)",
}

PROVIDER_LABELS: Final = {
    "anthropic": "Anthropic",
    "openai": "OpenAI",
    "google": "Google Gemini",
    "bedrock": "AWS Bedrock",
}


def describe(error_type: ErrorType, provider: str, *, status_code: int | None = None, code: str | None = None) -> str:
    """The standard message for an error class: provider label, status and code, nothing else."""
    label = PROVIDER_LABELS.get(provider, provider)
    message = _TEMPLATES[error_type].format(label=label)
    parts = [f"HTTP {status_code}" if status_code else "", safe_code(code) or ""]
    suffix = ", ".join(p for p in parts if p)
    return f"{message} ({suffix})" if suffix else message


def make_error(
    error_type: ErrorType,
    *,
    provider: str,
    model: str | None = None,
    status_code: int | None = None,
    code: str | None = None,
    detail: str | None = None,
    secrets: Iterable[str] = (),
    model_missing: bool = False,
    request_id: str | None = None,
    retry_after: float | None = None,
    retryable: bool | None = None,
    usage: LLMUsage | None = None,
    network: bool = False,
    content: str = "",
) -> ProviderError:
    """Build the taxonomy error; `detail` (the provider's own words) is kept only for invalid requests, scrubbed."""
    message = describe(error_type, provider, status_code=status_code, code=code)
    if detail and error_type in (ErrorType.INVALID_REQUEST, ErrorType.CONTENT_FILTERED):
        message = f"{message}: {scrub(detail, secrets)[:MAX_DETAIL_CHARS]}"
    cls: type[ProviderError] = ERROR_CLASSES[error_type]
    if error_type is ErrorType.INVALID_REQUEST and model_missing:
        cls = ModelNotFoundError
    return cls(
        message,
        provider=provider,
        model=model,
        status_code=status_code,
        code=code,
        request_id=request_id,
        retry_after=retry_after,
        retryable=retryable,
        usage=usage,
        network=network,
        content=content,
        secrets=secrets,
    )


def error_type_for_status(status: int) -> ErrorType:
    """The taxonomy class of a bare HTTP status, when nothing more specific is known."""
    if status in (401, 402, 403):
        return ErrorType.AUTHENTICATION
    if status == 429:
        return ErrorType.RATE_LIMIT
    if status in (408, 504):
        return ErrorType.TIMEOUT
    if status >= 500:
        return ErrorType.UNAVAILABLE
    return ErrorType.INVALID_REQUEST


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `retry-after` / `retry-after-ms` header value (numbers only)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None

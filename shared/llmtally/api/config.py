"""The API's own settings (`LLMTALLY_API_*`), validated once at cold start."""

from __future__ import annotations

import re
from functools import cache
from typing import Final

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CLAIM_NAME_PATTERN = r"^[A-Za-z0-9_:.\-/]{1,128}$"
#: The largest page of raw entries one call may ask for: `repositories.usage.MAX_PAGE_SIZE`, written
#: out here so the settings need not import the repository at cold start (a test holds them equal).
ENTRIES_PAGE_MAX: Final = 1000

_LABEL: Final = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
#: `https://host[:port]`: any DNS name (IDNs in their `xn--` form).
_HTTPS_ORIGIN: Final = re.compile(rf"https://{_LABEL}(?:\.{_LABEL})*(?::(?P<port>[1-9][0-9]{{0,4}}))?")
#: `http://` only for this machine, the host matched exactly: `http://localhost.evil.com` is not local.
_LOOPBACK_ORIGIN: Final = re.compile(r"http://(?:localhost|127\.0\.0\.1|\[::1\])(?::(?P<port>[1-9][0-9]{0,4}))?")


def web_origin(value: str) -> str:
    """A browser origin allowed to call the API (CORS, sign-in callbacks), checked and lower-cased.

    Exactly `scheme://host[:port]` as a browser sends it in `Origin`: `https://` with any host, or
    `http://` with the loopback host itself (`localhost`, `127.0.0.1`, `[::1]`) — compared as a whole
    host, never as a prefix. No path, query, credentials, wildcard or trailing slash.
    """
    origin = value.strip().lower()
    match = _HTTPS_ORIGIN.fullmatch(origin) or _LOOPBACK_ORIGIN.fullmatch(origin)
    port = match.group("port") if match else None
    if match is None or (port is not None and int(port) > 65535):
        raise ValueError(
            f"an origin is https://host[:port] or http://localhost[:port] (127.0.0.1, [::1]), got {value[:100]!r}"
        )
    return origin


class ApiSettings(BaseSettings):
    """Identity, limits and switches of the HTTP API. Same code on AWS, the local stack and tests."""

    model_config = SettingsConfigDict(env_prefix="LLMTALLY_API_", frozen=True, extra="ignore")

    #: The JWT claim (as API Gateway passes it in requestContext.authorizer.jwt.claims) naming the caller.
    identity_claim: str = Field(default="sub", pattern=CLAIM_NAME_PATTERN)
    #: The claim listing the caller's groups, and the group that may read and manage every tenant.
    admin_claim: str = Field(default="cognito:groups", pattern=CLAIM_NAME_PATTERN)
    admin_group: str = Field(default="llmtally-admin", min_length=1, max_length=128)
    #: Local stack only: accept the caller's identity from the `x-llmtally-local-user` header when the
    #: request comes from a loopback address. Never set on AWS (the CDK app does not expose it).
    local_identity: bool = False
    #: Connection tests allowed per user per window (a fixed-window counter in the settings table).
    test_rate_limit: int = Field(default=5, ge=1, le=1000)
    test_rate_window_seconds: int = Field(default=60, ge=1, le=86_400)
    #: Largest request body accepted (bytes, after base64 decoding); larger is 413.
    max_body_bytes: int = Field(default=16 * 1024, ge=1024, le=6 * 1024 * 1024)
    #: Whether this deployment can call Bedrock (its role and region allow it): `hasApiKeys.bedrock`.
    bedrock_available: bool = True
    #: Raw entries: default and largest page, at most `ENTRIES_PAGE_MAX` (the usage repository's
    #: largest page: a larger setting would pass requests the repository refuses); CSV export: most
    #: rows in one response (read in pages of at most that size).
    entries_default_limit: int = Field(default=100, ge=1, le=ENTRIES_PAGE_MAX)
    entries_max_limit: int = Field(default=ENTRIES_PAGE_MAX, ge=1, le=ENTRIES_PAGE_MAX)
    csv_max_rows: int = Field(default=10_000, ge=1, le=100_000)
    #: HMAC key of the entries route's pagination cursors (at least 32 characters). Unset, a key
    #: derived from the deployment prefix is used: tampering is still detected for a client that
    #: does not know the prefix, and tenant isolation never rests on it (the start key is rebuilt
    #: from the caller's tenant and the cursor must name that tenant). Set it to make cursors
    #: unforgeable outright.
    cursor_secret: SecretStr | None = Field(default=None, min_length=32)

    @model_validator(mode="after")
    def _default_page_within_the_largest(self) -> ApiSettings:
        if self.entries_default_limit > self.entries_max_limit:
            raise ValueError(
                f"entries_default_limit ({self.entries_default_limit}) must not exceed "
                f"entries_max_limit ({self.entries_max_limit})"
            )
        return self


@cache
def get_api_settings() -> ApiSettings:
    return ApiSettings()

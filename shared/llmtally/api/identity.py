"""Who is calling, and may they act for `{userId}`.

On AWS the HTTP API's JWT authorizer has already checked the token; the claims arrive in
`requestContext.authorizer.jwt.claims`. The caller's identity is the claim named by
`ApiSettings.identity_claim` (default `sub`); a caller whose `admin_claim` (default
`cognito:groups`) contains `admin_group` may act for any tenant. API Gateway flattens a list claim
into a string such as `[a b]`, so groups are parsed from a list, a JSON array, `[a b]`, or a comma
or space separated string.

The local stack has no authorizer: with `LLMTALLY_API_LOCAL_IDENTITY=true`, and only for a request
whose source address is loopback, the header `x-llmtally-local-user` names the caller (and
`x-llmtally-local-admin: true` makes it an admin). Anywhere else the headers are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from llmtally import safejson
from llmtally.api.config import ApiSettings
from llmtally.api.errors import ForbiddenError, NotAuthenticatedError

LOCAL_USER_HEADER: Final = "x-llmtally-local-user"
LOCAL_ADMIN_HEADER: Final = "x-llmtally-local-admin"
#: A caller identity we are willing to compare and log (a Cognito `sub` is a UUID).
_SUBJECT = re.compile(r"^[\x21-\x7e]{1,256}$")


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    admin: bool
    source: Literal["jwt", "local"]


def parse_groups(value: Any) -> frozenset[str]:
    """Groups from a claim value: a list, a JSON array, API Gateway's `[a b]`, or `a,b` / `a b`."""
    if value is None:
        return frozenset()
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(str(v) for v in value)
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = safejson.loads(text)  # bounded: a deeply nested claim is not a RecursionError
        except ValueError:
            text = text.strip("[]")
        else:
            if isinstance(parsed, list):
                return frozenset(str(v) for v in parsed)
    return frozenset(part for part in re.split(r"[\s,]+", text) if part)


def is_loopback(source_ip: str | None) -> bool:
    if not source_ip:
        return False
    try:
        return ipaddress.ip_address(source_ip).is_loopback
    except ValueError:
        return False


def resolve_caller(
    claims: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    source_ip: str | None,
    settings: ApiSettings,
) -> Caller:
    """The authenticated caller, or NotAuthenticatedError (401)."""
    if claims:
        subject = claims.get(settings.identity_claim)
        if isinstance(subject, str) and _SUBJECT.match(subject):
            admin = settings.admin_group in parse_groups(claims.get(settings.admin_claim))
            return Caller(subject=subject, admin=admin, source="jwt")
    if settings.local_identity and is_loopback(source_ip):
        lowered = {k.lower(): v for k, v in headers.items()}
        subject = lowered.get(LOCAL_USER_HEADER, "").strip()
        if subject and _SUBJECT.match(subject):
            admin = lowered.get(LOCAL_ADMIN_HEADER, "").strip().lower() == "true"
            return Caller(subject=subject, admin=admin, source="local")
    raise NotAuthenticatedError("authentication required: no caller identity in the request")


def authorize(caller: Caller, user_id: str) -> None:
    """The caller may act for `user_id`: it is them, or they are an admin; else ForbiddenError (403)."""
    if caller.admin or caller.subject == user_id:
        return
    raise ForbiddenError("the caller may not access another user's data")

"""Ingest keys: bearer credentials for `POST /api/usage-events` and the OTLP receiver.

A key is `llt_<key id>_<secret>`:

* `key id` — 16 lower-case base32 characters (80 random bits): public, names the key in lists,
  logs and the lookup item, never enough to use it;
* `secret` — 43 URL-safe base64 characters (256 random bits), shown to its creator once.

Only `SHA-256(secret)` is stored. A slow KDF (bcrypt, scrypt, Argon2) protects *low-entropy*
secrets such as passwords from a brute force of a leaked hash; a 256-bit random secret cannot be
brute-forced at any speed, so one fast hash is enough and each request costs microseconds. The
comparison is constant-time (`hmac.compare_digest`).

A key is scoped to the tenant it was created for and may write only that tenant's events, unless
an admin created it with `all_tenants` (then each event names its tenant).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

KEY_PREFIX: Final = "llt_"
KEY_ID_CHARS: Final = 16
SECRET_BYTES: Final = 32
KEY_PATTERN: Final = re.compile(r"^llt_(?P<key_id>[a-z2-7]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
KEY_ID_PATTERN: Final = r"^[a-z2-7]{16}$"
#: A key's display name: printable, no leading or trailing space.
KEY_NAME_PATTERN: Final = r"^[A-Za-z0-9_.:@/+=#()-](?:[A-Za-z0-9 _.:@/+=#()-]{0,62}[A-Za-z0-9_.:@/+=#()-])?$"
#: Keys one tenant may hold at once (revoke one to create another).
MAX_KEYS_PER_TENANT: Final = 20


@dataclass(frozen=True, slots=True)
class IngestKey:
    """A stored key's public record (never its secret)."""

    key_id: str
    user_id: str
    name: str
    created_at: datetime
    created_by: str
    all_tenants: bool = False
    last_used_at: datetime | None = None

    @property
    def hint(self) -> str:
        """What a list shows so a user recognises the key: its prefix and id."""
        return f"{KEY_PREFIX}{self.key_id}_…"


@dataclass(frozen=True, slots=True)
class NewIngestKey:
    """A freshly made key: the plaintext (shown once) and what is stored."""

    key_id: str
    plaintext: str
    secret_hash: str


@dataclass(frozen=True, slots=True)
class IngestPrincipal:
    """Who an ingest request authenticated as."""

    key_id: str
    user_id: str
    all_tenants: bool

    def may_write(self, tenant: str) -> bool:
        return self.all_tenants or tenant == self.user_id


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_key() -> NewIngestKey:
    key_id = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return NewIngestKey(key_id=key_id, plaintext=f"{KEY_PREFIX}{key_id}_{secret}", secret_hash=hash_secret(secret))


def parse_key(text: str) -> tuple[str, str] | None:
    """`(key_id, secret)` of a well-formed key, else None (never raises, never echoes `text`)."""
    match = KEY_PATTERN.fullmatch(text.strip())
    if match is None:
        return None
    return match.group("key_id"), match.group("secret")


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (case-insensitive scheme)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

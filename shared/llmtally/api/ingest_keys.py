"""Managing ingest keys (create, list, revoke) for `/api/llm-settings/{userId}/ingest-keys`.

The plaintext key is in the create response only; lists show the id, name, hint, creation and
last-use times. Only an admin may create an `all_tenants` key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from llmtally.api.errors import BadRequestError, ForbiddenError, NotFoundError
from llmtally.api.identity import Caller
from llmtally.ingest_keys import KEY_NAME_PATTERN, MAX_KEYS_PER_TENANT, IngestKey, new_key


class IngestKeyStore(Protocol):
    def create(self, key: IngestKey, secret_hash: str) -> None: ...

    def list(self, user_id: str) -> list[IngestKey]: ...

    def revoke(self, user_id: str, key_id: str) -> bool: ...


class IngestKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=KEY_NAME_PATTERN, description="What the key is for (1-64 printable characters).")
    all_tenants: bool = Field(
        default=False, description="Admins only: the key may write events of any tenant (each event names it)."
    )


class IngestKeyInfo(BaseModel):
    key_id: str
    name: str
    hint: str = Field(description="The key's public prefix, to recognise it (never the secret).")
    created_at: str
    created_by: str
    all_tenants: bool
    last_used_at: str | None = Field(description="When the key last authenticated a request (at most a minute stale).")


class IngestKeysResponse(BaseModel):
    keys: list[IngestKeyInfo]
    max_keys: int


class IngestKeyCreated(IngestKeyInfo):
    key: str = Field(description="The key itself: shown this once, stored only as a hash.")


class IngestKeyRevoked(BaseModel):
    key_id: str
    revoked: bool


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _info(key: IngestKey) -> dict[str, Any]:
    return IngestKeyInfo(
        key_id=key.key_id,
        name=key.name,
        hint=key.hint,
        created_at=_iso(key.created_at) or "",
        created_by=key.created_by,
        all_tenants=key.all_tenants,
        last_used_at=_iso(key.last_used_at),
    ).model_dump()


class IngestKeyService:
    def __init__(self, store: Callable[[], IngestKeyStore], clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    def list(self, user_id: str) -> dict[str, Any]:
        keys = self._store().list(user_id)
        return {"keys": [_info(k) for k in keys], "max_keys": MAX_KEYS_PER_TENANT}

    def create(self, caller: Caller, user_id: str, request: IngestKeyCreate) -> dict[str, Any]:
        if request.all_tenants and not caller.admin:
            raise ForbiddenError("only an admin may create a key that writes every tenant's events")
        store = self._store()
        if len(store.list(user_id)) >= MAX_KEYS_PER_TENANT:
            raise BadRequestError(f"at most {MAX_KEYS_PER_TENANT} ingest keys per tenant; revoke one first")
        fresh = new_key()
        key = IngestKey(
            key_id=fresh.key_id,
            user_id=user_id,
            name=request.name,
            created_at=self._clock(),
            created_by=caller.subject,
            all_tenants=request.all_tenants,
        )
        store.create(key, fresh.secret_hash)
        return {**_info(key), "key": fresh.plaintext}

    def revoke(self, user_id: str, key_id: str) -> dict[str, Any]:
        if not self._store().revoke(user_id, key_id):
            raise NotFoundError("no such ingest key")
        return {"key_id": key_id, "revoked": True}

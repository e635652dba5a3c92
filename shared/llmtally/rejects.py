"""Refused usage messages, as a domain: why a message can never be ingested, and what is kept of it.

The ingest decides (`llmtally.ingest`), the repository stores (`llmtally.repositories.rejects`),
operators read them (API, `llmtally rejects`); all three import these types from here, so the
repository never imports the service that uses it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

#: The most of an original body a reject keeps, redacted (its full size is recorded beside it).
MAX_STORED_BODY_BYTES: Final = 16 * 1024


class RejectReason(StrEnum):
    """Why a message can never be ingested. Stable codes: dashboards and alarms key on them."""

    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_ENVELOPE = "bad_envelope"
    WRONG_SOURCE = "wrong_source"
    WRONG_DETAIL_TYPE = "wrong_detail_type"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    CONTRACT_VIOLATION = "contract_violation"


class RejectRecord(BaseModel):
    """One refused message, as an operator sees it."""

    model_config = ConfigDict(frozen=True)

    reason: RejectReason
    message: str
    body: str
    body_bytes: int
    body_truncated: bool
    message_id: str
    received_at: datetime
    user_id: str | None = None
    event_id: str | None = None

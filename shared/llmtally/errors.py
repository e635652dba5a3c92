"""The library's error hierarchy: raised by domain code, mapped to HTTP or a reject reason in one place."""

from __future__ import annotations


class LLMTallyError(Exception):
    """Base of every error llmtally raises on purpose."""


class ConfigurationError(LLMTallyError):
    """Settings or a data file (price overrides, …) are invalid."""


class InvalidEventError(LLMTallyError):
    """A usage event broke the contract; `reason` is safe to record and show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownModelError(LLMTallyError, LookupError):
    """Neither the catalog nor an override has a price for this provider and model."""


class InvalidCursorError(LLMTallyError, ValueError):
    """A pagination cursor was tampered with, expired its query, or belongs to another tenant."""


class StorageError(LLMTallyError):
    """A storage call failed for a reason outside the caller's control (throttling, 5xx, network).

    Retrying may succeed: batch consumers report the record as a failure so the source redelivers it.
    """

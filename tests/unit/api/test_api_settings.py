"""The API's settings agree with what the code behind them accepts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmtally.api.config import ENTRIES_PAGE_MAX, ApiSettings
from llmtally.repositories.usage import MAX_PAGE_SIZE, UsageQuery, UsageRepository


def test_the_largest_entries_page_is_the_repositorys() -> None:
    # Given the usage repository's largest page
    # Then the API's setting accepts exactly up to it
    assert ENTRIES_PAGE_MAX == MAX_PAGE_SIZE
    assert ApiSettings(entries_max_limit=MAX_PAGE_SIZE).entries_max_limit == MAX_PAGE_SIZE
    with pytest.raises(ValidationError, match="entries_max_limit"):
        ApiSettings(entries_max_limit=MAX_PAGE_SIZE + 1)


def test_a_larger_page_from_the_environment_is_refused_at_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an operator raising the page size past what the repository reads
    monkeypatch.setenv("LLMTALLY_API_ENTRIES_MAX_LIMIT", "10000")
    # Then the settings refuse it when loaded (not a 500 on the first request that asks for it)
    with pytest.raises(ValidationError, match="entries_max_limit"):
        ApiSettings()


def test_the_default_page_may_not_exceed_the_largest() -> None:
    with pytest.raises(ValidationError, match="must not exceed entries_max_limit"):
        ApiSettings(entries_default_limit=200, entries_max_limit=100)
    assert ApiSettings(entries_default_limit=100, entries_max_limit=100).entries_default_limit == 100


def test_the_repository_refuses_only_past_its_largest_page() -> None:
    # Given a repository with no client: a refused size fails before any call
    repository = UsageRepository(client=object(), table_name="t")
    with pytest.raises(ValueError, match="limit must be between"):
        repository.query_entries(UsageQuery(user_id="alice"), limit=MAX_PAGE_SIZE + 1)

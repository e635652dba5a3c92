"""The API's repositories on moto: rate-limit counter atomicity, secrets lifecycle edge cases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import SecretStr

from llmtally.events import Provider
from tests.conftest import MotoServer

pytestmark = pytest.mark.integration

KEY = SecretStr("sk-proj-" + "Rep0Key" * 8)


def test_the_counter_never_lets_more_than_the_limit_through(stack: MotoServer) -> None:
    from llmtally.repositories.settings import SettingsRepository

    repo = SettingsRepository()

    def take(_: int) -> bool:
        return repo.take_rate_limit_token("u", "t", window_start=600, limit=3, expires_at=1800)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(take, range(12)))
    assert results.count(True) == 3
    # a later window resets; an older window (a late request) never does
    assert repo.take_rate_limit_token("u", "t", window_start=660, limit=3, expires_at=1800) is True
    assert repo.take_rate_limit_token("u", "t", window_start=600, limit=3, expires_at=1800) is False


def test_counter_items_carry_the_ttl_attribute(stack: MotoServer) -> None:
    from llmtally.repositories.settings import SettingsRepository
    from llmtally.tables import TTL_ATTRIBUTE

    SettingsRepository().take_rate_limit_token("u", "t", window_start=60, limit=3, expires_at=180)
    client: Any = stack.client("dynamodb")
    item = client.get_item(
        TableName="mantissa-log-user-settings",
        Key={"user_id": {"S": "u"}, "setting_type": {"S": "rate_limit#t"}},
    )["Item"]
    assert item[TTL_ATTRIBUTE] == {"N": "180"}
    assert item["count"] == {"N": "1"}


def test_a_secret_scheduled_for_deletion_is_absent_then_restored_by_a_new_key(stack: MotoServer) -> None:
    from llmtally.repositories.secrets import SecretsRepository

    repo = SecretsRepository()
    repo.put_key("u", Provider.OPENAI, KEY)
    client: Any = stack.client("secretsmanager")
    # Someone deletes it by hand with a recovery window
    client.delete_secret(SecretId="mantissa-log/users/u/llm/openai", RecoveryWindowInDays=7)
    assert repo.has_key("u", Provider.OPENAI) is False
    assert repo.get_key("u", Provider.OPENAI) is None
    # Storing a new key brings it back with the new value
    new = SecretStr(KEY.get_secret_value() + "9")
    repo.put_key("u", Provider.OPENAI, new)
    assert repo.has_key("u", Provider.OPENAI) is True
    assert repo.get_key("u", Provider.OPENAI) == new


def test_a_user_id_that_could_escape_the_prefix_is_refused(stack: MotoServer) -> None:
    from llmtally.repositories.secrets import SecretsRepository

    repo = SecretsRepository()
    for user in ("../admin", "a/../b", "a..b", "", "a/b"):
        with pytest.raises(ValueError, match="invalid user id"):
            repo.put_key(user, Provider.OPENAI, KEY)


def test_storage_failures_become_storage_errors_without_the_value(stack: MotoServer) -> None:
    from llmtally.errors import StorageError
    from llmtally.repositories.settings import SettingsRepository

    client: Any = stack.client("dynamodb")
    client.delete_table(TableName="mantissa-log-user-settings")
    with pytest.raises(StorageError, match="ResourceNotFoundException"):
        SettingsRepository().get_preferences("u")


def test_a_missing_table_is_a_503(stack: MotoServer) -> None:
    from tests.support.apigw import request

    client: Any = stack.client("dynamodb")
    client.delete_table(TableName="mantissa-log-user-settings")
    response = request("GET", "/api/llm-settings/u", claims={"sub": "u"})
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"error": "a backing store is unavailable; retry shortly"}

"""Settings (BYOK) routes on moto: the seed's shapes, keys in Secrets Manager, never echoed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import MotoServer
from tests.integration.api.conftest import ALICE, Api
from tests.support.apigw import request

pytestmark = pytest.mark.integration

ANTHROPIC_KEY = "sk-ant-api03-" + "A1b2C3d4" * 10
OPENAI_KEY = "sk-proj-" + "Z9y8X7w6" * 8
GOOGLE_KEY = "AIzaSy" + "Q1w2E3r4T5" * 3 + "abc"

# The seed's documented PUT body (docs/features/llm-configuration.md), keys aside.
SEED_PREFERENCES = {
    "defaultProvider": "anthropic",
    "queryModel": "claude-3-5-sonnet-20241022",
    "detectionModel": "claude-3-5-sonnet-20241022",
    "maxTokens": 2000,
    "temperature": 0.0,
}


def _secret_value(moto: MotoServer, name: str) -> str:
    client: Any = moto.client("secretsmanager")
    return str(client.get_secret_value(SecretId=name)["SecretString"])


def test_a_new_user_gets_the_defaults_and_no_keys(stack: MotoServer, as_alice: Api) -> None:
    # Given a user who never saved anything
    # When they read their settings
    response = as_alice("GET", f"/api/llm-settings/{ALICE}")
    # Then it is the seed's shape: preferences with every field, and a boolean per provider
    assert response.status == 200
    body = response.json()
    assert set(body) == {"preferences", "hasApiKeys"}
    assert set(body["preferences"]) == {
        "defaultProvider",
        "queryModel",
        "detectionModel",
        "maxTokens",
        "temperature",
        "enableCaching",
        "trackUsage",
    }
    assert body["preferences"]["defaultProvider"] == "bedrock"
    assert body["preferences"]["maxTokens"] == 2000
    assert body["preferences"]["enableCaching"] is False  # the response cache is opt-in
    assert body["hasApiKeys"] == {"anthropic": False, "openai": False, "google": False, "bedrock": True}


def test_the_seed_example_request_stores_preferences_and_key(stack: MotoServer, as_alice: Api) -> None:
    # Given the seed's example PUT body with an Anthropic key
    body = {"preferences": SEED_PREFERENCES, "apiKeys": {"anthropic": ANTHROPIC_KEY}}
    # When it is sent
    response = as_alice("PUT", f"/api/llm-settings/{ALICE}", body=body)
    # Then the seed's response (message + preferences), hasApiKeys, and never the key
    assert response.status == 200, response.text
    answer = response.json()
    assert answer["message"] == "Settings updated successfully"
    # The response cache is opt-in: a body without enableCaching leaves it off.
    assert answer["preferences"] == {**SEED_PREFERENCES, "enableCaching": False, "trackUsage": True}
    assert answer["hasApiKeys"]["anthropic"] is True
    assert ANTHROPIC_KEY not in response.text
    assert ANTHROPIC_KEY[-6:] not in response.text
    # And a later GET returns what was saved
    again = as_alice("GET", f"/api/llm-settings/{ALICE}").json()
    assert again["preferences"]["queryModel"] == "claude-3-5-sonnet-20241022"
    assert again["hasApiKeys"] == {"anthropic": True, "openai": False, "google": False, "bedrock": True}


def test_the_preferences_item_keeps_the_seed_shape(stack: MotoServer, as_alice: Api) -> None:
    as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"preferences": {**SEED_PREFERENCES, "temperature": 0.7}})
    client: Any = stack.client("dynamodb")
    item = client.get_item(
        TableName="mantissa-log-user-settings",
        Key={"user_id": {"S": ALICE}, "setting_type": {"S": "llm_preferences"}},
    )["Item"]
    assert set(item) == {"user_id", "setting_type", "preferences", "updated_at"}
    prefs = item["preferences"]["M"]
    assert prefs["defaultProvider"] == {"S": "anthropic"}
    assert prefs["maxTokens"] == {"N": "2000"}
    assert Decimal(prefs["temperature"]["N"]) == Decimal("0.7")
    assert prefs["enableCaching"] == {"BOOL": False}
    assert item["updated_at"]["S"].endswith("Z")


def test_secrets_follow_the_naming_convention(stack: MotoServer, as_alice: Api) -> None:
    # When keys for the three keyed providers are stored
    keys = {"anthropic": ANTHROPIC_KEY, "openai": OPENAI_KEY, "google": GOOGLE_KEY}
    assert as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"apiKeys": keys}).status == 200
    # Then each is one secret named {prefix}/users/{userId}/llm/{provider}, holding the raw key
    client: Any = stack.client("secretsmanager")
    names = sorted(s["Name"] for s in client.list_secrets()["SecretList"])
    assert names == [f"mantissa-log/users/{ALICE}/llm/{p}" for p in ("anthropic", "google", "openai")]
    for provider, key in keys.items():
        assert _secret_value(stack, f"mantissa-log/users/{ALICE}/llm/{provider}") == key


def test_the_prefix_is_configurable(stack: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_PREFIX", "acme-llm")
    from llmtally.aws import reset_clients
    from llmtally.settings import get_settings
    from llmtally.tables import create_tables

    reset_clients()
    create_tables(stack.client("dynamodb"), get_settings().names)
    response = request(
        "PUT", f"/api/llm-settings/{ALICE}", claims={"sub": ALICE}, body={"apiKeys": {"openai": OPENAI_KEY}}
    )
    assert response.status == 200, response.text
    assert _secret_value(stack, f"acme-llm/users/{ALICE}/llm/openai") == OPENAI_KEY


def test_keys_are_encrypted_with_the_configured_kms_key(stack: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    kms: Any = stack.client("kms")
    key_id = kms.create_key(Description="llmtally user secrets")["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("LLMTALLY_SECRETS_KMS_KEY_ID", key_id)
    from llmtally.aws import reset_clients

    reset_clients()
    claims = {"sub": ALICE}
    request("PUT", f"/api/llm-settings/{ALICE}", claims=claims, body={"apiKeys": {"anthropic": ANTHROPIC_KEY}})
    client: Any = stack.client("secretsmanager")
    name = f"mantissa-log/users/{ALICE}/llm/anthropic"
    assert client.describe_secret(SecretId=name)["KmsKeyId"] == key_id
    # A replacement is a new version, still under the configured key
    request("PUT", f"/api/llm-settings/{ALICE}", claims=claims, body={"apiKeys": {"anthropic": ANTHROPIC_KEY + "x"}})
    described = client.describe_secret(SecretId=name)
    assert described["KmsKeyId"] == key_id
    assert len(described["VersionIdsToStages"]) == 2


def test_has_api_keys_follows_store_replace_and_delete(stack: MotoServer, as_alice: Api) -> None:
    path = f"/api/llm-settings/{ALICE}"

    def has() -> dict[str, bool]:
        flags: dict[str, bool] = as_alice("GET", path).json()["hasApiKeys"]
        return flags

    assert has() == {"anthropic": False, "openai": False, "google": False, "bedrock": True}
    # store
    as_alice("PUT", path, body={"apiKeys": {"openai": OPENAI_KEY}})
    assert has()["openai"] is True
    # replace: still one secret, a new value
    as_alice("PUT", path, body={"apiKeys": {"openai": OPENAI_KEY + "2"}})
    assert has()["openai"] is True
    assert _secret_value(stack, f"mantissa-log/users/{ALICE}/llm/openai") == OPENAI_KEY + "2"
    # delete
    deleted = as_alice("DELETE", f"{path}/keys/openai")
    assert deleted.status == 200
    assert deleted.json() == {
        "provider": "openai",
        "deleted": True,
        "hasApiKeys": {"anthropic": False, "openai": False, "google": False, "bedrock": True},
    }
    assert has()["openai"] is False
    # deleting again is idempotent
    assert as_alice("DELETE", f"{path}/keys/openai").json()["deleted"] is False
    # and storing after a delete works at once (no recovery window blocks the name)
    as_alice("PUT", path, body={"apiKeys": {"openai": OPENAI_KEY}})
    assert has()["openai"] is True


def test_the_secret_is_gone_after_delete(stack: MotoServer, as_alice: Api) -> None:
    as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"apiKeys": {"google": GOOGLE_KEY}})
    as_alice("DELETE", f"/api/llm-settings/{ALICE}/keys/google")
    client: Any = stack.client("secretsmanager")
    assert client.list_secrets(IncludePlannedDeletion=True)["SecretList"] == []


def test_bedrock_has_no_key_to_delete(stack: MotoServer, as_alice: Api) -> None:
    response = as_alice("DELETE", f"/api/llm-settings/{ALICE}/keys/bedrock")
    assert response.status == 400
    assert "AWS credentials" in response.json()["error"]


def test_bedrock_availability_is_configuration(stack: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_API_BEDROCK_AVAILABLE", "false")
    response = request("GET", f"/api/llm-settings/{ALICE}", claims={"sub": ALICE})
    assert response.json()["hasApiKeys"]["bedrock"] is False


def test_a_key_without_preferences_still_reads_correctly(stack: MotoServer, as_alice: Api) -> None:
    # Given a key stored but preferences never saved
    as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"apiKeys": {"anthropic": ANTHROPIC_KEY}})
    # Then GET gives the defaults and the key's flag
    body = as_alice("GET", f"/api/llm-settings/{ALICE}").json()
    assert body["preferences"]["defaultProvider"] == "bedrock"
    assert body["hasApiKeys"]["anthropic"] is True


def test_saving_preferences_keeps_stored_keys(stack: MotoServer, as_alice: Api) -> None:
    as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"apiKeys": {"anthropic": ANTHROPIC_KEY}})
    as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"preferences": SEED_PREFERENCES})
    assert as_alice("GET", f"/api/llm-settings/{ALICE}").json()["hasApiKeys"]["anthropic"] is True


def test_keys_are_trimmed_of_surrounding_whitespace(stack: MotoServer, as_alice: Api) -> None:
    as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"apiKeys": {"openai": f"  {OPENAI_KEY}\n"}})
    assert _secret_value(stack, f"mantissa-log/users/{ALICE}/llm/openai") == OPENAI_KEY


def test_has_api_keys_never_reads_a_secret_value(stack: MotoServer, as_alice: Api) -> None:
    # Given a stored key, and a recorder on every Secrets Manager call the API makes
    as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"apiKeys": {"anthropic": ANTHROPIC_KEY}})
    from llmtally.aws import client

    operations: list[str] = []
    sm = client("secretsmanager")
    sm.meta.events.register("before-call.secrets-manager.*", lambda model, **_: operations.append(model.name))
    # When the settings are read, stored, and a key deleted
    as_alice("GET", f"/api/llm-settings/{ALICE}")
    as_alice("PUT", f"/api/llm-settings/{ALICE}", body={"apiKeys": {"openai": OPENAI_KEY}})
    as_alice("DELETE", f"/api/llm-settings/{ALICE}/keys/openai")
    # Then no call read a secret's value
    assert operations
    assert "GetSecretValue" not in operations
    assert set(operations) <= {"DescribeSecret", "UpdateSecret", "CreateSecret", "DeleteSecret"}


def test_api_key_storage(stack: MotoServer, as_alice: Api) -> None:
    """The seed's backend test, in spirit: store a key, the adapters can read it, existence is known."""
    from llmtally.events import Provider
    from llmtally.repositories.secrets import SecretsRepository

    # Store the API key (through the API, as the dashboard does)
    assert as_alice("PUT", "/api/llm-settings/user-123", body={"apiKeys": {"anthropic": ANTHROPIC_KEY}}).status == 403
    admin = {"sub": "ops", "cognito:groups": "llmtally-admin"}
    stored = request("PUT", "/api/llm-settings/user-123", claims=admin, body={"apiKeys": {"anthropic": ANTHROPIC_KEY}})
    assert stored.status == 200
    repo = SecretsRepository()
    # Can retrieve (provider adapters only; the API never returns it)
    key = repo.get_key("user-123", Provider.ANTHROPIC)
    assert key is not None
    assert key.get_secret_value() == ANTHROPIC_KEY
    # Can check existence
    assert repo.has_key("user-123", Provider.ANTHROPIC) is True
    assert repo.has_key("user-123", Provider.OPENAI) is False


def test_preferences_are_replaced_whole(stack: MotoServer, as_alice: Api) -> None:
    path = f"/api/llm-settings/{ALICE}"
    as_alice("PUT", path, body={"preferences": {**SEED_PREFERENCES, "enableCaching": True}})
    as_alice("PUT", path, body={"preferences": SEED_PREFERENCES})
    assert as_alice("GET", path).json()["preferences"]["enableCaching"] is False


def test_openai_accepts_a_higher_temperature_than_anthropic(stack: MotoServer, as_alice: Api) -> None:
    path = f"/api/llm-settings/{ALICE}"
    openai = {"defaultProvider": "openai", "queryModel": "gpt-4o", "detectionModel": "gpt-4.1", "temperature": 1.5}
    assert as_alice("PUT", path, body={"preferences": openai}).status == 200
    anthropic = {**SEED_PREFERENCES, "temperature": 1.5}
    response = as_alice("PUT", path, body={"preferences": anthropic})
    assert response.status == 400
    assert "temperature" in response.json()["error"]

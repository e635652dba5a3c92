"""Users' provider keys in Secrets Manager: one secret per user and provider, KMS-encrypted.

Name: `{prefix}/users/{user_id}/llm/{provider}` (`ResourceNames.secret_name`, which refuses a user
id that could escape the prefix); a user's Slack webhook URL for budget alerts is a secret of the
same kind, `{prefix}/users/{user_id}/alerts/slack-webhook`, with the same lifecycle (read only by
the alert notifier). A key is written (create, or a new version of the existing secret), checked
for existence (DescribeSecret: the value is never read to answer `hasApiKeys`), read only by the
connection test and the provider adapters, and deleted.

Deletion is immediate (`ForceDeleteWithoutRecovery`): the key is the user's own credential, which
they still hold at the provider, so a recovery window would protect nothing and would leave the
name "scheduled for deletion" — during which AWS refuses to create or update it, so the user could
not store a new key. A secret found in that state anyway (deleted by hand with a window) is
restored and overwritten when a new key is stored, and counts as absent for `hasApiKeys`.

Why DescribeSecret per provider rather than one ListSecrets by prefix: ListSecrets is eventually
consistent (AWS documents that it may not reflect changes of the last few minutes), and
`hasApiKeys` must be right immediately after a store or a delete.

boto3 logs request and response bodies at DEBUG, which would include SecretString: the repository
raises the `botocore` logger to INFO (unless it is already higher) when it is built.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import SecretStr

from llmtally.errors import StorageError
from llmtally.events import Provider
from llmtally.settings import Settings, get_settings


def quiet_botocore() -> None:
    """Never let botocore's DEBUG wire logs (which carry SecretString) reach a handler."""
    botocore_logger = logging.getLogger("botocore")
    if botocore_logger.level == logging.NOTSET or botocore_logger.level < logging.INFO:
        botocore_logger.setLevel(logging.INFO)


class SecretsRepository:
    def __init__(self, client: Any | None = None, settings: Settings | None = None) -> None:
        from llmtally import aws

        quiet_botocore()
        self._settings = settings or get_settings()
        self._client = client or aws.client("secretsmanager", self._settings)
        self._names = self._settings.names
        self._kms: dict[str, str] = (
            {"KmsKeyId": self._settings.secrets_kms_key_id} if self._settings.secrets_kms_key_id else {}
        )

    def secret_name(self, user_id: str, provider: Provider) -> str:
        return self._names.secret_name(user_id, provider)

    def put_key(self, user_id: str, provider: Provider, key: SecretStr) -> None:
        """Store `key` as the user's secret for `provider`: a new version, or a new secret."""
        self._put(
            self.secret_name(user_id, provider),
            key,
            description=f"llmtally: {provider.value} API key of one user",
            tags={"llmtally:user": user_id, "llmtally:provider": provider.value},
        )

    def has_key(self, user_id: str, provider: Provider) -> bool:
        """Whether a live secret exists (DescribeSecret; never GetSecretValue)."""
        return self._exists(self.secret_name(user_id, provider))

    def has_keys(self, user_id: str, providers: Iterable[Provider]) -> dict[Provider, bool]:
        return {provider: self.has_key(user_id, provider) for provider in providers}

    def delete_key(self, user_id: str, provider: Provider) -> bool:
        """Delete the secret now, without a recovery window; False if there was none."""
        return self._delete(self.secret_name(user_id, provider))

    def get_key(self, user_id: str, provider: Provider) -> SecretStr | None:
        """The stored key, for the connection test and the provider adapters only — never for a response."""
        return self._get(self.secret_name(user_id, provider))

    # -- Slack webhooks (budget alerts) ----------------------------------------------------------

    def slack_webhook_secret_name(self, user_id: str) -> str:
        return self._names.slack_webhook_secret_name(user_id)

    def put_slack_webhook(self, user_id: str, url: SecretStr) -> None:
        """Store the user's Slack incoming-webhook URL (check it first: `llmtally.notify.check_slack_webhook_url`).

        The URL is a bearer credential — whoever holds it can post to the channel — so it is a
        secret like a provider key: written, checked for existence, deleted; only the notifier reads it.
        """
        self._put(
            self.slack_webhook_secret_name(user_id),
            url,
            description="llmtally: Slack incoming-webhook URL for one user's budget alerts",
            tags={"llmtally:user": user_id, "llmtally:kind": "slack-webhook"},
        )

    def has_slack_webhook(self, user_id: str) -> bool:
        """Whether a live webhook secret exists (DescribeSecret; never GetSecretValue)."""
        return self._exists(self.slack_webhook_secret_name(user_id))

    def delete_slack_webhook(self, user_id: str) -> bool:
        """Delete the webhook secret now; False if there was none."""
        return self._delete(self.slack_webhook_secret_name(user_id))

    def get_slack_webhook(self, user_id: str) -> SecretStr | None:
        """The stored webhook URL, for the alert notifier only — never for a response or a log."""
        return self._get(self.slack_webhook_secret_name(user_id))

    # -- helpers ---------------------------------------------------------------------------

    def _put(self, name: str, value: SecretStr, *, description: str, tags: dict[str, str]) -> None:
        """A new version of secret `name`, or a new secret (restored first if scheduled for deletion)."""
        errors = self._client.exceptions
        try:
            self._update(name, value)
            return
        except errors.ResourceNotFoundException:
            pass
        except errors.InvalidRequestException:
            self._restore_and_update(name, value)
            return
        except Exception as exc:
            raise _storage_error("UpdateSecret", exc) from exc
        try:
            self._client.create_secret(
                Name=name,
                SecretString=value.get_secret_value(),
                Description=description,
                Tags=[{"Key": key, "Value": tag} for key, tag in tags.items()],
                **self._kms,
            )
        except errors.ResourceExistsException:
            # Created concurrently by another request: write ours as the new version.
            self._call_update(name, value)
        except errors.InvalidRequestException:
            self._restore_and_update(name, value)
        except Exception as exc:
            raise _storage_error("CreateSecret", exc) from exc

    def _exists(self, name: str) -> bool:
        try:
            described = self._client.describe_secret(SecretId=name)
        except self._client.exceptions.ResourceNotFoundException:
            return False
        except Exception as exc:
            raise _storage_error("DescribeSecret", exc) from exc
        return described.get("DeletedDate") is None

    def _delete(self, name: str) -> bool:
        if not self._exists(name):
            return False
        try:
            self._client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except self._client.exceptions.ResourceNotFoundException:
            return False
        except Exception as exc:
            raise _storage_error("DeleteSecret", exc) from exc
        return True

    def _get(self, name: str) -> SecretStr | None:
        try:
            response = self._client.get_secret_value(SecretId=name)
        except self._client.exceptions.ResourceNotFoundException:
            return None
        except self._client.exceptions.InvalidRequestException:
            return None  # scheduled for deletion: as good as gone
        except Exception as exc:
            raise _storage_error("GetSecretValue", exc) from exc
        value = response.get("SecretString")
        return SecretStr(value) if isinstance(value, str) and value else None

    def _update(self, name: str, key: SecretStr) -> None:
        self._client.update_secret(SecretId=name, SecretString=key.get_secret_value(), **self._kms)

    def _call_update(self, name: str, key: SecretStr) -> None:
        try:
            self._update(name, key)
        except Exception as exc:
            raise _storage_error("UpdateSecret", exc) from exc

    def _restore_and_update(self, name: str, key: SecretStr) -> None:
        try:
            self._client.restore_secret(SecretId=name)
        except Exception as exc:
            raise _storage_error("RestoreSecret", exc) from exc
        self._call_update(name, key)


def _storage_error(operation: str, exc: Exception) -> StorageError:
    # Only the error code: a message could name the secret's ARN; no message ever holds the value.
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return StorageError(f"Secrets Manager {operation} failed: {code}")

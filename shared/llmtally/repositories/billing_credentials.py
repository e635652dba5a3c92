"""Tenants' provider admin keys (reconciliation against the bill), in Secrets Manager like provider keys.

Name: `{prefix}/users/{user_id}/billing/{provider}` (`ResourceNames.billing_secret_name`), KMS-encrypted
with the provider keys' key, the same lifecycle as a provider key (`SecretsRepository`): written,
checked for existence (DescribeSecret, never GetSecretValue), read only by the reconciliation job,
deleted at once. Never returned by the API, never logged.

Why per tenant: llmtally is BYOK — each tenant's calls run on the tenant's own provider organization,
and the bill to reconcile is that organization's. An admin key reads the whole organization's usage
and costs, so it belongs to the tenant that owns the organization (docs/reconciliation.md).

`configured()` lists the tenants with a stored admin key (ListSecrets by name prefix: eventually
consistent, which a daily job does not mind).
"""

from __future__ import annotations

from typing import Final

from pydantic import SecretStr

from llmtally.errors import StorageError
from llmtally.events import Provider
from llmtally.repositories.secrets import SecretsRepository, _storage_error

#: Providers with an admin API llmtally reads (Bedrock is read from Cost Explorer with the
#: deployment's role; Gemini has no usage API — see docs/reconciliation.md).
ADMIN_KEY_PROVIDERS: Final = (Provider.OPENAI, Provider.ANTHROPIC)


class BillingCredentialsRepository(SecretsRepository):
    def billing_secret_name(self, user_id: str, provider: Provider) -> str:
        return self._names.billing_secret_name(user_id, provider)

    def put_admin_key(self, user_id: str, provider: Provider, key: SecretStr) -> None:
        self._put(
            self.billing_secret_name(user_id, provider),
            key,
            description=f"llmtally: {provider.value} admin key of one user (billing reconciliation)",
            tags={"llmtally:user": user_id, "llmtally:provider": provider.value, "llmtally:kind": "admin-key"},
        )

    def has_admin_key(self, user_id: str, provider: Provider) -> bool:
        return self._exists(self.billing_secret_name(user_id, provider))

    def delete_admin_key(self, user_id: str, provider: Provider) -> bool:
        return self._delete(self.billing_secret_name(user_id, provider))

    def get_admin_key(self, user_id: str, provider: Provider) -> SecretStr | None:
        """The stored admin key, for the reconciliation job only — never for a response or a log."""
        return self._get(self.billing_secret_name(user_id, provider))

    def configured(self) -> dict[str, set[Provider]]:
        """Every tenant with at least one live admin key, and for which providers."""
        prefix = self._names.secrets_prefix
        found: dict[str, set[Provider]] = {}
        try:
            paginator = self._client.get_paginator("list_secrets")
            pages = paginator.paginate(Filters=[{"Key": "name", "Values": [prefix]}])
            for page in pages:
                for secret in page.get("SecretList", []):
                    name = str(secret.get("Name", ""))
                    if not name.startswith(prefix) or secret.get("DeletedDate") is not None:
                        continue
                    parts = name[len(prefix) :].split("/")
                    if len(parts) != 3 or parts[1] != "billing":
                        continue
                    try:
                        provider = Provider(parts[2])
                    except ValueError:
                        continue
                    if provider in ADMIN_KEY_PROVIDERS:
                        found.setdefault(parts[0], set()).add(provider)
        except StorageError:
            raise
        except Exception as exc:
            raise _storage_error("ListSecrets", exc) from exc
        return found

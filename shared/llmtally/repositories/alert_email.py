"""Users' alert e-mail addresses: an SNS e-mail subscription each, filtered to the user's own alerts.

The deployment's user-alerts topic (`Settings.user_alerts_topic_arn`) carries every budget alert
as its e-mail text, published by the notifier with the message attribute `user_id`. Each user who
gives an address gets one e-mail subscription on it whose filter policy is
`{"user_id": ["<their id>"]}` (scope: message attributes), so SNS hands them their own alerts
and nobody else's. SNS e-mails the address a confirmation link first; nothing is delivered until
it is followed (a subscription left unconfirmed is dropped by SNS after three days).

Item (settings table, partition `user_id`, sort `setting_type` = `alert_email`): `address`,
`subscription_arn`, `subscribed_at`. The address is personal data: never logged whole
(`masked_address`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from llmtally.errors import LLMTallyError, StorageError
from llmtally.events import format_timestamp
from llmtally.repositories.settings import SettingsRepository
from llmtally.settings import Settings

ALERT_EMAIL: Final = "alert_email"
#: The message attribute the notifier sets and each subscription's filter policy matches.
USER_ATTRIBUTE: Final = "user_id"
MAX_ADDRESS_LENGTH: Final = 254
#: A pragmatic address check (one @, a dotted domain, no spaces or angle brackets); SNS and the
#: confirmation e-mail are the real proof.
_ADDRESS: Final = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)

SubscriptionStatus = Literal["pending_confirmation", "confirmed", "unknown"]


class AlertEmailNotConfiguredError(LLMTallyError):
    """This deployment has no user-alerts topic (`LLMTALLY_USER_ALERTS_TOPIC_ARN`)."""


def check_address(address: str) -> str:
    """The address, trimmed; ValueError (naming the rule, not repeating the address) otherwise."""
    text = address.strip() if isinstance(address, str) else ""
    if not text or len(text) > MAX_ADDRESS_LENGTH or not _ADDRESS.fullmatch(text):
        raise ValueError("alertEmail must be one e-mail address, like ops@example.com")
    return text


def masked_address(address: str) -> str:
    """`o***@example.com`: enough to recognise in a log line, not the address."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def filter_policy(user_id: str) -> str:
    return json.dumps({USER_ATTRIBUTE: [user_id]}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class AlertEmail:
    address: str
    subscription_arn: str
    subscribed_at: datetime


class AlertEmailRepository(SettingsRepository):
    """The `alert_email` item and its SNS subscription (the API subscribes, the notifier reads)."""

    def __init__(self, client: Any | None = None, settings: Settings | None = None, sns: Any | None = None) -> None:
        super().__init__(client, settings)
        self._sns = sns

    @property
    def topic_arn(self) -> str:
        arn = self._settings.user_alerts_topic_arn
        if not arn:
            raise AlertEmailNotConfiguredError("alert e-mails are not set up on this deployment (no user-alerts topic)")
        return arn

    @property
    def sns(self) -> Any:
        if self._sns is None:
            from llmtally import aws

            self._sns = aws.client("sns", self._settings)
        return self._sns

    def get(self, user_id: str) -> AlertEmail | None:
        item = self._get(user_id, ALERT_EMAIL)
        if item is None:
            return None
        return AlertEmail(
            address=str(item["address"]),
            subscription_arn=str(item["subscription_arn"]),
            subscribed_at=datetime.fromisoformat(str(item["subscribed_at"]).replace("Z", "+00:00")),
        )

    def subscribe(self, user_id: str, address: str, *, now: datetime | None = None) -> AlertEmail:
        """Subscribe `address` to the user's alerts (SNS sends it a confirmation e-mail).

        Replaces a different address (its subscription removed). The same address again asks SNS
        again, which re-sends the confirmation while it is pending.
        """
        address = check_address(address)
        existing = self.get(user_id)
        if existing is not None and existing.address.lower() != address.lower():
            self._unsubscribe(existing.subscription_arn)
        with _sns_errors("subscribe"):
            arn = self.sns.subscribe(
                TopicArn=self.topic_arn,
                Protocol="email",
                Endpoint=address,
                Attributes={"FilterPolicy": filter_policy(user_id), "FilterPolicyScope": "MessageAttributes"},
                ReturnSubscriptionArn=True,
            )["SubscriptionArn"]
        stored = AlertEmail(address, str(arn), now or datetime.now(UTC))
        self._call(
            "put_item",
            TableName=self._table,
            Item=self._serialize(
                {
                    "user_id": user_id,
                    "setting_type": ALERT_EMAIL,
                    "address": stored.address,
                    "subscription_arn": stored.subscription_arn,
                    "subscribed_at": format_timestamp(stored.subscribed_at),
                }
            ),
        )
        return stored

    def status(self, email: AlertEmail) -> SubscriptionStatus:
        """Whether the address followed SNS's confirmation link yet."""
        try:
            with _sns_errors("get_subscription_attributes"):
                attributes = self.sns.get_subscription_attributes(SubscriptionArn=email.subscription_arn)
        except StorageError:
            return "unknown"
        pending = str(attributes.get("Attributes", {}).get("PendingConfirmation", "false")).lower() == "true"
        return "pending_confirmation" if pending else "confirmed"

    def remove(self, user_id: str) -> bool:
        existing = self.get(user_id)
        if existing is None:
            return False
        self._unsubscribe(existing.subscription_arn)
        self._call(
            "delete_item", TableName=self._table, Key=self._serialize({"user_id": user_id, "setting_type": ALERT_EMAIL})
        )
        return True

    def publish(self, user_id: str, subject: str, text: str) -> None:
        """One alert's e-mail onto the topic, with the `user_id` attribute the user's filter matches."""
        with _sns_errors("publish"):
            self.sns.publish(
                TopicArn=self.topic_arn,
                Subject=subject[:100],
                Message=text,
                MessageAttributes={USER_ATTRIBUTE: {"DataType": "String", "StringValue": user_id}},
            )

    def _unsubscribe(self, arn: str) -> None:
        if not arn.startswith("arn:"):
            return  # "pending confirmation" (older APIs): nothing to remove; SNS drops it after 3 days
        try:
            with _sns_errors("unsubscribe"):
                self.sns.unsubscribe(SubscriptionArn=arn)
        except StorageError as exc:
            if "NotFound" not in str(exc):
                raise


@contextmanager
def _sns_errors(operation: str) -> Iterator[None]:
    """SNS failures as `StorageError` with the error code only (a message could echo the address)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise StorageError(f"sns {operation} failed: {exc.response['Error'].get('Code')}") from None
    except BotoCoreError as exc:
        raise StorageError(f"sns {operation} failed: {type(exc).__name__}") from None

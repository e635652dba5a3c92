"""What AWS authorizes for each API call: the IAM action(s), the resource ARN, the condition keys.

`requirements(call, names)` turns one recorded request (`tests.iam.server` log line) into the
(action, resource, context) triples AWS would check — one per item for transactions and batches,
the KMS use Secrets Manager makes on the caller's behalf for a customer-managed key, the
`events:source`/`events:detail-type` of each PutEvents entry, the top-level attributes a DynamoDB
write names (`dynamodb:Attributes`). `OPERATIONS` is the map from each boto3 client method the
code uses to its IAM action; `tests/iam/test_static.py` checks that every method the repositories
and the publisher call is in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: (service, operation) → the IAM action AWS checks. Transactions and batch writes are expanded per
#: item in `requirements`; `None` marks an operation with no IAM action of its own.
OPERATIONS: dict[tuple[str, str], str | None] = {
    ("dynamodb", "GetItem"): "dynamodb:GetItem",
    ("dynamodb", "PutItem"): "dynamodb:PutItem",
    ("dynamodb", "UpdateItem"): "dynamodb:UpdateItem",
    ("dynamodb", "DeleteItem"): "dynamodb:DeleteItem",
    ("dynamodb", "Query"): "dynamodb:Query",
    ("dynamodb", "Scan"): "dynamodb:Scan",
    ("dynamodb", "BatchGetItem"): "dynamodb:BatchGetItem",
    ("dynamodb", "BatchWriteItem"): "dynamodb:BatchWriteItem",
    ("dynamodb", "DescribeTable"): "dynamodb:DescribeTable",
    # Authorized per item (Put/Update/Delete/ConditionCheck → their own actions; Get → GetItem).
    ("dynamodb", "TransactWriteItems"): None,
    ("dynamodb", "TransactGetItems"): None,
    ("dynamodbstreams", "DescribeStream"): "dynamodb:DescribeStream",
    ("dynamodbstreams", "GetRecords"): "dynamodb:GetRecords",
    ("dynamodbstreams", "GetShardIterator"): "dynamodb:GetShardIterator",
    ("dynamodbstreams", "ListStreams"): "dynamodb:ListStreams",
    ("secretsmanager", "CreateSecret"): "secretsmanager:CreateSecret",
    ("secretsmanager", "UpdateSecret"): "secretsmanager:UpdateSecret",
    ("secretsmanager", "PutSecretValue"): "secretsmanager:PutSecretValue",
    ("secretsmanager", "DescribeSecret"): "secretsmanager:DescribeSecret",
    ("secretsmanager", "DeleteSecret"): "secretsmanager:DeleteSecret",
    ("secretsmanager", "RestoreSecret"): "secretsmanager:RestoreSecret",
    ("secretsmanager", "GetSecretValue"): "secretsmanager:GetSecretValue",
    ("secretsmanager", "TagResource"): "secretsmanager:TagResource",
    ("secretsmanager", "ListSecrets"): "secretsmanager:ListSecrets",
    ("events", "PutEvents"): "events:PutEvents",
    ("sqs", "SendMessage"): "sqs:SendMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "ReceiveMessage"): "sqs:ReceiveMessage",
    ("sqs", "DeleteMessage"): "sqs:DeleteMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibility"): "sqs:ChangeMessageVisibility",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sqs", "GetQueueAttributes"): "sqs:GetQueueAttributes",
    ("sqs", "GetQueueUrl"): "sqs:GetQueueUrl",
    ("kms", "Decrypt"): "kms:Decrypt",
    ("kms", "GenerateDataKey"): "kms:GenerateDataKey",
    ("ce", "GetCostAndUsage"): "ce:GetCostAndUsage",
    # Users' alert e-mails (llmtally.repositories.alert_email): see NOT_RUN in tests/iam/test_static.py.
    ("sns", "Subscribe"): "sns:Subscribe",
    ("sns", "Unsubscribe"): "sns:Unsubscribe",
    ("sns", "GetSubscriptionAttributes"): "sns:GetSubscriptionAttributes",
    ("sns", "Publish"): "sns:Publish",
    ("bedrock", "GetFoundationModel"): "bedrock:GetFoundationModel",
    ("bedrock", "GetInferenceProfile"): "bedrock:GetInferenceProfile",
    ("bedrock-runtime", "Converse"): "bedrock:InvokeModel",
    ("bedrock-runtime", "ConverseStream"): "bedrock:InvokeModelWithResponseStream",
}

#: IAM action → the API operations moto asks for under another name (see `runtime_document`).
ALIASES: dict[str, tuple[str, ...]] = {}
for (_service, _operation), _action in OPERATIONS.items():
    if _action is not None and _action.split(":", 1)[1] != _operation and _service != "bedrock-runtime":
        ALIASES.setdefault(_action, ())
        ALIASES[_action] += (f"{_action.split(':', 1)[0]}:{_operation}",)
for _action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"):
    ALIASES[_action] = (*ALIASES.get(_action, ()), "dynamodb:TransactWriteItems")
ALIASES["dynamodb:GetItem"] = (*ALIASES.get("dynamodb:GetItem", ()), "dynamodb:TransactGetItems")

_TARGET_SERVICES = {
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodbstreams",
    "secretsmanager": "secretsmanager",
    "AWSEvents": "events",
    "AmazonSQS": "sqs",
    "TrentService": "kms",
    "AWSInsightsIndexService": "ce",
}


@dataclass(frozen=True)
class Call:
    """One recorded request."""

    access_key: str
    service: str
    operation: str
    params: Mapping[str, Any]
    status: int
    error: str | None

    @classmethod
    def from_log(cls, entry: Mapping[str, Any]) -> Call:
        prefix, _, operation = str(entry["target"]).partition(".")
        service = _TARGET_SERVICES.get(prefix, str(entry["service"]))
        return cls(
            access_key=str(entry["access_key"]),
            service=service,
            operation=operation or str(entry["path"]),
            params=entry["body"] if isinstance(entry["body"], dict) else {},
            status=int(entry["status"]),
            error=entry.get("error"),
        )

    @property
    def denied(self) -> bool:
        return self.status in (400, 403) and bool(self.error) and "AccessDenied" in str(self.error)

    def __str__(self) -> str:
        return f"{self.service}.{self.operation}"


@dataclass(frozen=True)
class Requirement:
    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)
    #: Why (for messages): the call and, for derived needs, what derived it.
    origin: str = ""

    def __str__(self) -> str:
        extra = f" with {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{extra} ({self.origin})"


@dataclass
class Arns:
    """The emulator's ARNs by name (filled by `Emulator`)."""

    account: str
    region: str
    #: secret name → KMS key ARN it is encrypted with (from the CreateSecret calls seen, and provisioning).
    secret_keys: dict[str, str] = field(default_factory=dict)
    #: queue URL → queue ARN.
    queues: dict[str, str] = field(default_factory=dict)

    def table(self, name: str) -> str:
        if name.startswith("arn:"):
            return name
        return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{name}"

    def secret(self, secret_id: str) -> str:
        if secret_id.startswith("arn:"):
            return secret_id
        # AWS appends six random characters; any six match the policies' `-??????` and `*`.
        return f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{secret_id}-Ab12Cd"

    def secret_name(self, secret_id: str) -> str:
        if secret_id.startswith("arn:"):
            return re.sub(r"-[A-Za-z0-9]{6}$", "", secret_id.split(":secret:", 1)[1])
        return secret_id

    def bus(self, name: str | None) -> str:
        if name and name.startswith("arn:"):
            return name
        return f"arn:aws:events:{self.region}:{self.account}:event-bus/{name or 'default'}"

    def queue(self, url: str) -> str:
        if url in self.queues:
            return self.queues[url]
        return f"arn:aws:sqs:{self.region}:{self.account}:{url.rstrip('/').rsplit('/', 1)[-1]}"

    def key(self, key_id: str) -> str:
        if key_id.startswith("arn:"):
            return key_id
        return f"arn:aws:kms:{self.region}:{self.account}:key/{key_id}"


_KEYWORDS = {"SET", "ADD", "REMOVE", "DELETE", "AND", "OR", "NOT", "BETWEEN", "IN"}
_PATH = re.compile(r"(?<![:#\w])(#?[A-Za-z_][A-Za-z0-9_]*)(\s*\()?")


def expression_attributes(params: Mapping[str, Any], *expression_fields: str) -> set[str]:
    """Top-level attribute names an expression names (`#n` resolved; functions and keywords skipped)."""
    names = params.get("ExpressionAttributeNames") or {}
    found: set[str] = set()
    for field_name in expression_fields:
        text = str(params.get(field_name) or "")
        # Only the first element of a document path is top-level.
        text = re.sub(r"\.#?[A-Za-z_][A-Za-z0-9_]*|\[\d+\]", "", text)
        for match in _PATH.finditer(text):
            token, call = match.group(1), match.group(2)
            if call or token.upper() in _KEYWORDS:
                continue
            found.add(str(names.get(token, token)) if token.startswith("#") else token)
    return found


def _write_context(params: Mapping[str, Any]) -> dict[str, Any]:
    attributes = set(params.get("Key") or {}) | set(params.get("Item") or {})
    attributes |= expression_attributes(
        params, "UpdateExpression", "ConditionExpression", "ProjectionExpression", "KeyConditionExpression"
    )
    context: dict[str, Any] = {"dynamodb:Attributes": sorted(attributes)}
    if params.get("ReturnValues"):
        context["dynamodb:ReturnValues"] = params["ReturnValues"]
    return context


def requirements(call: Call, arns: Arns) -> list[Requirement]:
    """What AWS checks for `call` (raises for an operation missing from `OPERATIONS`)."""
    p, origin = call.params, str(call)
    key = (call.service, call.operation)
    if key not in OPERATIONS:
        raise AssertionError(f"{origin}: no IAM mapping in tests/iam/actions.py OPERATIONS")
    if call.service == "dynamodb":
        return _dynamodb(call, arns)
    action = OPERATIONS[key]
    assert action is not None
    if call.service == "dynamodbstreams":
        # A shard iterator starts with its stream's ARN (`{stream arn}|1|…`, on AWS as in moto).
        resource = str(p.get("StreamArn") or str(p.get("ShardIterator", "*")).split("|", 1)[0])
        return [Requirement(action, resource, origin=origin)]
    if call.service == "secretsmanager" and call.operation == "ListSecrets":  # no resource-level permission
        return [Requirement(action, "*", origin=origin)]
    if call.service == "secretsmanager":
        secret_id = str(p.get("SecretId") or p.get("Name"))
        found = [Requirement(action, arns.secret(secret_id), origin=origin)]
        if call.operation == "CreateSecret" and p.get("Tags"):  # AWS also asks for TagResource then
            tagged = f"{origin} with Tags"
            found.append(Requirement("secretsmanager:TagResource", arns.secret(secret_id), origin=tagged))
        kms_key = p.get("KmsKeyId") or arns.secret_keys.get(arns.secret_name(secret_id))
        if kms_key:
            context = {
                "kms:ViaService": f"secretsmanager.{arns.region}.amazonaws.com",
                "kms:EncryptionContext:SecretARN": arns.secret(secret_id),
            }
            via = f"{origin}, Secrets Manager's use of the secret's customer-managed key"
            if call.operation in ("CreateSecret", "UpdateSecret", "PutSecretValue") and (
                "SecretString" in p or "SecretBinary" in p
            ):
                found.append(Requirement("kms:GenerateDataKey", arns.key(str(kms_key)), context, via))
                found.append(Requirement("kms:Decrypt", arns.key(str(kms_key)), context, via))
            if call.operation == "GetSecretValue":
                found.append(Requirement("kms:Decrypt", arns.key(str(kms_key)), context, via))
        return found
    if call.service == "events":
        return [
            Requirement(
                action,
                arns.bus(entry.get("EventBusName")),
                {"events:source": entry.get("Source"), "events:detail-type": entry.get("DetailType")},
                origin,
            )
            for entry in p.get("Entries", [])
        ]
    if call.service == "sqs":
        return [Requirement(action, arns.queue(str(p.get("QueueUrl"))), origin=origin)]
    if call.service == "kms":
        return [Requirement(action, arns.key(str(p.get("KeyId"))), origin=origin)]
    if call.service == "ce":  # Cost Explorer has no resource-level permissions
        return [Requirement(action, "*", origin=origin)]
    raise AssertionError(f"{origin}: no resource rule in tests/iam/actions.py")


def _dynamodb(call: Call, arns: Arns) -> list[Requirement]:
    p, origin = call.params, str(call)
    op = call.operation
    if op in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "DescribeTable"):
        return [Requirement(f"dynamodb:{op}", arns.table(p["TableName"]), _write_context(p), origin)]
    if op in ("Query", "Scan"):
        resource = arns.table(p["TableName"]) + (f"/index/{p['IndexName']}" if p.get("IndexName") else "")
        return [Requirement(f"dynamodb:{op}", resource, _write_context(p), origin)]
    if op in ("BatchGetItem", "BatchWriteItem"):
        return [Requirement(f"dynamodb:{op}", arns.table(table), origin=origin) for table in p.get("RequestItems", {})]
    per_item: dict[str, Callable[[Mapping[str, Any]], str]] = {
        "Put": lambda _: "dynamodb:PutItem",
        "Update": lambda _: "dynamodb:UpdateItem",
        "Delete": lambda _: "dynamodb:DeleteItem",
        "ConditionCheck": lambda _: "dynamodb:ConditionCheckItem",
        "Get": lambda _: "dynamodb:GetItem",
    }
    found = []
    for item in p.get("TransactItems", []):
        ((kind, body),) = item.items()
        found.append(
            Requirement(per_item[kind](body), arns.table(body["TableName"]), _write_context(body), f"{origin} {kind}")
        )
    return found

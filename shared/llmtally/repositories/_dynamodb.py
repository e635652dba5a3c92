"""What every repository shares: DynamoDB JSON (de)serialization and error translation."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from llmtally.errors import StorageError

CONDITIONAL_CHECK_FAILED: Final = "ConditionalCheckFailedException"


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """Python values to DynamoDB JSON. boto3 refuses floats, which is the point: money is int."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in item.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Turn boto errors into `StorageError` (the caller may retry), keeping the cause."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise StorageError(f"{action} failed: {error_code(exc) or 'ClientError'}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{action} failed: {type(exc).__name__}") from exc


def call(client: Any, action: str, operation: str, **kwargs: Any) -> Any:
    """One client call (`operation`, e.g. "update_item"), boto errors as `StorageError`
    ("{action} {operation} failed: …")."""
    with storage_errors(f"{action} {operation}"):
        return getattr(client, operation)(**kwargs)


def condition_failed(exc: BaseException) -> bool:
    """Whether a `StorageError` (from `call` or `storage_errors`) is a refused ConditionExpression."""
    return error_code(exc.__cause__) == CONDITIONAL_CHECK_FAILED if exc.__cause__ is not None else False


#: BatchGetItem's limit of keys per request.
BATCH_GET_KEYS: Final = 100


def batch_get(
    client: Any, table: str, keys: Sequence[Mapping[str, Any]], *, consistent: bool = True
) -> list[dict[str, Any]]:
    """Every item of `keys` that exists (DynamoDB JSON), 100 keys per BatchGetItem, retrying
    unprocessed keys with backoff; StorageError if some stay unprocessed."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_KEYS):
        pending = list(keys[start : start + BATCH_GET_KEYS])
        for attempt in range(8):
            if not pending:
                break
            if attempt:
                time.sleep(min(0.05 * 2**attempt, 1.0))
            with storage_errors(f"{table} batch_get_item"):
                response = client.batch_get_item(RequestItems={table: {"Keys": pending, "ConsistentRead": consistent}})
            found.extend(response.get("Responses", {}).get(table, []))
            pending = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        if pending:
            raise StorageError(f"{len(pending)} reads of {table} stayed unprocessed")
    return found

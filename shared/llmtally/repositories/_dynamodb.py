"""What every repository shares: DynamoDB JSON (de)serialization and error translation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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

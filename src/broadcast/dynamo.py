"""Conversions between Python values and DynamoDB's attribute-value format (low-level client)."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Serialize a plain dict, leaving out None values."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """Deserialize an item; numbers come back as int (this schema stores no fractions)."""
    if not item:
        return None
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def values(**named: Any) -> dict[str, Any]:
    """ExpressionAttributeValues from keyword arguments: values(uid='a') -> {':uid': {'S': 'a'}}."""
    return {f":{k}": _serializer.serialize(v) for k, v in named.items()}


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def cancellation_reasons(exc: BaseException) -> list[dict[str, Any]]:
    """The per-item reasons of a TransactionCanceledException, each with its Code and maybe its old Item."""
    response = getattr(exc, "response", None) or {}
    return list(response.get("CancellationReasons", []))

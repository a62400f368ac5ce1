"""Opaque keyset cursors: the order values of a page's last row, signed against forgery and
bound to their scope (the filter they page: a status, a read tool's arguments)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

from shared.errors import ErrorCode, TaskgateError
from shared.rules import CURSOR_MAX

_TAG_BYTES = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def _tag(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def _value_json(value: object) -> object:
    # Datetimes as exact microseconds, and UUIDs (a primary key), tagged, so a page boundary
    # survives the round trip with its type.
    if isinstance(value, datetime):
        return {"us": (value - _EPOCH) // _MICRO}
    if isinstance(value, uuid.UUID):
        return {"uuid": value.hex}
    return value


def _value_of(raw: object) -> object:
    if isinstance(raw, dict):
        if raw.keys() == {"uuid"} and isinstance(raw["uuid"], str):
            return uuid.UUID(hex=raw["uuid"])  # ValueError for a bad one
        micros = raw.get("us")
        if raw.keys() != {"us"} or not isinstance(micros, int):
            raise ValueError("not a keyset value")
        return _EPOCH + micros * _MICRO
    if raw is None or isinstance(raw, (str, int, float, bool)):
        return raw
    raise ValueError("not a keyset value")


def keyset_json(values: tuple[object, ...]) -> list[object]:
    """A keyset's values as JSON (the read cache keys them this way)."""
    return [_value_json(v) for v in values]


def encode_keyset(secret: bytes, scope: str, values: tuple[object, ...]) -> str:
    """A signed cursor after the row whose order-column values are `values`, valid for `scope`
    only (the tool and its filter arguments)."""
    payload = json.dumps([scope, keyset_json(values)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(_tag(secret, payload) + payload).decode().rstrip("=")


def decode_keyset(secret: bytes, scope: str, cursor: str, arity: int) -> tuple[object, ...]:
    """The values of a cursor made by encode_keyset for this scope, or a validation_error."""
    invalid = TaskgateError(
        ErrorCode.VALIDATION_ERROR,
        "cursor is not valid: pass the next_cursor of a previous page with the same arguments",
        {"field": "cursor"},
    )
    if len(cursor) > CURSOR_MAX:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise invalid from None
    tag, payload = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(secret, payload)):
        raise invalid
    try:
        cursor_scope, values = json.loads(payload)
        if cursor_scope != scope or not isinstance(values, list) or len(values) != arity:
            raise invalid
        return tuple(_value_of(v) for v in values)
    except (ValueError, TypeError, OverflowError):
        raise invalid from None

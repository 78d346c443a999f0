"""JSON in and out with orjson, raising our errors."""

from __future__ import annotations

from typing import Any

import orjson

from fastrapi.core.events import BytesMessage, TextMessage
from fastrapi.core.exceptions import InvalidJSON


def dumps(value: Any) -> bytes:
    """Serialize ``value`` to UTF-8 JSON.

    Raises:
        TypeError: ``value`` holds something JSON cannot express.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as error:
        raise TypeError(
            f"cannot send {type(value).__name__} as JSON: {error}; "
            "convert it to dicts, lists, str, int, float, bool or None first"
        ) from error


def loads(data: str | bytes) -> Any:
    """Parse a message's payload (str for text, bytes for binary) as JSON.

    Raises:
        InvalidJSON: the payload is not JSON; the exception keeps the message.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        message = TextMessage(data) if isinstance(data, str) else BytesMessage(data)
        raise InvalidJSON(str(error), message) from None

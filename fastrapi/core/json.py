"""JSON in and out with orjson, raising our errors; typed messages with pydantic.

pydantic is optional (``pip install 'fastrapi[pydantic]'``) and imported only
when a model is first used: a plain ``receive_json()``/``send_json()`` never
touches it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from fastrapi.core.events import BytesMessage, TextMessage
from fastrapi.core.exceptions import InvalidJSON, InvalidMessage

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError

M = TypeVar("M")
PYDANTIC_MISSING = "receive_json(model=...) needs pydantic: pip install 'fastrapi[pydantic]'"
MAX_ADAPTERS = 256  # models kept compiled at once
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def dumps(value: Any) -> bytes:
    """Serialize ``value`` to UTF-8 JSON.

    Dataclasses are serialised by orjson itself, pydantic models (anywhere in
    ``value``) with ``model_dump(mode="json")``.

    Raises:
        TypeError: ``value`` holds something JSON cannot express.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        # Only what plain orjson refuses is tried again with the hook, so
        # sending dicts and lists costs exactly what it did before models.
        pass
    try:
        return orjson.dumps(value, default=_dump_model)
    except orjson.JSONEncodeError as error:
        raise TypeError(
            f"cannot send {type(value).__name__} as JSON: {error}; convert it to dicts, lists, "
            "str, int, float, bool or None first (dataclasses and pydantic models are sent as objects)"
        ) from error


def _dump_model(value: Any) -> Any:
    # Without pydantic imported nothing can be one of its models.
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError  # orjson's signal for "not serialisable"


def loads(data: str | bytes) -> Any:
    """Parse a message's payload (str for text, bytes for binary) as JSON.

    Raises:
        InvalidJSON: the payload is not JSON; the exception keeps the message.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise InvalidJSON(str(error), _as_message(data)) from None


def validate(data: str | bytes, model: type[M]) -> M:
    """Parse a message's payload as JSON and validate it as ``model``.

    ``model`` is anything pydantic's TypeAdapter takes: a pydantic model, a
    dataclass, a TypedDict, ``list[Model]``...

    Raises:
        InvalidJSON: the payload is not JSON.
        InvalidMessage: it is JSON that ``model`` does not accept; ``.errors``
            says why, ``.raw`` keeps the payload.
        ImportError: pydantic is not installed.
    """
    adapter: TypeAdapter[M] = _adapter(model)
    try:
        # validate_json rather than orjson.loads + validate_python: the payload
        # is validated by JSON's rules (a strict model takes a UUID, datetime or
        # enum as its JSON string, which validate_python would refuse), in one
        # pass with no intermediate dict; measured 20-30% faster on typical
        # small messages (slower only on long arrays of short strings).
        return adapter.validate_json(data)
    except _validation_error() as error:  # evaluated only once validation failed
        first = error.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise InvalidJSON(first["msg"].removeprefix("Invalid JSON: "), _as_message(data)) from None
        # Through pydantic's own JSON, so that ctx values (a validator's
        # exception) are strings and the list can be sent back as it is.
        details = orjson.loads(error.json(include_url=False))
        raise InvalidMessage(error.title, details, data) from None


def _adapter(model: Any) -> TypeAdapter[Any]:
    # Building an adapter compiles the model's validator: once per type.
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        try:
            from pydantic import TypeAdapter
        except ImportError as error:
            raise ImportError(PYDANTIC_MISSING) from error
        if len(_ADAPTERS) >= MAX_ADAPTERS:
            # Models made on the fly (pydantic.create_model per connection)
            # would otherwise pile up: start again instead.
            _ADAPTERS.clear()
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter


def _validation_error() -> type[ValidationError]:
    from pydantic import ValidationError

    return ValidationError


def _as_message(data: str | bytes) -> TextMessage | BytesMessage:
    return TextMessage(data) if isinstance(data, str) else BytesMessage(data)

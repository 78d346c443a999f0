"""Every exception fastrapi raises, and why each inherits what it does.

The seed's handlers catch the standard library's types, so ours subclass them::

    Exception
    ├── WebSocketException          raised by user code: close with (code, reason)
    ├── ConnectionError
    │   └── WebSocketDisconnect     the connection is over (peer closed, lost, or we closed)
    ├── ValueError
    │   ├── MessageTypeError        receive_text() got bytes, or receive_bytes() got text
    │   ├── InvalidJSON             receive_json() got a message that is not JSON
    │   └── InvalidMessage          receive_json(model=...) got JSON the model does not accept
    ├── RuntimeError
    │   └── WebSocketStateError     a method called in a state that does not allow it
    │       └── ConcurrentReceiveError   two tasks receiving from one WebSocket at once
    ├── TransportClosed             (internal) a backend's connection is gone
    └── LookupError
        └── UnknownBackendError     serve(backend=...) named no registered backend
            └── BackendUnavailableError  the backend's library is not installed

Data errors (`MessageTypeError`, `InvalidJSON`, `InvalidMessage`) carry the
message they were raised for, so a handler that catches them loses nothing.
"""

from __future__ import annotations

from typing import Any

from fastrapi.core.events import BytesMessage, TextMessage


class WebSocketException(Exception):
    """Raise from a handler to end the connection with ``code`` and ``reason``.

    Before ``accept()`` the client gets HTTP 403 instead (no 101 is sent).
    """

    def __init__(self, code: int = 1008, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code} {self.reason}".rstrip()


class WebSocketDisconnect(ConnectionError):
    """The connection is over: raised by every receive and send after the end.

    ``code`` is the close code of the closing handshake (RFC 6455 section 7.1.5),
    1006 when the connection was lost without one.
    """

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        text = f"WebSocket disconnected with code {self.code}"
        return f"{text}: {self.reason}" if self.reason else text


class MessageTypeError(ValueError):
    """A message of the other type arrived; ``message`` holds it, nothing is lost."""

    def __init__(self, expected: str, message: TextMessage | BytesMessage) -> None:
        got = "text" if isinstance(message, TextMessage) else "binary"
        use = "receive_text()" if got == "text" else "receive_bytes()"
        super().__init__(
            f"expected a {expected} message but received a {got} message; "
            f"it is kept in the exception's .message (or call receive() or {use})"
        )
        self.message = message


class InvalidJSON(ValueError):
    """A message that is not valid JSON; ``message`` holds it, nothing is lost."""

    def __init__(self, error: str, message: TextMessage | BytesMessage) -> None:
        super().__init__(f"message is not valid JSON: {error}")
        self.message = message


class InvalidMessage(ValueError):
    """A JSON message that does not validate as the model ``receive_json()`` was given.

    Attributes:
        raw: the message's payload as received (str for text, bytes for binary).
        errors: pydantic's error dicts (``type``, ``loc``, ``msg``, ``input``,
            ``ctx``), JSON-ready so a handler can send them back as they are.
    """

    def __init__(self, model: str, errors: list[dict[str, Any]], raw: str | bytes) -> None:
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        where = ".".join(str(part) for part in first["loc"]) or "message"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"message is not a valid {model}: {where}: {first['msg']}{more}; see .errors")
        self.errors = errors
        self.raw = raw

    @property
    def message(self) -> TextMessage | BytesMessage:
        """The message as received, as `InvalidJSON.message` keeps it."""
        return TextMessage(self.raw) if isinstance(self.raw, str) else BytesMessage(self.raw)


class WebSocketStateError(RuntimeError):
    """A method was called in a connection state that does not allow it.

    The message says which call to make instead.
    """


class ConcurrentReceiveError(WebSocketStateError):
    """Another task is already waiting in a receive call on this WebSocket."""


class TransportClosed(Exception):
    """Raised by a backend's transport when its connection is gone.

    Backends map their library's errors (reset, broken pipe, closed socket)
    onto this one type; the core turns it into `WebSocketDisconnect`.
    """


class UnknownBackendError(LookupError):
    """``serve(backend=...)`` named a backend that is not registered."""


class BackendUnavailableError(UnknownBackendError):
    """The backend is registered but its library is not installed."""

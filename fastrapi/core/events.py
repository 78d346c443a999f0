"""What moves between a transport and the core: messages and connection events.

Frozen, slotted dataclasses, named for what happened (as wsproto's events are).
`TextMessage` and `BytesMessage` are also what ``WebSocket.receive()`` returns;
``final=False`` marks a fragment (RFC 6455 section 5.4), which only a transport
produces and the core joins into one message before a handler sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class TextMessage:
    """A text message (opcode 0x1), already decoded from UTF-8."""

    data: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class BytesMessage:
    """A binary message (opcode 0x2)."""

    data: bytes
    final: bool = True


@dataclass(frozen=True, slots=True)
class Ping:
    """A Ping control frame (RFC 6455 section 5.5.2); the core answers it."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong:
    """A Pong control frame (RFC 6455 section 5.5.3)."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over; no event follows.

    ``code`` is the peer's close code once the closing handshake finished, or
    1006 when the connection was lost without one (RFC 6455 section 7.1.5).
    """

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke the protocol; nothing has been sent about it yet.

    Messages that arrived before the error are still delivered; then the core
    fails the connection with ``code`` (1002, 1007...): it sends the Close and
    drops TCP without waiting for an answer (RFC 6455 section 7.1.7). Reporting
    the error instead of acting on it lets the handler answer those messages
    first, as a peer that sent them expects. No event follows.
    """

    code: int
    reason: str = ""


Message: TypeAlias = TextMessage | BytesMessage

# What ``WebSocket.receive()`` builds for every message: the slots filled
# straight, as the frozen dataclass's own __init__ does through a Python
# call and object.__setattr__ per field.
_new = object.__new__
_set_text, _set_text_final = TextMessage.__dict__["data"].__set__, TextMessage.__dict__["final"].__set__
_set_bytes, _set_bytes_final = BytesMessage.__dict__["data"].__set__, BytesMessage.__dict__["final"].__set__


def received(data: str | bytes) -> Message:
    """A whole message as received: `TextMessage` for str, `BytesMessage` for bytes."""
    if type(data) is str:
        text: TextMessage = _new(TextMessage)
        _set_text(text, data)
        _set_text_final(text, True)
        return text
    binary: BytesMessage = _new(BytesMessage)
    _set_bytes(binary, data)
    _set_bytes_final(binary, True)
    return binary


Event: TypeAlias = TextMessage | BytesMessage | Ping | Pong | Closed | ProtocolError

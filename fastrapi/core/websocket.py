"""The WebSocket object a handler receives.

Every public method first asks the state machine (`fastrapi.core.state`)
whether it may run (the common case, connected, with one comparison); the
`Channel` does the moving. Before ``accept()`` the
opening request is readable (path, query, headers, client, subprotocols) and
nothing has answered the client yet: ``accept()`` sends the 101, ``deny()`` or
``close()`` send an HTTP error instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar, overload

from fastrapi.core import json
from fastrapi.core.channel import Channel
from fastrapi.core.codes import CloseCode, check_close
from fastrapi.core.events import BytesMessage, Message, TextMessage, received
from fastrapi.core.exceptions import MessageTypeError, TransportClosed, WebSocketDisconnect
from fastrapi.core.request import Address, Headers, QueryParams, Request
from fastrapi.core.settings import Settings
from fastrapi.core.state import ConnectionState, Operation, Transition, Verdict, WebSocketState
from fastrapi.core.transport import HeaderList, Response, Transport

# Headers the handshake itself owns (RFC 6455 section 4.2.2); accept() sets them.
_HANDSHAKE_HEADERS = frozenset(
    {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions"}
)
_NORMAL_ENDS = (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY)
_CONNECTING = WebSocketState.CONNECTING
_CONNECTED = WebSocketState.CONNECTED
FORBIDDEN = Response.text(403, "Forbidden")
logger = logging.getLogger("fastrapi.websocket")  # how a close() before accept() answers
T = TypeVar("T")
M = TypeVar("M")  # the type a JSON message is validated as


class WebSocket:
    """One WebSocket connection, as seen by its handler.

    Attributes:
        request: the opening HTTP request.
        path_params: the typed parameters the route matched.
    """

    __slots__ = (
        "__weakref__",
        "_channel",
        "_connection",
        "_on_answer",
        "_transport",
        "handshake_status",
        "path_params",
        "request",
        "subprotocol",
    )

    def __init__(
        self,
        transport: Transport,
        settings: Settings,
        path_params: Mapping[str, Any] | None = None,
        on_answer: Callable[[int], None] | None = None,
    ) -> None:
        self.request: Request = transport.request
        self._on_answer = on_answer  # told the handshake's status once it is on the wire
        self.path_params: dict[str, Any] = dict(path_params) if path_params else {}
        self.subprotocol: str | None = None
        self.handshake_status: int | None = None  # 101, or the HTTP status that refused it
        self._transport = transport
        self._connection = ConnectionState()
        self._channel = Channel(transport, settings, self._connection)

    # -- the opening request, readable before accept() -----------------------

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def query_params(self) -> QueryParams:
        return self.request.query_params

    @property
    def headers(self) -> Headers:
        return self.request.headers

    @property
    def client(self) -> Address | None:
        return self.request.client

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, most preferred first."""
        return self.request.subprotocols

    @property
    def client_state(self) -> WebSocketState:
        """0 connecting, 1 connected, 2 closing, 3 disconnected (an `IntEnum`)."""
        return self._connection.state

    @property
    def close_code(self) -> int | None:
        """The code the connection closed with, once it is closing or closed."""
        return self._channel.close_code

    # -- the handshake --------------------------------------------------------

    async def accept(
        self, subprotocol: str | None = None, headers: Mapping[str, str] | HeaderList | None = None
    ) -> None:
        """Answer the handshake with 101 Switching Protocols.

        Args:
            subprotocol: one of `subprotocols`, sent back in Sec-WebSocket-Protocol.
            headers: extra response headers, as a mapping or (name, value) pairs.

        Raises:
            ValueError: the client did not offer ``subprotocol``, or a header is
                invalid or one the handshake sets itself.
            WebSocketStateError: accept() was already called, or the connection was closed.
        """
        self._connection.check(Operation.ACCEPT, "accept()")
        if subprotocol is not None and subprotocol not in self.request.subprotocols:
            raise ValueError(
                f"subprotocol {subprotocol!r} was not offered by the client; "
                f"choose one of {self.request.subprotocols} or None"
            )
        extra = _checked_headers(headers)
        # Connected before the 101 goes out: the backend may push the
        # client's first frames while accept() is still writing it.
        self._connection.apply(Transition.ACCEPT)
        self.subprotocol = subprotocol
        self.handshake_status = 101
        channel = self._channel
        try:
            await self._transport.accept(subprotocol, extra, channel)
            lost = False
        except TransportClosed:
            channel.connection_lost(CloseCode.ABNORMAL_CLOSURE, "the client left during the handshake")
            lost = True
        if self._on_answer is not None:
            self._on_answer(101)
        channel.start()
        if lost:
            raise channel.disconnect_error()

    async def deny(
        self, status: int = 403, headers: Mapping[str, str] | HeaderList | None = None, body: bytes = b""
    ) -> None:
        """Refuse the handshake with any HTTP response instead of 101.

        Raises:
            ValueError: ``status`` is not an HTTP error status (400-599).
            WebSocketStateError: the handshake was already answered.
        """
        self._connection.check(Operation.DENY, "deny()")
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"deny() needs an HTTP error status (400-599), not {status!r}")
        await self._reject(Response(status, _checked_headers(headers), bytes(body)))

    async def _reject(self, response: Response) -> None:
        self._connection.apply(Transition.DENY)
        self._channel.refused()
        self.handshake_status = response.status
        with contextlib.suppress(TransportClosed):  # the client left: nobody to tell
            await self._transport.reject(response)
        if self._on_answer is not None:
            self._on_answer(response.status)

    # -- receiving --------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message: a `TextMessage` or a `BytesMessage`.

        Args:
            timeout: seconds to wait; then `TimeoutError`, and the connection
                stays usable (no message is lost).

        Raises:
            WebSocketDisconnect: the connection ended.
            TimeoutError: no message within ``timeout``.
            WebSocketStateError: called before accept(), or while another task receives.
        """
        if self._connection.state is _CONNECTING:
            self._connection.check(Operation.RECEIVE, "receive()")
        channel = self._channel
        data = channel.take() if channel.inbox else await channel.receive(timeout)
        return received(data)

    async def receive_text(self, timeout: float | None = None) -> str:
        """The next message, which must be text.

        Raises:
            MessageTypeError: a binary message came; the error keeps it.
            WebSocketDisconnect: the connection ended.
            TimeoutError: no message within ``timeout`` seconds.
        """
        if self._connection.state is _CONNECTING:
            self._connection.check(Operation.RECEIVE, "receive_text()")
        channel = self._channel
        data = channel.take() if channel.inbox else await channel.receive(timeout)
        if type(data) is not str:
            raise MessageTypeError("text", BytesMessage(data))  # type: ignore[arg-type]  # not str: bytes
        return data

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """The next message, which must be binary.

        Raises:
            MessageTypeError: a text message came; the error keeps it.
            WebSocketDisconnect: the connection ended.
            TimeoutError: no message within ``timeout`` seconds.
        """
        if self._connection.state is _CONNECTING:
            self._connection.check(Operation.RECEIVE, "receive_bytes()")
        channel = self._channel
        data = channel.take() if channel.inbox else await channel.receive(timeout)
        if type(data) is str:
            raise MessageTypeError("binary", TextMessage(data))
        return data  # type: ignore[return-value]  # not str: bytes

    @overload
    async def receive_json(self, timeout: float | None = None) -> Any: ...
    @overload
    async def receive_json(self, timeout: float | None = None, *, model: type[M]) -> M: ...
    async def receive_json(self, timeout: float | None = None, *, model: type[M] | None = None) -> Any:
        """The next message (text or binary) parsed as JSON.

        Args:
            timeout: seconds to wait, as for `receive`.
            model: validate the JSON as this type and return an instance of it:
                a pydantic model, a dataclass, a TypedDict, or any type
                pydantic's ``TypeAdapter`` takes (needs ``fastrapi[pydantic]``).

        Raises:
            InvalidJSON: the message is not JSON; the error keeps it.
            InvalidMessage: the JSON does not fit ``model``; the error keeps
                the message (``.raw``) and pydantic's details (``.errors``).
            ImportError: ``model`` was given and pydantic is not installed.
            WebSocketDisconnect: the connection ended.
            TimeoutError: no message within ``timeout`` seconds.

        After either error the connection stays usable: the next receive gets the next message.
        """
        if self._connection.state is _CONNECTING:
            self._connection.check(Operation.RECEIVE, "receive_json()")
        channel = self._channel
        data = channel.take() if channel.inbox else await channel.receive(timeout)
        if model is None:
            return json.loads(data)
        return json.validate(data, model)

    def iter_text(self) -> AsyncIterator[str]:
        """Text messages until the peer closes normally (1000 or 1001).

        Any other close raises `WebSocketDisconnect`.
        """
        return _until_normal_close(self.receive_text)

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """Binary messages until the peer closes normally (1000 or 1001)."""
        return _until_normal_close(self.receive_bytes)

    @overload
    def iter_json(self) -> AsyncIterator[Any]: ...
    @overload
    def iter_json(self, *, model: type[M]) -> AsyncIterator[M]: ...
    def iter_json(self, *, model: type[M] | None = None) -> AsyncIterator[Any]:
        """JSON messages until the peer closes normally (1000 or 1001).

        With ``model``, each is validated as in ``receive_json(model=...)``.
        An invalid message raises out of the loop (`InvalidJSON`,
        `InvalidMessage`); the connection stays open, so a new loop goes on
        with the next message.
        """
        if model is None:
            return _until_normal_close(self.receive_json)
        return _until_normal_close(functools.partial(self.receive_json, model=model))

    # -- sending ----------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Send a `TextMessage` or `BytesMessage`."""
        if type(message) is not TextMessage and type(message) is not BytesMessage:
            raise TypeError(f"send() takes a TextMessage or BytesMessage, not {type(message).__name__}")
        if self._connection.state is not _CONNECTED:
            self._check_send("send()")
        await self._channel.send(message.data)

    async def send_text(self, data: str) -> None:
        """Send a text message.

        Raises:
            TypeError: ``data`` is not a str (use send_bytes() for bytes).
            WebSocketDisconnect: the connection is closing or gone.
        """
        if type(data) is not str:
            if not isinstance(data, str):
                raise TypeError(
                    f"send_text() takes a str, not {type(data).__name__}; use send_bytes() for bytes"
                )
            data = str(data)
        if self._connection.state is not _CONNECTED:
            self._check_send("send_text()")
        await self._channel.send(data)

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message.

        Raises:
            TypeError: ``data`` is not bytes-like (use send_text() for str).
            WebSocketDisconnect: the connection is closing or gone.
        """
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(
                    f"send_bytes() takes bytes, not {type(data).__name__}; use send_text() for str"
                )
            data = bytes(data)
        if self._connection.state is not _CONNECTED:
            self._check_send("send_bytes()")
        await self._channel.send(data)

    async def send_json(self, data: Any, mode: Literal["text", "binary"] = "text") -> None:
        """Send ``data`` as JSON in a text (default) or binary message.

        ``data`` may be (or hold) dataclasses and pydantic models, sent as
        JSON objects (a model as its ``model_dump(mode="json")``).

        Raises:
            TypeError: ``data`` cannot be expressed as JSON.
            ValueError: ``mode`` is neither "text" nor "binary".
            WebSocketDisconnect: the connection is closing or gone.
        """
        if mode == "text":
            payload: str | bytes = json.dumps(data).decode()
        elif mode == "binary":
            payload = json.dumps(data)
        else:
            raise ValueError(f'send_json() mode must be "text" or "binary", not {mode!r}')
        if self._connection.state is not _CONNECTED:
            self._check_send("send_json()")
        await self._channel.send(payload)

    async def send_fragments(
        self,
        fragments: Iterable[str]
        | Iterable[bytes | bytearray | memoryview]
        | AsyncIterable[str]
        | AsyncIterable[bytes | bytearray | memoryview],
    ) -> None:
        """Send one message in fragments, each sent as soon as it is produced.

        For a message too big to hold at once, or produced over time (a
        file read in chunks, tokens as they are generated). All str makes a
        text message, all bytes a binary one; an empty iterable sends
        nothing. Other sends wait until the message is finished; the
        client's pings are still answered meanwhile. If ``fragments``
        raises after a fragment went out, the message can never be
        finished: the connection is closed with 1011 and the error
        propagates.

        Raises:
            TypeError: a fragment is neither str nor bytes, or not the type of the first.
            WebSocketDisconnect: the connection is closing or gone.
        """
        self._check_send("send_fragments()")
        if isinstance(fragments, str | bytes | bytearray | memoryview):
            raise TypeError(
                "send_fragments() takes an iterable of fragments, not a single "
                f"{type(fragments).__name__}; use send_text() or send_bytes() for a whole message"
            )
        await self._channel.send_fragments(_aiter(fragments))

    def _check_send(self, call: str) -> None:
        # Off the common path (connected): raise what the state table says.
        if self._connection.check(Operation.SEND, call) is Verdict.DISCONNECTED:
            raise self._channel.disconnect_error()

    async def ping(self, data: bytes | None = None) -> None:
        """Send a Ping and return when the client's Pong arrives.

        Args:
            data: up to 125 bytes of payload; by default 4 random bytes.

        Raises:
            ValueError: ``data`` is over 125 bytes, or a ping with it is pending.
            WebSocketDisconnect: the connection ended before the Pong.
        """
        if self._connection.check(Operation.PING, "ping()") is Verdict.DISCONNECTED:
            raise self._channel.disconnect_error()
        payload = os.urandom(4) if data is None else bytes(data)
        if len(payload) > 125:
            raise ValueError(f"a ping payload is at most 125 bytes (RFC 6455 5.5), not {len(payload)}")
        await self._channel.ping(payload)

    # -- closing ----------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``; idempotent.

        Before accept() this refuses the handshake with HTTP 403 instead.
        Otherwise it sends a Close frame and waits (up to ``close_timeout``)
        for the client's, so the closing handshake is complete on return.

        Raises:
            ValueError: ``code`` may not be sent (RFC 6455 section 7.4) or
                ``reason`` is over 123 bytes; nothing is sent then.
        """
        check_close(code, reason)
        verdict = self._connection.check(Operation.CLOSE, "close()")
        if verdict is Verdict.ALREADY_DONE:
            await self._channel.wait_closed()
        elif self._connection.state is WebSocketState.CONNECTING:
            await self._reject(FORBIDDEN)
        else:
            self._channel.start_close(code, reason)
            await self._channel.wait_closed()

    # -- for the session that runs this connection -------------------------

    async def _end(self, code: int, reason: str) -> None:
        """Close (if still open) and wait for the handshake; the session's last word."""
        if self._connection.state is WebSocketState.CONNECTING:
            raise AssertionError("fastrapi bug: _end() before the handshake was answered")
        self._channel.start_close(code, reason)
        await self._channel.wait_closed()

    def _drop_if_undecided(self) -> None:
        """open_timeout ran out: drop the connection unless the handshake was answered."""
        if self._connection.state is _CONNECTING:
            logger.info("handshake for %s not answered within open_timeout; dropped", self.request.path)
            self._transport.abort()

    def _release(self) -> None:
        """Free what the session held; called once, when it is over."""
        self._channel.release()

    def __repr__(self) -> str:
        return f"<WebSocket {self.request.path!r} {self.client_state.name}>"


async def _until_normal_close(receive: Callable[[], Awaitable[T]]) -> AsyncIterator[T]:
    while True:
        try:
            yield await receive()
        except WebSocketDisconnect as end:
            if end.code in _NORMAL_ENDS:
                return
            raise


def _checked_headers(headers: Mapping[str, str] | HeaderList | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values must be str, not {name!r}: {value!r}")
        if not name or any(char in name for char in " \t\r\n:") or any(c in value for c in "\r\n\0"):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        if name.lower() in _HANDSHAKE_HEADERS:
            raise ValueError(
                f"header {name!r} is set by the handshake itself; "
                "pass subprotocol= to accept() to choose a subprotocol"
            )
    return items


async def _aiter(
    items: Iterable[str | bytes | bytearray | memoryview]
    | AsyncIterable[str | bytes | bytearray | memoryview],
) -> AsyncIterator[str | bytes | bytearray | memoryview]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item

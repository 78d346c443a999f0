"""An in-memory transport: the core with no network under it.

Not a server backend (it is not in the registry): tests use it to drive the
core directly, and it is the base of an in-process test client. The
`MemoryClient` plays the peer: it sends events the way a backend reports
them, and sees what the core sent.

    async with memory_connection(app, "/chat/lobby") as client:
        await client.wait_handshake()
        await client.send(TextMessage("hi"))
        reply = await client.receive()
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fastrapi.core.events import Closed, Event, Message, Ping, Pong
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.request import Address, Headers, Request
from fastrapi.core.transport import Application, HeaderList, Response


@dataclass(frozen=True, slots=True)
class Accepted:
    """What `Transport.accept` was called with: the 101's content."""

    subprotocol: str | None
    headers: list[tuple[str, str]]


class MemoryTransport:
    """The core's `Transport` over two bounded in-memory streams.

    Args:
        echo_close: answer the core's Close at once, as a well-behaved peer
            does; False leaves the closing handshake to the test.
    """

    def __init__(self, request: Request, *, buffer: int = 16, echo_close: bool = True) -> None:
        self.request = request
        self.echo_close = echo_close
        self.to_server: MemoryObjectSendStream[Event]
        self._from_client: MemoryObjectReceiveStream[Event]
        self.to_server, self._from_client = anyio.create_memory_object_stream[Event](buffer)
        self._to_client: MemoryObjectSendStream[Message | Ping | Pong | Closed]
        self.from_server: MemoryObjectReceiveStream[Message | Ping | Pong | Closed]
        self._to_client, self.from_server = anyio.create_memory_object_stream[Message | Ping | Pong | Closed](
            buffer
        )
        self.answered = anyio.Event()
        self.accepted: Accepted | None = None
        self.rejected: Response | None = None
        self.sent_close: Closed | None = None
        self.aborted = False
        self._peer_closed = False

    async def accept(self, subprotocol: str | None, headers: HeaderList) -> None:
        self._check_open()
        self.accepted = Accepted(subprotocol, list(headers))
        self.answered.set()

    async def reject(self, response: Response) -> None:
        self._check_open()
        self.rejected = response
        self.answered.set()

    async def receive(self) -> Event:
        try:
            event = await self._from_client.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return Closed(1006)
        if isinstance(event, Closed) and self.sent_close is None:
            # The peer closed first: answer with its code (RFC 6455 section 5.5.1).
            self._peer_closed = True
            self.sent_close = Closed(event.code, event.reason)
            await self._push(self.sent_close)
        return event

    async def send(self, event: Message | Ping | Pong) -> None:
        self._check_open()
        if self.sent_close is not None:
            raise TransportClosed("a Close frame was already sent")
        await self._push(event)

    async def close(self, code: int, reason: str) -> None:
        self._check_open()
        if self.sent_close is not None:
            return
        self.sent_close = Closed(code, reason)
        await self._push(self.sent_close)
        if self.echo_close:
            with contextlib.suppress(anyio.ClosedResourceError):  # the client dropped already
                self.to_server.send_nowait(Closed(code, reason))

    async def abort(self) -> None:
        self.aborted = True
        self.answered.set()
        self._to_client.close()
        self._from_client.close()

    def _check_open(self) -> None:
        if self.aborted:
            raise TransportClosed("the connection was aborted")

    async def _push(self, event: Message | Ping | Pong | Closed) -> None:
        try:
            await self._to_client.send(event)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as error:
            raise TransportClosed("the client is gone") from error


class MemoryClient:
    """The peer's end of a `MemoryTransport`."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport

    async def wait_handshake(self) -> Accepted | Response:
        """The handshake's answer: `Accepted`, or the HTTP `Response` that refused it."""
        await self.transport.answered.wait()
        if self.transport.accepted is not None:
            return self.transport.accepted
        if self.transport.rejected is not None:
            return self.transport.rejected
        raise TransportClosed("the connection was dropped without an answer")

    async def send(self, event: Event) -> None:
        await self.transport.to_server.send(event)

    async def receive(self) -> Message | Ping | Pong | Closed:
        """The next thing the server sent; `Closed(1006)` once it dropped the connection."""
        try:
            return await self.transport.from_server.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return Closed(1006)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.send(Closed(code, reason))

    def drop(self) -> None:
        """Vanish without a Close, as a reset TCP connection does."""
        self.transport.to_server.close()


TEST_CLIENT = Address("127.0.0.1", 50000)


def make_request(
    target: str = "/",
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    client: Address | None = TEST_CLIENT,
) -> Request:
    """A WebSocket upgrade request for ``target``."""
    items = [
        ("host", "testserver"),
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
        *headers,
    ]
    if subprotocols:
        items.append(("sec-websocket-protocol", ", ".join(subprotocols)))
    return Request("GET", target, Headers(items), client)


@asynccontextmanager
async def memory_connection(
    app: Application,
    target: str = "/",
    *,
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    echo_close: bool = True,
    buffer: int = 16,
) -> AsyncIterator[MemoryClient]:
    """Run ``app``'s handler for ``target`` over memory while the block runs.

    On exit the block waits for the session to end (the test should close or
    drop the connection, or the handler should return).
    """
    transport = MemoryTransport(
        make_request(target, headers, subprotocols), buffer=buffer, echo_close=echo_close
    )
    try:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(app.handle_websocket, transport)
            yield MemoryClient(transport)
    finally:
        # As a backend does when handle_websocket returns: the connection is gone.
        await transport.abort()
        transport.to_server.close()
        transport.from_server.close()

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

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from fastrapi.core.events import BytesMessage, Closed, Event, Message, Ping, Pong, ProtocolError, TextMessage
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.loop import running_loop
from fastrapi.core.request import Address, Headers, Request
from fastrapi.core.transport import Application, HeaderList, Receiver, Response


@dataclass(frozen=True, slots=True)
class Accepted:
    """What `Transport.accept` was called with: the 101's content."""

    subprotocol: str | None
    headers: list[tuple[str, str]]


class Pipe:
    """One direction of the memory connection: a FIFO with flow control.

    ``put_nowait`` never refuses (control frames are written at once, as into
    a socket's buffer); ``put`` waits while ``limit`` items are unread.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Event] = deque()
        self._changed = anyio.Event()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def put_nowait(self, item: Event) -> None:
        if self.closed:
            raise anyio.ClosedResourceError
        self._items.append(item)
        self._signal()

    async def changed(self) -> None:
        """Wait until an item is put, taken, or the pipe closes."""
        await self._changed.wait()

    async def put(self, item: Event) -> None:
        while len(self._items) >= self.limit and not self.closed:
            await self._changed.wait()
        self.put_nowait(item)

    async def receive(self) -> Event:
        """The next item; `anyio.EndOfStream` once closed and empty."""
        while not self._items:
            if self.closed:
                raise anyio.EndOfStream
            await self._changed.wait()
        item = self._items.popleft()
        self._signal()
        return item

    def close(self) -> None:
        self.closed = True
        self._signal()


class MemoryTransport:
    """The core's `Transport` over two in-memory pipes.

    Args:
        buffer: how many messages each direction holds unread before a
            sender waits (the socket buffers of a real connection).
        echo_close: answer the core's Close at once, as a well-behaved peer
            does; False leaves the closing handshake to the test.
        answer_pings: answer the core's Pings at once (they never reach the
            test), as a client library does whether or not anyone reads;
            False queues them for the test to see and answer.
    """

    def __init__(
        self, request: Request, *, buffer: int = 16, echo_close: bool = True, answer_pings: bool = False
    ) -> None:
        self.request = request
        self.echo_close = echo_close
        self.answer_pings = answer_pings
        self.from_server = Pipe(buffer)
        self.buffer = buffer
        self.answered = anyio.Event()
        self.accepted: Accepted | None = None
        self.rejected: Response | None = None
        self.sent_close: Closed | None = None
        self.aborted = False
        self.reading = anyio.Event()  # set while the core reads (not paused)
        self.reading.set()
        self.receiver: Receiver | None = None
        self.early: list[Event] = []  # sent by the client before the handshake was answered
        self.unread: deque[Event] = deque()  # sent while the core paused reading
        self.paused = False
        self._fragment_text: bool | None = None  # the type of a fragmented message arriving

    async def accept(self, subprotocol: str | None, headers: HeaderList, receiver: Receiver) -> None:
        self._check_open()
        self.accepted = Accepted(subprotocol, list(headers))
        self.receiver = receiver
        self.answered.set()
        early, self.early = self.early, []
        for event in early:
            self.deliver(event)

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to the core as a backend does, with no flow control."""
        receiver = self.receiver
        assert receiver is not None
        if isinstance(event, TextMessage | BytesMessage):
            text = isinstance(event, TextMessage)
            if event.final and self._fragment_text is None:
                receiver.message_received(event.data)
            else:
                receiver.fragment_received(
                    event.data, event.final, text if self._fragment_text is None else None
                )
                self._fragment_text = None if event.final else text
        elif isinstance(event, Ping):
            receiver.ping_received(event.data)
        elif isinstance(event, Pong):
            receiver.pong_received(event.data)
        elif isinstance(event, Closed):
            receiver.close_received(None if event.code == 1005 else event.code, event.reason)
        else:
            receiver.protocol_error(event.code, event.reason)

    async def reject(self, response: Response) -> None:
        self._check_open()
        self.rejected = response
        self.answered.set()

    def send(self, data: str | bytes) -> Awaitable[None] | None:
        self._check_open()
        message = TextMessage(data) if isinstance(data, str) else BytesMessage(data)
        # Written at once, as into a socket's buffer (the contract of
        # `Transport.send`); the sender is asked to wait only while more
        # than ``buffer`` messages are unread.
        pipe = self.from_server
        try:
            pipe.put_nowait(message)
        except anyio.ClosedResourceError as error:
            raise TransportClosed("the client is gone") from error
        return self._drain() if len(pipe) > self.buffer else None

    async def send_fragment(self, data: str | bytes, first: bool, final: bool) -> None:
        self._check_open()
        await self._put(TextMessage(data, final) if isinstance(data, str) else BytesMessage(data, final))

    def send_ping(self, data: bytes) -> None:
        receiver = self.receiver
        if self.answer_pings and receiver is not None and not self.aborted:
            # Later, as a peer's answer arrives: never from inside the core's call.
            running_loop().call_soon(receiver.pong_received, data)
            return
        self._put_nowait(Ping(data))

    def send_pong(self, data: bytes) -> None:
        self._put_nowait(Pong(data))

    def send_close(self, code: int, reason: str) -> None:
        if self.aborted or self.sent_close is not None:
            return
        self.sent_close = Closed(code, reason)
        self._put_nowait(self.sent_close)
        receiver = self.receiver
        if self.echo_close and receiver is not None:
            # Later, as a peer's answer arrives: never from inside the core's call.
            running_loop().call_soon(receiver.close_received, code, reason)

    def pause_reading(self) -> None:
        self.paused = True
        self.reading = anyio.Event()

    def resume_reading(self) -> None:
        self.paused = False
        while self.unread and not self.paused and not self.aborted:
            self.deliver(self.unread.popleft())
        if not self.paused:
            self.reading.set()

    def abort(self) -> None:
        if self.aborted:
            return
        self.aborted = True
        self.answered.set()
        self.reading.set()
        self.from_server.close()
        receiver = self.receiver
        if receiver is not None:
            running_loop().call_soon(receiver.connection_lost)

    def _check_open(self) -> None:
        if self.aborted:
            raise TransportClosed("the connection was aborted")

    def _put_nowait(self, event: Event) -> None:
        if not self.aborted:
            self.from_server.put_nowait(event)

    async def _drain(self) -> None:
        pipe = self.from_server
        while len(pipe) > self.buffer and not pipe.closed:
            await pipe.changed()
        if pipe.closed:
            raise TransportClosed("the client is gone")

    async def _put(self, event: Event) -> None:
        try:
            await self.from_server.put(event)
        except anyio.ClosedResourceError as error:
            raise TransportClosed("the client is gone") from error


class MemoryClient:
    """The peer's end of a `MemoryTransport`: it sends events the way a
    backend reports them, and sees what the core sent."""

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
        """Deliver ``event`` to the core; waits while the core has paused reading.

        Before the handshake is answered events are held, as a socket holds
        frames sent early, and delivered once it is accepted.
        """
        transport = self.transport
        if transport.aborted or transport.rejected is not None:
            raise anyio.BrokenResourceError("the connection is closed")
        if transport.receiver is None:
            transport.early.append(event)
            return
        # While the core has paused reading, events wait in the "socket
        # buffer" (up to ``buffer`` of them), and the sender once it is full.
        while transport.paused and len(transport.unread) >= transport.buffer:
            await transport.reading.wait()
            if transport.aborted:
                raise anyio.BrokenResourceError("the connection is closed")
        if transport.paused or transport.unread:
            transport.unread.append(event)
        else:
            transport.deliver(event)
        await anyio.lowlevel.checkpoint()

    async def receive(self) -> Message | Ping | Pong | Closed:
        """The next thing the server sent; `Closed(1006)` once it dropped the connection."""
        try:
            event = await self.transport.from_server.receive()
        except anyio.EndOfStream:
            return Closed(1006)
        assert not isinstance(event, ProtocolError)
        return event

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.send(Closed(code, reason))

    def drop(self) -> None:
        """Vanish without a Close, as a reset TCP connection does."""
        receiver = self.transport.receiver
        if receiver is not None:
            receiver.connection_lost()


TEST_CLIENT = Address("127.0.0.1", 50000)


def make_request(
    target: str = "/",
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    client: Address | None = TEST_CLIENT,
) -> Request:
    """A WebSocket upgrade request for ``target``.

    A header in ``headers`` replaces the default of the same name, so a test
    can send a handshake the core must refuse (``sec-websocket-version: 8``).
    """
    given = {name.lower() for name, _ in headers}
    defaults = [
        ("host", "testserver"),
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ]
    items = [*(item for item in defaults if item[0] not in given), *headers]
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
        transport.abort()

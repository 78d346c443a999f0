"""The websockets backend: the ``websockets`` library's asyncio server.

The handshake is held open in ``process_request`` while the handler decides:
the core's session starts there, and the request is answered only when the
handler calls ``accept()`` (then ``select_subprotocol`` returns its choice and
``process_response`` adds its headers to the 101) or refuses (then
``process_request`` returns that HTTP response, and no 101 is ever sent).

Settings mapping: ``max_message_size`` is ``max_size`` (the library closes
with 1009); ``max_queue`` is ``max_queue`` (frames, high-water mark);
``write_limit`` is ``write_limit``; ``close_timeout`` is ``close_timeout``;
``compression`` turns on the library's permessage-deflate (a 12-bit window,
memLevel 5; ``max_size`` counts inflated bytes). ``open_timeout`` is
``open_timeout``. ``max_frame_size`` is the core's `FrameCheck`.
Its own keepalive pings and the ``Server`` header are off. The library answers
pings itself, so the core never sees them. It parses requests with its own
limits (8192-byte lines, 128 headers) rather than ``max_request_size``; a
request it cannot parse (garbage, or a body other than ``Content-Length: 0``)
gets the connection closed without a response.
"""

from __future__ import annotations

import asyncio
import functools
import http
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, cast

import anyio
from anyio.abc import TaskGroup, TaskStatus
from websockets.asyncio import messages as library_messages
from websockets.asyncio.server import Server as LibraryServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers as LibraryHeaders
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request as LibraryRequest
from websockets.http11 import Response as LibraryResponse
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from fastrapi.backends._sockets import drop
from fastrapi.core.events import BytesMessage, Closed, Event, Message, Ping, Pong, ProtocolError, TextMessage
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.framecheck import FrameCheck
from fastrapi.core.request import Address, Headers, Request
from fastrapi.core.settings import Settings
from fastrapi.core.transport import Application, Backend, HeaderList, Response, Server


class _ServerProtocol(ServerProtocol):
    """The library's protocol, with two changes to how it reads.

    A Close may end a fragmented message: RFC 6455 section 5.4 lets control
    frames come between fragments (Autobahn case 7.1.5), and the library
    would answer such a Close with 1002 instead of completing the handshake.

    Every chunk read once the connection is open goes through the core's
    `FrameCheck` first: the library checks a text message's UTF-8 only when
    the message is complete, the check fails it at the first bad byte
    (Autobahn 6.4), and refuses a frame over ``max_frame_size`` from its
    header.

    A protocol error found while reading is held back instead of answered at
    once: the messages that came before it are still delivered, and
    `WebsocketsTransport` reports the error to the core, which fails the
    connection once the handler has answered them (Autobahn 3.x, 4.x, 5.15).
    """

    check: FrameCheck | None = None  # set once the transport exists, before the 101
    failure: tuple[int, str] | None = None
    on_failure: Callable[[], None] | None = None
    _parsing = False

    def receive_data(self, data: bytes | bytearray) -> None:
        check = self.check
        if check is not None and self.state is State.OPEN and self.failure is None:
            violation = check.feed(bytes(data))
            if violation is not None:
                # Parse the frames before the offending one; fail after them.
                self._parse(data[: max(violation.frame_start, 0)])
                if self.failure is None and self.state is State.OPEN:
                    self._hold(violation.code, violation.reason)
                return
        self._parse(data)

    def _parse(self, data: bytes | bytearray) -> None:
        self._parsing = True
        try:
            super().receive_data(data)
        finally:
            self._parsing = False

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None  # the unfinished message is abandoned
        super().recv_frame(frame)

    def fail(self, code: int, reason: str = "") -> None:
        held_back = self._parsing and code in _HELD_BACK and self.state is State.OPEN
        if not held_back or self.failure is not None:
            super().fail(code, reason)
            return
        self._hold(code, reason)

    def _hold(self, code: int, reason: str) -> None:
        self.failure = (int(code), reason)
        self.parser = self._ignore()  # read nothing more (RFC 6455 section 7.1.7)
        next(self.parser)
        if self.on_failure is not None:
            # After the events before the error have reached the message queue.
            asyncio.get_running_loop().call_soon(self.on_failure)

    def fail_now(self) -> None:
        """Act on the held-back failure: send the Close and EOF."""
        assert self.failure is not None
        super().fail(*self.failure)

    def _ignore(self) -> Generator[None]:
        while not (yield from self.reader.at_eof()):
            self.reader.discard()
        while True:  # EOF too is ignored: the core ends the connection
            yield


_HELD_BACK = (CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_DATA)


class _ServerConnection(ServerConnection):
    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        protocol.__class__ = _ServerProtocol  # serve() builds the protocol itself
        super().__init__(protocol, *args, **kwargs)


def _allow_fragments(max_message_size: int) -> None:
    # The library stops a message at 4096 fragments (its WEBSOCKETS_MAX_FRAGMENTS,
    # read once at import), far fewer than a message within max_message_size
    # may have (Autobahn 9.3, 9.4). Allow one per 64 bytes of the limit: still a
    # bound on the frames one message holds, however small they are.
    library_messages.MAX_FRAGMENTS = max(library_messages.MAX_FRAGMENTS, max_message_size // 64)


class WebsocketsServer:
    def __init__(self, server: LibraryServer) -> None:
        self._server = server

    @property
    def addresses(self) -> list[Address]:
        return [Address(*sock.getsockname()[:2]) for sock in self._server.sockets]

    async def stop_accepting(self) -> None:
        self._server.close(close_connections=False)


class WebsocketsBackend:
    def __init__(self, app: Application) -> None:
        self.app = app
        self._transports: dict[ServerConnection, WebsocketsTransport] = {}

    async def run(self, host: str, port: int, *, task_status: TaskStatus[Server]) -> None:
        settings = self.app.settings
        _allow_fragments(settings.max_message_size)
        async with anyio.create_task_group() as sessions:
            self._sessions: TaskGroup = sessions
            server = await serve(
                self._connection,
                host,
                port,
                process_request=self._process_request,
                process_response=self._process_response,
                select_subprotocol=self._select_subprotocol,
                compression="deflate" if settings.compression else None,  # 12 bits, memLevel 5
                server_header=None,
                open_timeout=settings.open_timeout,  # the request and the handler's decision
                ping_interval=None,
                ping_timeout=None,
                close_timeout=settings.close_timeout,
                max_size=settings.max_message_size,
                max_queue=settings.max_queue,
                write_limit=settings.write_limit,
                create_connection=_ServerConnection,
            )
            task_status.started(WebsocketsServer(server))
            try:
                await server.wait_closed()  # after stop_accepting(), once every connection ended
            finally:
                server.close()

    async def _process_request(
        self, connection: ServerConnection, request: LibraryRequest
    ) -> LibraryResponse | None:
        host, port = connection.remote_address[:2]
        core_request = Request(
            method=request.method,
            target=request.path,
            headers=Headers(request.headers.raw_items()),
            client=Address(str(host), int(port)),
        )
        if not core_request.is_upgrade:
            response = await self.app.handle_http(core_request)
            return _library_response(response, head_only=request.method == "HEAD")
        transport = WebsocketsTransport(core_request, connection, self.app.settings)
        self._transports[connection] = transport
        self._sessions.start_soon(self._session, transport)
        await transport.decided.wait()
        if transport.refusal is not None:
            self._transports.pop(connection, None)
            return _library_response(transport.refusal)
        return None  # accepted: the library answers with 101

    async def _session(self, transport: WebsocketsTransport) -> None:
        try:
            await self.app.handle_websocket(transport)
        finally:
            transport.finished()
            self._transports.pop(transport.connection, None)

    def _select_subprotocol(self, connection: ServerConnection, offered: object) -> Subprotocol | None:
        transport = self._transports.get(connection)
        if transport is None or transport.subprotocol is None:
            return None
        return Subprotocol(transport.subprotocol)

    def _process_response(
        self, connection: ServerConnection, request: LibraryRequest, response: LibraryResponse
    ) -> None:
        transport = self._transports.get(connection)
        if transport is not None and response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            for name, value in transport.extra_headers:
                response.headers[name] = value

    async def _connection(self, connection: ServerConnection) -> None:
        # Called once the 101 is sent; the session goes on in its own task.
        transport = self._transports[connection]
        transport.opened.set()
        await transport.done.wait()


class WebsocketsTransport:
    """The core's `Transport` over one websockets connection."""

    def __init__(self, request: Request, connection: ServerConnection, settings: Settings) -> None:
        self.request = request
        self.connection = connection
        self._close_timeout = settings.close_timeout
        self.decided = anyio.Event()
        self.opened = anyio.Event()
        self.done = anyio.Event()
        self.refusal: Response | None = None
        self.subprotocol: str | None = None
        self.extra_headers: list[tuple[str, str]] = []
        self._pongs: deque[bytes] = deque()  # arrived, not reported yet
        self._fragmenting = False  # a fragmented message is being sent
        self._waiting: anyio.CancelScope | None = None  # receive() waiting for a message
        self._protocol = cast(_ServerProtocol, connection.protocol)
        self._protocol.on_failure = self._wake
        self._protocol.check = FrameCheck(settings.frame_limit)

    def finished(self) -> None:
        self.decided.set()  # a session that ends undecided was aborted
        self.done.set()

    async def accept(self, subprotocol: str | None, headers: HeaderList) -> None:
        self.subprotocol, self.extra_headers = subprotocol, list(headers)
        self.decided.set()
        # Return once the 101 is on the wire, or fail if the client left first.
        async with anyio.create_task_group() as race:
            race.start_soon(_set_then_cancel, self.opened, race)
            race.start_soon(_closed_then_cancel, self.connection, race)
        if not self.opened.is_set():
            raise TransportClosed("the client left during the handshake")

    async def reject(self, response: Response) -> None:
        self.refusal = response
        self.decided.set()
        # process_request hands the response to the library, which sends it
        # and closes the connection; return once that happened.
        with anyio.move_on_after(self._close_timeout):
            await self.connection.wait_closed()

    async def receive(self) -> Event:
        # The library matches pongs to pings itself and never returns them
        # from recv(); a pong, or a held-back protocol error, that comes while
        # we wait for a message cancels the wait to be reported (recv() is
        # cancel-safe: no message is lost).
        protocol = self._protocol
        queued = self.connection.recv_messages.frames.queue
        if queued and queued[0].fin and not self._pongs:
            # A whole message waits: recv() returns it without suspending, so
            # nothing can come in meanwhile and no cancel scope is needed.
            return await self._next_message()
        while True:
            if self._pongs:
                return Pong(self._pongs.popleft())
            if protocol.failure is not None and not self._message_queued():
                return ProtocolError(*protocol.failure)
            with anyio.CancelScope() as self._waiting:
                try:
                    return await self._next_message()
                finally:
                    self._waiting = None

    async def _next_message(self) -> Event:
        try:
            data = await self.connection.recv()
        except ConnectionClosed as closed:
            return _closed(closed)
        return TextMessage(data) if isinstance(data, str) else BytesMessage(data)

    def _message_queued(self) -> bool:
        # Whether a whole message waits in the library's queue: after a
        # held-back error, nothing more arrives to finish a partial one.
        return any(frame.fin for frame in self.connection.recv_messages.frames.queue)

    def _wake(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()

    async def send(self, event: Message | Ping | Pong) -> None:
        try:
            if isinstance(event, TextMessage | BytesMessage):
                if event.final and not self._fragmenting:
                    await self.connection.send(event.data)
                else:
                    await self._send_fragment(event)
            elif isinstance(event, Ping):
                waiter = asyncio.ensure_future(await self.connection.ping(event.data))
                waiter.add_done_callback(functools.partial(self._acknowledged, event.data))
            else:
                await self.connection.pong(event.data)
        except ConnectionClosed as closed:
            raise TransportClosed(str(closed)) from closed

    async def _send_fragment(self, event: Message) -> None:
        # The library's own fragmented send takes an iterable it drives
        # itself; the core hands over one fragment at a time instead.
        data = event.data.encode() if isinstance(event, TextMessage) else event.data
        protocol = self.connection.protocol
        async with self.connection.send_context():
            if self._fragmenting:
                protocol.send_continuation(data, fin=event.final)
            elif isinstance(event, TextMessage):
                protocol.send_text(data, fin=False)
            else:
                protocol.send_binary(data, fin=False)
        self._fragmenting = not event.final

    def _acknowledged(self, data: bytes, done: asyncio.Future[float]) -> None:
        if not done.cancelled() and done.exception() is None:
            self._pongs.append(data)
            self._wake()

    async def close(self, code: int, reason: str) -> None:
        if self._protocol.failure is not None:
            # Failing after a held-back protocol error: Close and EOF now,
            # no closing handshake (RFC 6455 section 7.1.7).
            self._protocol.fail_now()
            self.connection.send_data()
            return
        # The library sends the Close, waits for the peer's (up to
        # close_timeout) and closes TCP; receive() then reports Closed.
        await self.connection.close(code, reason)

    async def abort(self) -> None:
        drop(self.connection.transport, self._close_timeout)


async def _set_then_cancel(event: anyio.Event, race: TaskGroup) -> None:
    await event.wait()
    race.cancel_scope.cancel()


async def _closed_then_cancel(connection: ServerConnection, race: TaskGroup) -> None:
    await connection.wait_closed()
    race.cancel_scope.cancel()


def _closed(closed: ConnectionClosed) -> Closed:
    # The peer's Close if one came; else ours when the library failed the
    # connection (1002, 1007, 1009...); else the connection was lost.
    frame = closed.rcvd or closed.sent
    if frame is None:
        return Closed(1006)
    return Closed(int(frame.code), frame.reason)


def _library_response(response: Response, head_only: bool = False) -> LibraryResponse:
    try:
        phrase = http.HTTPStatus(response.status).phrase
    except ValueError:
        phrase = ""
    headers = LibraryHeaders(response.headers)
    headers["Content-Length"] = str(len(response.body))
    headers["Connection"] = "close"
    return LibraryResponse(response.status, phrase, headers, b"" if head_only else response.body)


backend_class: type[Backend] = WebsocketsBackend

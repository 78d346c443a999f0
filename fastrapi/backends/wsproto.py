"""The wsproto backend: h11 for the opening request, wsproto for frames, on an asyncio protocol.

Each TCP connection is one `WsprotoConnection`, an ``asyncio.Protocol``
and the core's `Transport` at once: bytes from ``data_received`` go into h11
(the request) and then wsproto (frames), and every event wsproto parses is
pushed to the core where it is parsed. No task reads the socket; the only
task of a connection is its session (the handler).

Settings mapping: ``max_request_size`` is h11's ``max_incomplete_event_size``
(431 beyond it); ``open_timeout`` bounds the request's arrival. wsproto has no
message size limit of its own; it hands over frame payloads as they arrive,
so the core's ``max_message_size`` check sees an oversized message before it
is buffered whole. With ``compression`` on, permessage-deflate is negotiated
with `BoundedPerMessageDeflate`. Every chunk read goes through the core's
`FrameCheck` first (the frame size limit); wsproto checks UTF-8 as text
arrives itself. ``write_limit`` is the socket transport's high-water mark.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable
from dataclasses import replace
from socket import socket
from ssl import SSLContext

import h11
from anyio.abc import TaskStatus
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

from fastrapi.backends._sockets import drop, listen, peer_address
from fastrapi.core.body import BodyBuffer, check_announced, too_large
from fastrapi.core.codes import CloseCode
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.framecheck import FrameCheck
from fastrapi.core.request import Address, Headers, Request
from fastrapi.core.timers import Deadlines, deadlines
from fastrapi.core.transport import Application, Backend, HeaderList, Receiver, Response, Server

SERVER_WINDOW_BITS = 12  # a 4 KiB window: websockets' memory-tuned choice


class BoundedPerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, with inflation bounded by ``max_size``.

    wsproto inflates each frame whole, however large it grows; here a
    message that would inflate past the limit fails with 1009 as soon as it
    does, so a small compressed frame cannot balloon in memory.
    """

    def __init__(self, max_size: int) -> None:
        super().__init__(server_max_window_bits=SERVER_WINDOW_BITS)
        self._max_size = max_size
        self._inflated = 0  # bytes of the current message so far

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        decompressor = self._decompressor
        assert decompressor is not None
        try:
            inflated = decompressor.decompress(bytes(data), self._max_size - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if decompressor.unconsumed_tail or self._inflated > self._max_size:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if fin:
            self._inflated = 0
        return super().frame_inbound_complete(proto, fin)


class WsprotoServer:
    def __init__(self, backend: WsprotoBackend, server: asyncio.Server) -> None:
        self._backend = backend
        self._server = server

    @property
    def addresses(self) -> list[Address]:
        return [Address(*sock.getsockname()[:2]) for sock in self._server.sockets]

    async def stop_accepting(self) -> None:
        self._server.close()
        self._backend.stopped.set()
        self._backend.check_idle()


class WsprotoBackend:
    def __init__(self, app: Application) -> None:
        self.app = app
        self.stopped = asyncio.Event()
        self.idle = asyncio.Event()
        self.connections: set[WsprotoConnection] = set()
        self.sessions: set[asyncio.Task[None]] = set()

    async def run(
        self,
        host: str,
        port: int,
        tls: SSLContext | None,
        *,
        task_status: TaskStatus[Server],
        sock: socket | None = None,
    ) -> None:
        server = await listen(lambda: WsprotoConnection(self), host, port, tls, sock)
        task_status.started(WsprotoServer(self, server))
        try:
            await self.stopped.wait()
            await self.idle.wait()  # every session has ended
        finally:
            server.close()
            for session in list(self.sessions):
                session.cancel()
            for connection in list(self.connections):
                connection.abort()

    def start_session(self, connection: WsprotoConnection, request: Request) -> None:
        session = asyncio.get_running_loop().create_task(self._session(connection, request))
        self.sessions.add(session)
        session.add_done_callback(self._session_done)

    def _session_done(self, session: asyncio.Task[None]) -> None:
        self.sessions.discard(session)
        self.check_idle()

    def check_idle(self) -> None:
        if self.stopped.is_set() and not self.sessions:
            self.idle.set()

    async def _session(self, connection: WsprotoConnection, request: Request) -> None:
        try:
            if request.is_upgrade:
                await self.app.handle_websocket(connection)
            else:
                response = await self.app.handle_http(request)
                connection.respond(response, head_only=request.method == "HEAD")
        finally:
            connection.abort()


class WsprotoConnection(asyncio.Protocol):
    """One TCP connection: read the opening request, then answer or upgrade it.

    The core's `Transport` for that connection once it asks for an upgrade.
    """

    __slots__ = (
        "_backend",
        "_body",
        "_check",
        "_drain_waiters",
        "_early",
        "_failed",
        "_requested",
        "_head_timer",
        "_held",
        "_held_size",
        "_http",
        "_lost",
        "_receiver",
        "_settings",
        "_transport",
        "_writing_paused",
        "_ws",
        "request",
    )

    def __init__(self, backend: WsprotoBackend) -> None:
        self._backend = backend
        settings = backend.app.settings
        self._settings = settings
        self._http: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=settings.max_request_size
        )
        self._requested = False  # the whole request arrived (head, and a plain request's body)
        self.request: Request  # set once the request head arrived
        self._body: BodyBuffer | None = None  # a plain request's body, while it arrives
        self._early = b""  # bytes after the request head, before the 101
        self._transport: asyncio.Transport | None = None
        self._head_timer: Deadlines | None = None  # open_timeout's, until the request is whole
        self._ws: Connection | None = None
        self._check: FrameCheck | None = None
        self._receiver: Receiver | None = None
        self._failed = False  # a protocol error was reported; nothing more is read
        self._writing_paused = False
        # Replies held back while the handler works through several messages
        # that came in one read: written together at the end of its turn.
        self._held: list[bytes | bytearray] | None = None
        self._held_size = 0
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._lost = False

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=self._settings.write_limit)
        self._backend.connections.add(self)
        self._head_timer = deadlines(self._settings.open_timeout)
        self._head_timer.set(self, self._head_overdue)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        if ws is None:
            self._http_received(data)
            return
        if self._failed:
            return
        assert self._check is not None
        violation = self._check.feed(data)
        if violation is None:
            self._frames_received(ws, data)
            return
        # The frames before the offending one are sound: report them first.
        self._frames_received(ws, data[: max(violation.frame_start, 0)])
        if not self._failed and ws.state is ConnectionState.OPEN:
            self._failed = True
            assert self._receiver is not None
            self._receiver.protocol_error(violation.code, violation.reason)

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._backend.connections.discard(self)
        if self._head_timer is not None:
            self._head_timer.clear(self)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(TransportClosed("the connection is gone"))
        self._drain_waiters.clear()
        if self._receiver is not None:
            self._receiver.connection_lost()
            # The channel and this connection refer to each other: let
            # reference counting free both, not the garbage collector.
            self._receiver = None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- the opening request ---------------------------------------------

    def _http_received(self, data: bytes) -> None:
        http = self._http
        if http is None or self._requested:
            self._early += data  # frames sent before the 101; fed to wsproto once accepted
            return
        http.receive_data(data)
        if self._body is not None:
            self._read_body(http)
            return
        event = self._next_event(http)
        if event is None or event is h11.NEED_DATA:
            return
        if not isinstance(event, h11.Request):
            self.abort()  # the client closed before a whole request
            return
        self.request = Request(
            method=event.method.decode("ascii"),
            target=event.target.decode("ascii"),
            headers=Headers(
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
            ),
            client=peer_address(self._transport),
        )
        if not self.request.is_upgrade:
            self._start_body(http)
            return
        if self._head_timer is not None:
            self._head_timer.clear(self)
            self._head_timer = None
        self._requested = True
        self._early, _ = http.trailing_data
        self._backend.start_session(self, self.request)

    # -- a plain request's body ----------------------------------------------

    def _start_body(self, http: h11.Connection) -> None:
        """Read a plain request's body whole before its handler runs. The
        head's timer runs on: the whole request must come within ``open_timeout``."""
        refusal = check_announced(self.request, self._settings)
        if refusal is not None:  # too big: refused unread
            self.respond(refusal)
            self.abort()
            return
        self._body = BodyBuffer(self._settings.max_body_size)
        if http.they_are_waiting_for_100_continue and self._transport is not None:
            # A client that asked (curl does for big bodies) sends it once told to go on.
            self._transport.write(
                http.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")) or b""
            )
        self._read_body(http)

    def _next_event(self, http: h11.Connection) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] | None:
        """h11's next event; None once a request it cannot parse was answered (400, 413...)."""
        try:
            return http.next_event()
        except h11.RemoteProtocolError as error:
            self.respond(Response.text(error.error_status_hint, f"Bad request: {error}\n"))
            self.abort()
            return None

    def _read_body(self, http: h11.Connection) -> None:
        body = self._body
        assert body is not None
        while True:  # bounded: each event consumes bytes already received
            event = self._next_event(http)
            if event is None or event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Data):
                if not body.add(event.data):
                    self.respond(too_large(self._settings))
                    self.abort()
                    return
                continue
            if not isinstance(event, h11.EndOfMessage):
                self.abort()  # the client closed before the whole body
                return
            if self._head_timer is not None:
                self._head_timer.clear(self)
                self._head_timer = None
            self._body = None
            self._requested = True
            self.request = replace(self.request, body=body.take())
            self._backend.start_session(self, self.request)
            return

    def _head_overdue(self) -> None:
        self._head_timer = None
        if not self._requested:
            self.abort()  # the request never came whole: a slowloris holds nothing

    def respond(self, response: Response, head_only: bool = False) -> None:
        """Write an HTTP response to a request that did not become a WebSocket."""
        http, transport = self._http, self._transport
        if http is None or transport is None or transport.is_closing():
            return
        try:
            data = (
                http.send(h11.Response(status_code=response.status, headers=response.wire_headers())) or b""
            )
            if response.body and not head_only:
                data += http.send(h11.Data(data=response.body)) or b""
            data += http.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return  # the request was too broken for a response
        transport.write(data)

    # -- the Transport contract --------------------------------------------

    async def accept(self, subprotocol: str | None, headers: HeaderList, receiver: Receiver) -> None:
        http, transport = self._http, self._transport
        assert http is not None and transport is not None
        if self._lost:
            raise TransportClosed("the client left during the handshake")
        request = self.request
        response_headers: list[tuple[str, str]] = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            (
                "sec-websocket-accept",
                generate_accept_token(request.headers["sec-websocket-key"].encode()).decode(),
            ),
        ]
        if subprotocol is not None:
            response_headers.append(("sec-websocket-protocol", subprotocol))
        extensions: list[Extension] = []
        if self._settings.compression:
            offers = [
                offer.strip()
                for value in request.headers.get_all("sec-websocket-extensions")
                for offer in value.split(",")
            ]
            deflate = BoundedPerMessageDeflate(self._settings.max_message_size)
            accepted = server_extensions_handshake(offers, [deflate])
            if accepted:
                extensions.append(deflate)
                response_headers.append(("sec-websocket-extensions", accepted.decode("ascii")))
        response_headers.extend(headers)
        # The core checked the request already (fastrapi.core.handshake).
        data = http.send(
            h11.InformationalResponse(
                status_code=101, headers=response_headers, reason=b"Switching Protocols"
            )
        )
        self._http = None  # h11 is done with: it costs memory on every open connection
        self._ws = Connection(ConnectionType.SERVER, extensions)
        # wsproto checks text itself; the check follows frame sizes and masks.
        self._check = FrameCheck(self._settings.frame_limit, check_text=False)
        self._receiver = receiver
        transport.write(data or b"")
        if self._early:
            early, self._early = self._early, b""
            self.data_received(early)

    async def reject(self, response: Response) -> None:
        self.respond(response)
        self.abort()

    def send(self, data: str | bytes, final: bool = True) -> Awaitable[None] | None:
        ws, transport = self._ws, self._transport
        assert ws is not None and transport is not None
        if ws.state is not ConnectionState.OPEN or self._lost:
            raise TransportClosed("the WebSocket is closing")
        # wsproto's frame protocol directly: Connection.send builds an event
        # and checks its type on every message to reach the same call.
        frame = ws._proto.send_data(data, final)
        held = self._held
        if held is None:
            transport.write(frame)
        else:
            held.append(frame)
            self._held_size += len(frame)
            if self._held_size < self._settings.write_limit:
                return None  # out with the others at the end of this turn
            self._flush()
        return self._drain() if self._writing_paused else None

    async def send_fragment(self, data: str | bytes, first: bool, final: bool) -> None:
        # wsproto's frame protocol keeps the outgoing message's opcode:
        # after the first frame, it writes continuations.
        pending = self.send(data, final)
        if pending is not None:
            await pending

    def send_ping(self, data: bytes) -> None:
        ws, transport = self._ws, self._transport
        if ws is not None and transport is not None and ws.state is ConnectionState.OPEN and not self._lost:
            self._flush()  # after the replies held so far, in the order they were sent
            transport.write(ws._proto.ping(data))

    def send_pong(self, data: bytes) -> None:
        ws, transport = self._ws, self._transport
        if ws is not None and transport is not None and ws.state is ConnectionState.OPEN and not self._lost:
            self._flush()
            transport.write(ws._proto.pong(data))

    def send_close(self, code: int, reason: str) -> None:
        ws, transport = self._ws, self._transport
        if ws is None or transport is None or self._lost:
            return
        if ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return
        if code == CloseCode.NO_STATUS_RCVD:
            frame = ws.send(CloseConnection(code=CloseReason.NO_STATUS_RCVD))
        else:
            frame = ws.send(CloseConnection(code=code, reason=reason))
        self._flush()
        transport.write(frame)

    def pause_reading(self) -> None:
        if self._transport is not None and not self._lost:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._lost:
            self._transport.resume_reading()

    def abort(self) -> None:
        self._flush()
        drop(self._transport, self._settings.close_timeout)

    def _hold_writes(self) -> None:
        """Hold the replies sent from now until the end of the handler's turn.

        Set when one read brought several messages: the handler answers them
        all in its next turn, and a write per answer would cost a system call
        each, where the raw library writes them together.
        """
        if self._held is None:
            self._held = []
            self._held_size = 0
            # Queued after the handler's wake-up, which the messages scheduled: runs after its turn.
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        held, self._held = self._held, None
        transport = self._transport
        if held and transport is not None and not self._lost:
            transport.write(b"".join(held))

    async def _drain(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    # -- frames --------------------------------------------------------------

    def _frames_received(self, ws: Connection, data: bytes) -> None:
        receiver = self._receiver
        assert receiver is not None
        ws.receive_data(data)
        messages = 0
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                messages += 1
                if messages == 2:
                    self._hold_writes()
                payload = event.data  # type: ignore[attr-defined]
                final = event.message_finished  # type: ignore[attr-defined]
                if kind is BytesMessage and final:
                    payload = bytes(
                        payload
                    )  # a bytearray from wsproto; earlier pieces are joined as they are
                receiver.fragment_received(payload, final, kind is TextMessage)
            elif kind is Ping:
                receiver.ping_received(bytes(event.payload))  # type: ignore[attr-defined]
            elif kind is Pong:
                receiver.pong_received(bytes(event.payload))  # type: ignore[attr-defined]
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.OPEN:
                    # wsproto found a protocol error (1002, 1007...) and sent
                    # nothing: the core fails the connection once the handler
                    # has read what came before it.
                    self._failed = True
                    receiver.protocol_error(int(event.code), event.reason or "")
                else:
                    code = None if event.code == CloseCode.NO_STATUS_RCVD else int(event.code)
                    receiver.close_received(code, event.reason or "")
                return  # nothing after a Close or an error counts (RFC 6455 5.5.1, 7.1.7)


backend_class: type[Backend] = WsprotoBackend

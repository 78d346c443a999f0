"""The wsproto backend: anyio TCP, h11 for HTTP, wsproto for WebSocket frames.

Everything here is sans-I/O glue: bytes from the socket go into h11 (the
opening request) and then wsproto (frames); what they emit goes to the core
as events; what the core sends goes through them back to the socket.

Settings mapping: ``max_request_size`` is h11's ``max_incomplete_event_size``
(431 beyond it); ``open_timeout`` bounds reading the request. wsproto has no
message size limit of its own; it hands over frame payloads as they arrive,
so the core's ``max_message_size`` check sees
an oversized message before it is buffered whole. With ``compression`` on,
permessage-deflate is negotiated with `BoundedPerMessageDeflate`. Every chunk
read goes through the core's `FrameCheck` first (the frame size limit);
wsproto checks UTF-8 as text arrives itself. ``write_limit`` is the socket
transport's write buffer high-water mark, which `SocketWriter` waits on.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from typing import Any

import anyio
import h11
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskStatus
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws
from wsproto.connection import ConnectionState
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol

from fastrapi.core.events import BytesMessage, Closed, Event, Message, Ping, Pong, ProtocolError, TextMessage
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.framecheck import FrameCheck
from fastrapi.core.locks import FastLock
from fastrapi.core.request import Address, Headers, Request
from fastrapi.core.transport import Application, Backend, HeaderList, Response, Server

READ_SIZE = 65536
_NETWORK_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


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


SERVER_WINDOW_BITS = 12  # a 4 KiB window: websockets' memory-tuned choice


class WsprotoServer:
    def __init__(self, listener: SocketListener | anyio.abc.Listener[SocketStream]) -> None:
        self._listener = listener
        self._addresses: list[Address] = []
        for sub in getattr(listener, "listeners", [listener]):
            host, port = sub.extra(SocketAttribute.local_address)[:2]
            self._addresses.append(Address(str(host), int(port)))

    @property
    def addresses(self) -> list[Address]:
        return list(self._addresses)

    async def stop_accepting(self) -> None:
        await self._listener.aclose()


class WsprotoBackend:
    def __init__(self, app: Application) -> None:
        self.app = app

    async def run(self, host: str, port: int, *, task_status: TaskStatus[Server]) -> None:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        server = WsprotoServer(listener)
        async with anyio.create_task_group() as connections:
            task_status.started(server)
            try:
                await listener.serve(self._connection, task_group=connections)
            except* (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # stop_accepting() closed the listener; connections go on

    async def _connection(self, stream: SocketStream) -> None:
        try:
            await HTTPConnection(self.app, stream).run()
        finally:
            await _aclose(stream)


class HTTPConnection:
    """One TCP connection: read the opening request, then answer or upgrade it."""

    def __init__(self, app: Application, stream: SocketStream) -> None:
        self.app = app
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=app.settings.max_request_size)

    async def run(self) -> None:
        try:
            with anyio.fail_after(self.app.settings.open_timeout):
                request = await self._read_request()
        except TimeoutError:
            return  # the request never came whole: drop the connection
        except h11.RemoteProtocolError as error:
            await self._respond(Response.text(error.error_status_hint, f"Bad request: {error}\n"))
            return
        if request is None:
            return  # the client left before sending a whole request
        head, core_request = request
        if core_request.is_upgrade:
            await self._upgrade(head, core_request)
        else:
            await self._respond(await self.app.handle_http(core_request), head.method == b"HEAD")

    async def _read_request(self) -> tuple[h11.Request, Request] | None:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive(READ_SIZE)
                except _NETWORK_ERRORS:
                    return None
                self.h11.receive_data(data)
            elif isinstance(event, h11.Request):
                return event, Request(
                    method=event.method.decode("ascii"),
                    target=event.target.decode("ascii"),
                    headers=Headers(
                        (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
                    ),
                    client=_peer(self.stream),
                )
            else:
                return None  # ConnectionClosed: nothing to answer

    async def _upgrade(self, head: h11.Request, request: Request) -> None:
        # Bytes the client sent after its request (early frames) belong to wsproto.
        while self.h11.next_event() not in (h11.PAUSED, h11.NEED_DATA):
            pass
        trailing = self.h11.trailing_data[0]
        await self.app.handle_websocket(WsprotoTransport(request, self, head, trailing))

    async def _respond(self, response: Response, head_only: bool = False) -> None:
        headers = [
            *response.headers,
            ("content-length", str(len(response.body))),
            ("connection", "close"),
        ]
        try:
            data = self.h11.send(h11.Response(status_code=response.status, headers=headers)) or b""
            if response.body and not head_only:
                data += self.h11.send(h11.Data(data=response.body)) or b""
            data += self.h11.send(h11.EndOfMessage()) or b""
            await self.stream.send(data)
        except (h11.LocalProtocolError, *_NETWORK_ERRORS):
            pass  # the client left, or the request was too broken for a response


class WsprotoTransport:
    """The core's `Transport` over one wsproto connection."""

    def __init__(self, request: Request, http: HTTPConnection, head: h11.Request, trailing: bytes) -> None:
        self.request = request
        self._http = http
        self._stream = http.stream
        self._head = head
        self._protocol = WSConnection(ConnectionType.SERVER)
        self._trailing = trailing
        self._check = FrameCheck(http.app.settings.frame_limit, check_text=False)  # wsproto checks text
        self._pending: deque[Event] = deque()
        self._write_lock = FastLock()  # receive() writes too (Close replies)
        self._writer = SocketWriter(http.stream, http.app.settings.write_limit)
        self._close_event: ws.CloseConnection | None = None
        self._closed = False
        self._failed = False  # a protocol error was reported; nothing more is read

    async def accept(self, subprotocol: str | None, headers: HeaderList) -> None:
        # The core checked the request already (fastrapi.core.handshake), so
        # wsproto's own checks pass; it only needs the request to answer it.
        self._protocol.initiate_upgrade_connection(list(self._head.headers), self._head.target)
        extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        settings = self._http.app.settings
        extensions: list[Extension] = []
        if settings.compression:
            extensions.append(BoundedPerMessageDeflate(settings.max_message_size))
        await self._write(
            self._protocol.send(
                ws.AcceptConnection(subprotocol=subprotocol, extra_headers=extra, extensions=extensions)
            )
        )
        if self._trailing:
            self._feed(self._trailing)

    async def reject(self, response: Response) -> None:
        await self._http._respond(response)
        await self.abort()

    async def receive(self) -> Event:
        while not self._pending:
            if self._closed or self._failed:
                return Closed(1006)
            try:
                data: bytes | None = await self._stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                data = None
            except _NETWORK_ERRORS:
                await self.abort()
                return Closed(1006)
            self._feed(data)
            await self._flush_close()
        return self._pending.popleft()

    def _feed(self, data: bytes | None) -> None:
        if data:
            violation = self._check.feed(data)
            if violation is not None:
                self._parse(data[: max(violation.frame_start, 0)])
                if not self._failed and self._close_event is None:
                    self._pending.append(ProtocolError(violation.code, violation.reason))
                    self._failed = True
                return
        self._parse(data)

    def _parse(self, data: bytes | None) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        pending = self._pending
        for event in protocol.events():
            kind = type(event)
            if kind is ws.TextMessage:
                pending.append(TextMessage(event.data, event.message_finished))  # type: ignore[attr-defined]
            elif kind is ws.BytesMessage:
                pending.append(BytesMessage(bytes(event.data), event.message_finished))  # type: ignore[attr-defined]
            elif kind is ws.Ping:
                pending.append(Ping(bytes(event.payload)))  # type: ignore[attr-defined]
            elif kind is ws.Pong:
                pending.append(Pong(bytes(event.payload)))  # type: ignore[attr-defined]
            elif isinstance(event, ws.CloseConnection):
                if protocol.state is ConnectionState.OPEN:
                    # wsproto found a protocol error (1002, 1007...) and sent
                    # nothing: the core fails the connection once the handler
                    # has read what came before it.
                    pending.append(ProtocolError(int(event.code), event.reason or ""))
                    self._failed = True
                else:
                    self._close_event = event
                    pending.append(Closed(int(event.code), event.reason or ""))
                break  # nothing after a Close or an error counts (RFC 6455 5.5.1, 7.1.7)

    async def _flush_close(self) -> None:
        event = self._close_event
        if event is None or self._closed:
            return
        if self._protocol.state is ConnectionState.REMOTE_CLOSING:
            # The peer closed: echo its code, then close TCP (section 5.5.1, 7.1.1).
            await self._write_quietly(self._protocol.send(event.response()))
        await self.abort()

    async def send(self, event: Message | Ping | Pong) -> None:
        if self._protocol.state is not ConnectionState.OPEN:
            raise TransportClosed("the WebSocket is closing")
        frame: ws.Event
        if isinstance(event, TextMessage):  # wsproto makes later fragments continuations
            frame = ws.TextMessage(data=event.data, message_finished=event.final)
        elif isinstance(event, BytesMessage):
            frame = ws.BytesMessage(data=event.data, message_finished=event.final)
        elif isinstance(event, Ping):
            frame = ws.Ping(payload=event.data)
        else:
            frame = ws.Pong(payload=event.data)
        await self._write(self._protocol.send(frame))

    async def close(self, code: int, reason: str) -> None:
        if self._protocol.state is not ConnectionState.OPEN:
            return  # the peer's Close came first; receive() answers it
        await self._write(self._protocol.send(ws.CloseConnection(code=code, reason=reason)))

    async def abort(self) -> None:
        self._closed = True
        self._writer.flush()  # a Close written just before goes out first
        await _aclose(self._stream)

    async def _write(self, data: bytes) -> None:
        try:
            async with self._write_lock:
                await self._writer.write(data)
        except _NETWORK_ERRORS as error:
            raise TransportClosed(str(error)) from error

    async def _write_quietly(self, data: bytes) -> None:
        try:
            await self._write(data)
        except TransportClosed:
            pass


async def _aclose(stream: SocketStream) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await stream.aclose()
        except OSError:
            pass


class SocketWriter:
    """Writes to a socket stream: no trip through the event loop per message,
    and the messages sent in one turn of the loop go out in one system call.

    anyio's ``send`` yields to the event loop on every call, even when the
    data went straight into the socket: once per message sent, the largest
    single cost of a small message. On asyncio this writes to the stream's
    transport instead: data waits in a list until the end of the current
    turn of the loop (or until it reaches the high-water mark), then goes
    out joined; a writer waits only while the transport's buffer is over
    its high-water mark (``write_limit``), as asyncio's own streams do.
    Elsewhere it uses ``send``.
    """

    def __init__(self, stream: SocketStream, high_water: int) -> None:
        self._stream = stream
        self._high_water = high_water
        transport = getattr(stream, "_transport", None)
        protocol = getattr(stream, "_protocol", None)
        self._transport: asyncio.WriteTransport | None = None
        self._protocol: Any = None
        if isinstance(transport, asyncio.WriteTransport) and hasattr(protocol, "write_event"):
            self._transport, self._protocol = transport, protocol
            # anyio offers no setting for the mark; a quarter of it is where
            # writing resumes, as asyncio's default has it.
            transport.set_write_buffer_limits(high=high_water)
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def write(self, data: bytes) -> None:
        transport, protocol = self._transport, self._protocol
        if transport is None:
            await self._stream.send(data)
            return
        if transport.is_closing() or protocol.exception is not None:
            raise anyio.BrokenResourceError
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self._high_water:
            self.flush()
        if not protocol.write_event.is_set():  # over the high-water mark: wait for the drain
            await protocol.write_event.wait()
            if transport.is_closing() or protocol.exception is not None:
                raise anyio.BrokenResourceError

    def flush(self) -> None:
        """Hand what is waiting to the transport now (before closing, say)."""
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        self._pending_size = 0
        assert self._transport is not None
        if not self._transport.is_closing():
            self._transport.write(data)


def _peer(stream: SocketStream) -> Address | None:
    try:
        address = stream.extra(SocketAttribute.remote_address)
    except anyio.TypedAttributeLookupError:
        return None
    if isinstance(address, str):  # a UNIX socket has a path, not a host and port
        return None
    host, port = address[:2]
    return Address(str(host), int(port))


backend_class: type[Backend] = WsprotoBackend

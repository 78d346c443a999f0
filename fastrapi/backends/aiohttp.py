"""The aiohttp backend: ``aiohttp.web`` with a ``WebSocketResponse``.

One catch-all route hands every request to the core. A WebSocket upgrade runs
its session inside aiohttp's request handler: ``accept()`` prepares the
``WebSocketResponse`` (the 101, with the one subprotocol chosen and the extra
headers), a refusal prepares a plain response instead, and the handler
returns whichever was prepared once the session is over.

Settings mapping: ``max_message_size`` is ``max_msg_size`` (the library's
reader refuses a bigger message; the core closes with 1009); ``close_timeout``
is the response's ``timeout``. Messages are read from the response's message
queue, not its ``receive()``, which would send the Close for a protocol
error before reporting it (see `AiohttpTransport.receive`). ``compression``
is ``compress`` (the client's window size is used; aiohttp cannot tune it
down). Autoping, autoclose and heartbeat are off: the core answers pings, and
this module answers the peer's Close itself, because aiohttp's ``close()``
drops TCP without waiting for the peer when another task is receiving.
aiohttp has no bounded receive queue of its own; its reader pauses the
socket when its buffer passes 64 KiB, so the core's ``max_queue`` is the bound.
Every chunk read once the connection is open goes through the core's
`FrameCheck` before aiohttp's frame reader (`_CheckedReader`): aiohttp
checks a text message's UTF-8 only once the message is whole and accepts
unmasked frames; the check fails those at the first bad byte (Autobahn 6.4)
and refuses frames over ``max_frame_size`` from their header.
``write_limit`` is ``writer_limit`` and the socket transport's high-water
mark: the writer waits for the drain once the transport's buffer is over it.
Its request parser is given twice the core's ``max_line_size`` and
``max_headers``, so the core answers oversized heads (414/431); beyond twice
those, aiohttp answers 400 itself. It has no ``max_request_size`` knob.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Protocol

import anyio
from aiohttp import EofStream, WebSocketError, WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue
from anyio.abc import TaskStatus
from multidict import CIMultiDict

from fastrapi.backends._sockets import drop
from fastrapi.core.codes import is_sendable
from fastrapi.core.events import BytesMessage, Closed, Event, Message, Ping, Pong, ProtocolError, TextMessage
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.framecheck import FrameCheck
from fastrapi.core.request import Address, Headers, Request
from fastrapi.core.settings import Settings
from fastrapi.core.transport import Application, Backend, HeaderList, Response, Server

_NETWORK_ERRORS = (ConnectionError, OSError, RuntimeError)  # RuntimeError: aiohttp on a closed response


class AiohttpServer:
    def __init__(self, backend: AiohttpBackend, runner: web.AppRunner, site: web.TCPSite) -> None:
        self._backend = backend
        self._runner = runner
        self._site = site

    @property
    def addresses(self) -> list[Address]:
        return [Address(str(name[0]), int(name[1])) for name in self._runner.addresses]

    async def stop_accepting(self) -> None:
        await self._site.stop()
        self._backend.stopped.set()


class AiohttpBackend:
    def __init__(self, app: Application) -> None:
        self.app = app
        self.stopped = anyio.Event()
        self._active = 0
        self._idle = anyio.Event()
        self._idle.set()

    async def run(self, host: str, port: int, *, task_status: TaskStatus[Server]) -> None:
        settings = self.app.settings
        # aiohttp answers oversized requests with 400; its limits are set
        # above the core's so the core answers first, with 414 or 431.
        application = web.Application(
            handler_args={
                "max_line_size": 2 * settings.max_line_size,
                "max_field_size": 2 * settings.max_line_size,
                "max_headers": 2 * settings.max_headers,
            }
        )
        application.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            application,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=self.app.settings.close_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            task_status.started(AiohttpServer(self, runner, site))
            await self.stopped.wait()
            await self._idle.wait()  # every connection has ended
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._active += 1
        self._idle = anyio.Event() if self._active == 1 else self._idle
        try:
            core_request = _core_request(request)
            if not core_request.is_upgrade:
                response = _aiohttp_response(await self.app.handle_http(core_request))
                response.force_close()  # one request per connection, as on every backend
                return response
            transport = AiohttpTransport(core_request, request, self.app.settings)
            await self.app.handle_websocket(transport)
            return transport.prepared()
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()


class AiohttpTransport:
    """The core's `Transport` over one aiohttp ``WebSocketResponse``."""

    def __init__(self, request: Request, web_request: web.Request, settings: Settings) -> None:
        self.request = request
        self._web_request = web_request
        self._max_size = settings.max_message_size
        self._frame_limit = settings.frame_limit
        self._write_limit = settings.write_limit
        self._close_timeout = settings.close_timeout
        self._compression = settings.compression
        self._response: web.StreamResponse | None = None
        self._ws: web.WebSocketResponse | None = None
        self._reader: WebSocketDataQueue | None = None
        self._close_sent = False
        self._fragmenting = False  # a fragmented message is being sent

    def prepared(self) -> web.StreamResponse:
        """What aiohttp's handler returns: the response the session prepared."""
        if self._response is None:  # the session ended without answering
            self._response = web.Response(status=500)
        return self._response

    async def accept(self, subprotocol: str | None, headers: HeaderList) -> None:
        ws = web.WebSocketResponse(
            protocols=(subprotocol,) if subprotocol else (),
            timeout=self._close_timeout,
            autoclose=False,
            autoping=False,
            heartbeat=None,
            compress=self._compression,  # its max_msg_size counts inflated bytes
            max_msg_size=self._max_size + 1,  # aiohttp refuses a message of exactly max_msg_size
            writer_limit=self._write_limit,
        )
        for name, value in headers:
            ws.headers.add(name, value)
        self._response = self._ws = ws
        try:
            await ws.prepare(self._web_request)
        except _NETWORK_ERRORS as error:
            raise TransportClosed(str(error)) from error
        self._reader = ws._reader  # see receive()
        transport = self._web_request.transport
        if transport is not None:  # the writer waits while this buffer is over the mark
            transport.set_write_buffer_limits(high=self._write_limit)
        protocol = self._web_request.protocol
        assert self._reader is not None and protocol._payload_parser is not None
        protocol._payload_parser = _CheckedReader(
            protocol._payload_parser, self._reader, FrameCheck(self._frame_limit)
        )

    async def reject(self, response: Response) -> None:
        self._response = _aiohttp_response(response)
        self._response.force_close()
        try:
            await self._response.prepare(self._web_request)
            await self._response.write_eof()
        except _NETWORK_ERRORS as error:
            raise TransportClosed(str(error)) from error

    async def receive(self) -> Event:
        reader = self._reader
        assert reader is not None, "receive() before accept()"
        # The response's own receive() sends the Close for a protocol error
        # before returning the error; reading its queue directly reports the
        # error first, so the handler can answer the messages before it.
        try:
            msg = await reader.read()
        except WebSocketError as error:  # 1002, 1007, 1009...
            return ProtocolError(int(error.code), str(error))
        except EofStream:
            await self.abort()
            return Closed(1006)
        kind = msg.type
        if kind is WSMsgType.TEXT:
            return TextMessage(msg.data)
        if kind is WSMsgType.BINARY:
            data = msg.data
            return BytesMessage(data if type(data) is bytes else bytes(data))
        if kind is WSMsgType.PING:
            return Ping(bytes(msg.data))  # aiohttp gives control payloads as bytearray
        if kind is WSMsgType.PONG:
            return Pong(bytes(msg.data))
        if kind is WSMsgType.CLOSE:
            return await self._peer_closed(int(msg.data), msg.extra or "")
        await self.abort()  # nothing else comes from the reader
        return Closed(1006)

    async def _peer_closed(self, code: int, reason: str) -> Closed:
        # aiohttp reports an empty Close as code 0; it accepts codes that must
        # never be on the wire (1005, 1006...), which we refuse here (RFC 6455 7.4.1).
        if code == 0:
            code = 1005
        elif not is_sendable(code):
            await self._send_close(1002, "invalid close code")
            await self.abort()
            return Closed(1002, "invalid close code")
        if not self._close_sent:
            await self._send_close(code, reason)  # echo the peer's code (5.5.1)
        await self.abort()  # the server closes TCP first (7.1.1)
        return Closed(code, reason)

    async def send(self, event: Message | Ping | Pong) -> None:
        ws = self._ws
        assert ws is not None, "send() before accept()"
        try:
            if isinstance(event, TextMessage | BytesMessage) and (self._fragmenting or not event.final):
                await self._send_fragment(ws, event)
            elif isinstance(event, TextMessage):
                await ws.send_str(event.data)
            elif isinstance(event, BytesMessage):
                await ws.send_bytes(event.data)
            elif isinstance(event, Ping):
                await ws.ping(event.data)
            else:
                await ws.pong(event.data)
        except _NETWORK_ERRORS as error:
            raise TransportClosed(str(error)) from error

    async def _send_fragment(self, ws: web.WebSocketResponse, event: Message) -> None:
        # aiohttp's writer sets FIN on every frame, so fragments are framed
        # here (uncompressed, which RFC 7692 allows for any message) and
        # written with the same flow control as its own frames.
        writer = ws._writer
        assert writer is not None
        if isinstance(event, TextMessage):
            opcode, payload = WSMsgType.TEXT.value, event.data.encode()
        else:
            opcode, payload = WSMsgType.BINARY.value, event.data
        if self._fragmenting:
            opcode = WSMsgType.CONTINUATION.value
        first = (0x80 if event.final else 0) | opcode
        writer.transport.write(_frame_header(first, len(payload)) + payload)
        self._fragmenting = not event.final
        if writer.protocol._paused:
            await writer.protocol._drain_helper()

    async def close(self, code: int, reason: str) -> None:
        # Only the frame: receive() sees the peer's answer and closes TCP.
        try:
            await self._send_close(code, reason)
        except _NETWORK_ERRORS as error:
            raise TransportClosed(str(error)) from error

    async def _send_close(self, code: int, reason: str) -> None:
        assert self._ws is not None
        self._close_sent = True
        payload = b"" if code == 1005 else struct.pack("!H", code) + reason.encode()
        try:
            await self._ws.send_frame(payload, WSMsgType.CLOSE)
        except _NETWORK_ERRORS:
            pass  # the peer is gone; receive() reports it

    async def abort(self) -> None:
        drop(self._web_request.transport, self._close_timeout)
        if self._ws is not None and not self._ws.closed:
            # Marks the response closed; with TCP already closing it sends nothing.
            with anyio.CancelScope(shield=True):
                try:
                    await self._ws.close()
                except (*_NETWORK_ERRORS, asyncio.CancelledError):
                    pass


class _CheckedReader:
    """aiohttp's frame reader, fed only what the core's `FrameCheck` passed.

    On a violation, the frames before the offending one are still parsed and
    their messages queued; the error is queued after them, so the handler
    answers them before the core fails the connection. Nothing more is read.
    """

    def __init__(self, reader: _FrameReader, queue: WebSocketDataQueue, check: FrameCheck) -> None:
        self._reader = reader
        self._queue = queue
        self._check = check

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._check.violation is not None:
            return False, b""  # the core is failing the connection
        violation = self._check.feed(data)
        if violation is None:
            return self._reader.feed_data(data)
        if violation.frame_start > 0:
            self._reader.feed_data(data[: violation.frame_start])
        if self._queue.exception() is None:
            self._queue.set_exception(WebSocketError(violation.code, violation.reason))
        return False, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class _FrameReader(Protocol):
    def feed_data(self, data: bytes) -> tuple[bool, bytes]: ...

    def feed_eof(self) -> None: ...


def _frame_header(first: int, length: int) -> bytes:
    """A server frame's header (RFC 6455 section 5.2): server frames are not masked."""
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def _core_request(request: web.Request) -> Request:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return Request(
        method=request.method,
        target=request.raw_path,
        headers=Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers
        ),
        client=Address(str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None,
    )


def _aiohttp_response(response: Response) -> web.Response:
    return web.Response(status=response.status, body=response.body, headers=CIMultiDict(response.headers))


backend_class: type[Backend] = AiohttpBackend

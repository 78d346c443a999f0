"""The aiohttp backend: aiohttp's HTTP server and its compiled frame reader.

aiohttp's low-level ``web.Server`` parses each request and calls `_handle` in
its own request-handler task; a WebSocket session runs right there. Once the
101 is out, the connection's payload parser is ours: every chunk read goes
through the core's `FrameCheck`, then into aiohttp's own (compiled)
``WebSocketReader``, whose message queue is `_Inbound`: instead of queueing,
it pushes each message, ping, pong, Close or error straight to the core's
`Receiver`, from the protocol's ``data_received``. aiohttp joins fragments
itself, so the core only ever sees whole messages. Nothing calls
``receive()``, and there is no ``WebSocketResponse``: the 101 is a plain
response with the headers computed here, and server frames are written to the
socket by the small encoder at the end of this module, compressed by
`_Deflater` when permessage-deflate is on.

Settings mapping: ``max_message_size`` is the reader's ``max_msg_size`` (it
refuses a bigger message, inflated or not, with 1009); ``max_frame_size`` and
UTF-8 as it arrives are the `FrameCheck`'s (aiohttp checks a text message only
once whole, and accepts unmasked frames). ``max_queue`` is the core's inbox:
it pauses the socket when full, and the reader itself never stalls, since its
queue counts nothing. ``write_limit`` is the socket's write buffer high-water
mark; a send that leaves it above waits for the drain. ``compression`` is
permessage-deflate with a 12-bit window for what we send (the client's own
window is its choice; aiohttp cannot bound it). ``open_timeout`` bounds the
request head here (aiohttp has no such timeout; see `_WebServer`).
The request parser gets twice the core's ``max_line_size`` and ``max_headers``,
so the core answers oversized heads (414/431); beyond twice those, aiohttp
answers 400 itself. It has no ``max_request_size`` knob. Requests it cannot
parse get aiohttp's 400 and one rate-limited line in the log, not a traceback
(`_ServerLog`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import operator
import struct
import zlib
from collections.abc import Awaitable, Iterable
from dataclasses import replace
from socket import socket
from ssl import SSLContext
from typing import Any

import anyio
from aiohttp import HttpVersion11, WebSocketError, WSMsgType, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_websocket import WS_KEY, WebSocketReader, ws_ext_gen, ws_ext_parse
from anyio.abc import TaskStatus
from multidict import CIMultiDict, istr

from fastrapi.backends._sockets import drop, listen, peer_address
from fastrapi.core.badrequests import log_bad_request
from fastrapi.core.body import BodyBuffer, check_announced, too_large
from fastrapi.core.codes import CloseCode
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.framecheck import FrameCheck
from fastrapi.core.loop import running_loop
from fastrapi.core.request import Address, Headers, Request
from fastrapi.core.settings import Settings
from fastrapi.core.timers import Deadlines, deadlines
from fastrapi.core.transport import Application, Backend, HeaderList, Receiver, Response, Server

# -- the one place this module touches aiohttp's private parts ----------------
# 1. WebSocketDataQueue, the reader's queue class, which `_Inbound` subclasses:
#    aiohttp.http_websocket exports the reader but not its queue (the compiled
#    class when aiohttp's extensions are built, like the reader).
# 2. RequestHandler._drain_helper(): the protocol has no public way to wait
#    for its write buffer to drain; aiohttp's own writers call this coroutine.
from aiohttp._websocket.reader import WebSocketDataQueue  # isort: skip

RequestHandler = web.RequestHandler


async def _drain(protocol: RequestHandler) -> None:
    try:
        await protocol._drain_helper()
    except _NETWORK_ERRORS as error:  # the connection was lost while we waited
        raise TransportClosed(str(error)) from error


# -----------------------------------------------------------------------------

# RuntimeError: asyncio or aiohttp writing on a closed transport
_NETWORK_ERRORS = (ConnectionError, OSError, RuntimeError)
_SERVER_WINDOW_BITS = 12  # a 4 KiB compression window: websockets' memory-tuned choice
_READER_SIZE_LIMIT = 2**32 - 1  # the compiled reader keeps max_msg_size in an unsigned int
_DROPPED = Response(408)  # what aiohttp's handler returns for a request dropped unanswered


class AiohttpServer:
    def __init__(self, backend: AiohttpBackend, listener: asyncio.Server) -> None:
        self._backend = backend
        self._listener = listener
        names = [sock.getsockname() for sock in listener.sockets]
        self._addresses = [Address(str(name[0]), int(name[1])) for name in names]

    @property
    def addresses(self) -> list[Address]:
        return list(self._addresses)

    async def stop_accepting(self) -> None:
        self._listener.close()
        self._backend.stopped.set()


class _WebServer(web.Server):
    """aiohttp's low-level server, which also bounds each connection's wait
    for its request head by ``open_timeout``: aiohttp itself has no such
    timeout, so a slowloris client would hold a connection for ever.

    """

    def __init__(self, open_timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.open_timeout = open_timeout
        self._heads: Deadlines | None = None  # made on the loop, at the first connection

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if self._heads is None:
            self._heads = deadlines(self.open_timeout)
        self._heads.set(handler, transport.abort)  # a slowloris client holds nothing

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self.head_arrived(handler)

    def head_arrived(self, handler: RequestHandler) -> None:
        if self._heads is not None:
            self._heads.clear(handler)


class AiohttpBackend:
    def __init__(self, app: Application) -> None:
        self.app = app
        self.stopped = anyio.Event()
        self._active = 0  # requests being handled
        # Made only once shutdown waits for the last request: an event made
        # and set each time the server falls idle would cost every handshake.
        self._drained: asyncio.Future[None] | None = None
        self._web: _WebServer | None = None

    async def run(
        self,
        host: str,
        port: int,
        tls: SSLContext | None,
        *,
        task_status: TaskStatus[Server],
        sock: socket | None = None,
    ) -> None:
        settings = self.app.settings
        # aiohttp answers oversized requests with 400; its limits are set
        # above the core's so the core answers first, with 414 or 431.
        self._web = web_server = _WebServer(
            settings.open_timeout,
            handler=self._handle,
            max_line_size=2 * settings.max_line_size,
            max_field_size=2 * settings.max_line_size,
            max_headers=2 * settings.max_headers,
            logger=_ServerLog(),
            access_log=None,
            keepalive_timeout=0,  # one request per connection; open_timeout bounds the wait for it
        )
        listener = await listen(web_server, host, port, tls, sock)
        try:
            task_status.started(AiohttpServer(self, listener))
            await self.stopped.wait()
            if self._active:
                self._drained = running_loop().create_future()
                await self._drained  # every session has ended
        finally:
            with anyio.CancelScope(shield=True):
                listener.close()
                for handler in web_server.connections:  # those still waiting for a request
                    drop(handler.transport, settings.close_timeout)
                await web_server.shutdown(settings.close_timeout)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._web is not None
        self._web.head_arrived(request.protocol)
        self._active += 1
        try:
            core_request = _core_request(request)
            if not core_request.is_upgrade:
                response = check_announced(core_request, self.app.settings)  # too big: refused unread
                if response is None:
                    response = await self._with_body(core_request, request)
                answer = _http_response(response or _DROPPED)
                if response is None:
                    return answer  # onto a closed connection: never sent
                with contextlib.suppress(TransportClosed):  # the client left: nobody to tell
                    await _send_response(request, answer)
                if not request.content.is_eof():
                    # Refused unread (413): close now; aiohttp would linger, reading it.
                    drop(request.transport, self.app.settings.close_timeout)
                return answer
            transport = AiohttpTransport(core_request, request, self.app.settings)
            await self.app.handle_websocket(transport)
            return transport.response()
        finally:
            self._active -= 1
            if self._active == 0 and self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

    async def _with_body(self, core_request: Request, request: web.BaseRequest) -> Response | None:
        """Read a plain request's body whole, then answer it; None if it did
        not come within ``open_timeout`` (the whole request must, as on every
        backend) and the connection was dropped. A body that grows past
        ``max_body_size`` gets 413 at once."""
        settings = self.app.settings
        try:
            async with asyncio.timeout(settings.open_timeout):
                expect = request.headers.get(hdrs.EXPECT, "").lower()
                if request.version == HttpVersion11 and expect == "100-continue":
                    # A client that asked (curl does for big bodies) sends it once told
                    # to go on: answered as aiohttp's own router answers it.
                    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    request.writer.output_size = 0
                body = BodyBuffer(settings.max_body_size)
                while chunk := await request.content.readany():  # b"" at the end of the body
                    if not body.add(chunk):
                        return too_large(settings)
        except TimeoutError:
            drop(request.transport, 0)
            return None
        return await self.app.handle_http(replace(core_request, body=body.take()))


class AiohttpTransport:
    """The core's `Transport` over one aiohttp connection."""

    __slots__ = (
        "_close_sent",
        "_deflater",
        "_protocol",
        "_response",
        "_settings",
        "_transport",
        "_web_request",
        "request",
    )

    def __init__(self, request: Request, web_request: web.BaseRequest, settings: Settings) -> None:
        self.request = request
        self._web_request = web_request
        self._settings = settings
        self._protocol: RequestHandler = web_request.protocol
        self._transport: asyncio.Transport | None = web_request.transport
        self._response: web.StreamResponse | None = None
        self._deflater: _Deflater | None = None  # only with permessage-deflate
        self._close_sent = False

    def response(self) -> web.StreamResponse:
        """What aiohttp's handler returns: the response the session sent."""
        if self._response is None:  # the session ended without answering
            self._response = web.Response(status=500)
            self._response.force_close()
        return self._response

    async def accept(self, subprotocol: str | None, headers: HeaderList, receiver: Receiver) -> None:
        transport, protocol, settings = self._transport, self._protocol, self._settings
        if transport is None or transport.is_closing():
            raise TransportClosed("the client left during the handshake")
        request_headers = self.request.headers
        key = request_headers["sec-websocket-key"].strip()
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_KEY).digest()).decode()
        # aiohttp's own names (istr): with plain str keys the response's
        # headers hold a folded copy of each name, ~700 bytes a connection.
        response_headers = CIMultiDict(
            [(hdrs.UPGRADE, "websocket"), (hdrs.CONNECTION, "Upgrade"), (hdrs.SEC_WEBSOCKET_ACCEPT, accept)]
        )
        compress, notakeover = 0, False
        if settings.compression:
            offers = ", ".join(request_headers.get_all("sec-websocket-extensions"))
            compress, notakeover = ws_ext_parse(offers, isserver=True)
            if compress:
                compress = min(compress, _SERVER_WINDOW_BITS)
                extension = ws_ext_gen(compress=compress, isserver=True, server_notakeover=notakeover)
                response_headers[hdrs.SEC_WEBSOCKET_EXTENSIONS] = extension
        if subprotocol is not None:
            response_headers[hdrs.SEC_WEBSOCKET_PROTOCOL] = subprotocol
        for name, value in headers:
            response_headers.add(istr(name), value)
        response = self._response = _SwitchingProtocols(status=101, headers=response_headers)
        response.force_close()
        try:
            await response.prepare(self._web_request)  # writes the 101 at once
        except _NETWORK_ERRORS as error:
            raise TransportClosed(str(error)) from error
        if transport.is_closing():
            raise TransportClosed("the client left during the handshake")
        transport.set_write_buffer_limits(high=settings.write_limit)
        if compress:
            self._deflater = _Deflater(compress, notakeover)
        max_size = settings.max_message_size + 1  # aiohttp refuses a message of exactly max_msg_size
        reader = WebSocketReader(
            _Inbound(receiver),
            max_size if max_size <= _READER_SIZE_LIMIT else 0,  # 0: no limit of its own; the core's holds
            compress=bool(compress),
            decode_text=True,
        )
        protocol.keep_alive(False)
        # From here on the protocol feeds every chunk to us, starting with any
        # bytes that came after the request head.
        protocol.set_parser(_Parser(FrameCheck(settings.frame_limit), reader, receiver))  # type: ignore[arg-type]

    async def reject(self, response: Response) -> None:
        self._response = _http_response(response)
        await _send_response(self._web_request, self._response)

    def send(self, data: str | bytes) -> Awaitable[None] | None:
        transport = self._transport
        assert transport is not None, "send() before accept()"
        # No is_closing() check: the channel sends only while connected, and
        # every way the socket closes reaches it first (our own drop, or the
        # protocol's connection_lost through _Inbound.feed_eof).
        if type(data) is str:
            payload, first = data.encode(), _FIN_TEXT
        else:
            payload, first = data, _FIN_BINARY  # type: ignore[assignment]  # not str: bytes
        deflater = self._deflater
        if deflater is not None:
            payload, first = deflater.compress(payload), first | _RSV1
        try:
            # Written whole at once, compressed or not: a control frame or
            # a Close sent meanwhile can only come before it or after it.
            if len(payload) < 126:  # _write_frame's first case, written out: the common one
                transport.write(_HEADER_SHORT(first, len(payload)) + payload)
            else:
                _write_frame(transport, first, payload)
        except _NETWORK_ERRORS as error:
            raise TransportClosed(str(error)) from error
        return _drain(self._protocol) if self._protocol.writing_paused else None

    async def send_fragment(self, data: str | bytes, first: bool, final: bool) -> None:
        # Uncompressed, which RFC 7692 allows for any message, so there is no
        # compressor state to keep between fragments.
        transport = self._transport
        assert transport is not None, "send_fragment() before accept()"
        if transport.is_closing():
            raise TransportClosed("the connection is closed")
        if isinstance(data, str):
            payload, opcode = data.encode(), _OPCODE_TEXT
        else:
            payload, opcode = data, _OPCODE_BINARY
        if not first:
            opcode = _OPCODE_CONTINUATION
        try:
            _write_frame(transport, (_FIN if final else 0) | opcode, payload)
            if self._protocol.writing_paused:
                await _drain(self._protocol)
        except _NETWORK_ERRORS as error:
            raise TransportClosed(str(error)) from error

    def send_ping(self, data: bytes) -> None:
        self._control(_FIN | _OPCODE_PING, data)

    def send_pong(self, data: bytes) -> None:
        self._control(_FIN | _OPCODE_PONG, data)

    def send_close(self, code: int, reason: str) -> None:
        payload = b"" if code == CloseCode.NO_STATUS_RCVD else struct.pack("!H", code) + reason.encode()
        self._control(_FIN | _OPCODE_CLOSE, payload)
        self._close_sent = True

    def _control(self, first: int, payload: bytes) -> None:
        transport = self._transport
        if self._close_sent or transport is None or transport.is_closing():
            return  # nothing goes after our Close, nor onto a closed socket
        try:
            _write_frame(transport, first, payload)
        except _NETWORK_ERRORS:
            pass  # the socket broke; the protocol reports connection_lost

    def pause_reading(self) -> None:
        self._protocol.pause_reading()

    def resume_reading(self) -> None:
        self._protocol.resume_reading()

    def abort(self) -> None:
        # aiohttp's handler then returns the response; writing its end on a
        # closed socket is a no-op.
        drop(self._transport, self._settings.close_timeout)


class _SwitchingProtocols(web.StreamResponse):
    """The 101: once it is out, the connection carries WebSocket frames.

    aiohttp ends every response its handler returns with ``write_eof()``,
    which for a plain response finishes the body (a chunk terminator, its
    length for the access log). A 101 has no body to finish, and the
    connection is closed by the time aiohttp asks.
    """

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class _Deflater:
    """permessage-deflate for what we send (RFC 7692), in the event loop.

    A large message blocks the loop while it is compressed, as on the other
    backends; in exchange each message is written whole when it is sent, like
    every other frame. The compressor is made at the first message: an idle
    connection holds none. memLevel 5 with the 12-bit window is websockets'
    choice: about 32 KiB per connection instead of zlib's default 140.
    """

    __slots__ = ("_compressor", "_flush", "_window_bits")

    def __init__(self, window_bits: int, no_context_takeover: bool) -> None:
        self._window_bits = window_bits
        self._flush = zlib.Z_FULL_FLUSH if no_context_takeover else zlib.Z_SYNC_FLUSH
        self._compressor: zlib._Compress | None = None

    def compress(self, payload: bytes) -> bytes:
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                zlib.Z_BEST_SPEED, zlib.DEFLATED, -self._window_bits, 5
            )
        data: bytes = compressor.compress(payload) + compressor.flush(self._flush)
        return data.removesuffix(b"\x00\x00\xff\xff")  # implied by the receiver (7.2.1)


class _Parser:
    """What aiohttp's protocol feeds once the 101 is out: the core's frame
    check, then aiohttp's reader, which pushes to the core through `_Inbound`.

    On a violation, the frames before the offending one are still parsed and
    pushed; the error is reported after them, and nothing more is read.
    """

    __slots__ = ("_check", "_reader", "_receiver")

    def __init__(self, check: FrameCheck, reader: WebSocketReader, receiver: Receiver) -> None:
        self._check = check
        self._reader = reader
        self._receiver = receiver

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        violation = self._check.feed(data)
        if violation is None:
            return self._reader.feed_data(data)  # (True, ...) once it failed: the protocol stops reading
        if violation.frame_start > 0:
            eof, _ = self._reader.feed_data(data[: violation.frame_start])
            if eof:
                return _STOP  # the reader failed first and reported it
        self._receiver.protocol_error(violation.code, violation.reason)
        return _STOP

    def feed_eof(self) -> None:
        self._receiver.connection_lost()


class _Inbound(WebSocketDataQueue):
    """aiohttp's reader's message queue, which queues nothing: each message
    goes straight to the core.

    The base's ``__init__`` is not called: its buffer, loop and waiter are
    never used. The reader stalls when the queue's size (counted by the
    base's ``feed_data``, never called here) exceeds its limit; both stay 0.
    """

    __slots__ = ("_receiver",)

    # For the pure-Python reader (AIOHTTP_NO_EXTENSIONS), which reads these
    # as attributes; the compiled one reads the base's C fields, also 0.
    _size = 0
    _limit = 0
    _stalled_reader = None

    def __init__(self, receiver: Receiver) -> None:  # the base's __init__ is not called, on purpose
        self._receiver = receiver

    def feed_data(self, data: Any, size: int) -> None:
        kind = data[0]
        if kind is _TEXT or kind is _BINARY:
            self._receiver.message_received(data[1])
        elif kind is _PING:
            self._receiver.ping_received(bytes(data[1]))  # control payloads come as bytearray
        elif kind is _PONG:
            self._receiver.pong_received(bytes(data[1]))
        elif kind is _CLOSE:
            # An empty Close comes as code 0; the core checks the code and answers.
            self._receiver.close_received(data[1] or None, data[2] or "")

    def set_exception(self, exc: BaseException, exc_cause: BaseException | None = None) -> None:
        if isinstance(exc, WebSocketError):
            code = int(exc.code)
        elif isinstance(exc, zlib.error):
            code = CloseCode.INVALID_FRAME_PAYLOAD_DATA  # not deflate data
        else:
            code = CloseCode.PROTOCOL_ERROR
        self._receiver.protocol_error(code, str(exc))

    def feed_eof(self) -> None:
        self._receiver.connection_lost()


class _ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, for this server only: a request its parser
    refused is one rate-limited line (`log_bad_request`) instead of a
    traceback; anything else goes to the ``aiohttp.server`` logger as usual."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"))

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):  # "Error handling request from %s"
            log_bad_request(str(args[0]) if args and args[0] else None, error.message or str(error))
            return
        super().log(level, msg, *args, **kwargs)


def _http_response(response: Response) -> web.Response:
    answer = web.Response(
        status=response.status, body=response.body, headers=CIMultiDict(response.wire_headers())
    )
    answer.force_close()  # one request per connection, as on every backend
    return answer


async def _send_response(web_request: web.BaseRequest, answer: web.Response) -> None:
    # Sent here rather than by aiohttp once the handler returns, so that it
    # is out before shutdown, which waits for the handlers only, closes the
    # connection.
    try:
        await answer.prepare(web_request)
        await answer.write_eof()
    except _NETWORK_ERRORS as error:
        raise TransportClosed(str(error)) from error


_value = operator.itemgetter(1)


def _core_request(request: web.BaseRequest) -> Request:
    raw = request.raw_headers
    items: Iterable[tuple[str, str]]
    if b"".join(map(_value, raw)).isascii():  # one C call instead of a check per header
        items = request.headers.items()  # the parser's own strings, not a second copy of each
    else:  # as the other backends' parsers give them, not aiohttp's UTF-8
        items = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]
    return Request(
        method=request.method,
        target=request.raw_path,
        headers=Headers(items),
        client=peer_address(request.transport),
    )


# -- server frames (RFC 6455 section 5.2): never masked ------------------------

_FIN = 0x80
_RSV1 = 0x40  # a compressed message (RFC 7692 section 6)
_OPCODE_CONTINUATION = 0x0
_OPCODE_TEXT = 0x1
_OPCODE_BINARY = 0x2
_OPCODE_CLOSE = 0x8
_OPCODE_PING = 0x9
_OPCODE_PONG = 0xA
_FIN_TEXT = _FIN | _OPCODE_TEXT
_FIN_BINARY = _FIN | _OPCODE_BINARY
_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack
_TEXT, _BINARY, _CLOSE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE
_PING, _PONG = WSMsgType.PING, WSMsgType.PONG
_STOP = (True, b"")  # what a payload parser returns to stop the protocol from reading


_JOIN_BELOW = 16384  # a bigger payload goes in a write of its own rather than be copied onto its header


def _write_frame(transport: asyncio.Transport, first: int, payload: bytes) -> None:
    """Write a frame: ``first`` is its first byte (FIN, RSV1 and opcode), then
    the length and ``payload``."""
    length = len(payload)
    if length < 126:
        transport.write(_HEADER_SHORT(first, length) + payload)
        return
    header = _HEADER_16(first, 126, length) if length < 65536 else _HEADER_64(first, 127, length)
    if length < _JOIN_BELOW:
        transport.write(header + payload)
    else:
        transport.write(header)
        transport.write(payload)


backend_class: type[Backend] = AiohttpBackend

"""The websockets backend: the ``websockets`` library's asyncio server.

Each TCP connection is one `WebsocketsConnection`, the library's own
connection and the core's `Transport` at once, and its one task is the
library's handler task: ``handshake()`` waits for the request, then runs the
whole session there (``handle_http`` or ``handle_websocket``). ``accept()``
answers with the library's handshake response; every frame the library
parses is pushed to the core from ``process_event``, bypassing the library's
message queue (the core joins fragments and checks sizes itself).

Settings mapping: ``max_message_size`` is ``max_size`` (the library closes
with 1009; it also bounds inflation); ``write_limit`` is ``write_limit``;
``close_timeout`` is ``close_timeout``; ``compression`` turns on the
library's permessage-deflate (a 12-bit window, memLevel 5); ``open_timeout``
bounds the request's arrival. ``max_frame_size`` and UTF-8 as it arrives
are the core's `FrameCheck`. Its own keepalive pings, the ``Server``
header and its INFO lines per connection are off; it answers pings itself,
so the core never sees them. Requests are read with its limits (8192-byte
lines, 128 headers) rather than ``max_request_size``; one that cannot be
parsed gets 400. Its own request parser refuses every body, so this backend
reads requests itself (`_RequestReader`, with the library's helpers): a plain
request's body, by Content-Length or chunked, bounded by ``max_body_size``
(413), ``Expect: 100-continue`` answered, as on every backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import logging
import re
from collections.abc import Awaitable, Generator
from socket import socket
from ssl import SSLContext
from typing import Any, NoReturn, cast

from anyio.abc import TaskStatus
from websockets.asyncio.server import Server as LibraryServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers as LibraryHeaders
from websockets.exceptions import (
    HeaderLineTooLong,
    InvalidHandshake,
    InvalidMessage,
    RequestLineTooLong,
    SecurityError,
    TooManyHeaders,
)
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as LibraryRequest
from websockets.http11 import Response as LibraryResponse
from websockets.http11 import d, parse_headers, parse_line
from websockets.protocol import Event, Protocol, State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from websockets.utils import accept_key

from fastrapi.backends._sockets import drop, peer_address
from fastrapi.core.badrequests import log_bad_request
from fastrapi.core.body import BodyBuffer, check_announced, too_large
from fastrapi.core.codes import CloseCode
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.framecheck import FrameCheck
from fastrapi.core.request import Address, Headers, Request
from fastrapi.core.settings import Settings
from fastrapi.core.timers import deadlines
from fastrapi.core.transport import Application, Backend, HeaderList, Receiver, Response, Server

_CONNECTING, _OPEN, _CLOSING, _CLOSED = State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED
_TEXT, _BINARY, _CONT, _CLOSE, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE, Opcode.PONG
_HELD_BACK = (CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_FRAME_PAYLOAD_DATA)


# -- reading the request: the one place this backend parses HTTP itself --------
#
# The library reads the request with `Request.parse`, written for handshakes,
# which have no body: it raises on any Content-Length but 0 and on any
# Transfer-Encoding, so a plain HTTP request with a body could not be read at
# all. `_RequestReader.parse` replaces the library's `ServerProtocol.parse`:
# the request line and headers are read as the library reads them (its
# helpers, its 8192-byte lines and 128 headers, its 414 and 431), and then a
# plain request's body, bounded by ``max_body_size`` through the core's
# helpers as on every backend. The library's request event goes out only
# once the whole request is in, carrying the body, so ``open_timeout``
# (which waits for that event) bounds head and body alike; then the library's
# frame parser takes over, as after its own parse. An upgrade request's body
# is never read: the core refuses it with 400, and what follows it on the
# wire is the client's first frames.

# Content-Length (RFC 9110 section 8.6) and chunk-size (RFC 9112 section 7.1),
# as many digits as the library's own parser allows for them (1 EB at most).
_LENGTH = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclasses.dataclass
class _ParsedRequest(LibraryRequest):
    """The library's request event, with the body of a plain HTTP request."""

    body: bytes = b""


class _BodyTooLarge(Exception):
    """A plain request's body is over ``max_body_size``: answered with 413 (not malformed)."""


class _RequestReader(ServerProtocol):
    """The library's protocol, reading a plain request's body too."""

    settings = Settings()  # the app's, on the class that each server's connections use

    def parse(self) -> Generator[None]:
        # What the library's parse does with each outcome, but for a body too large.
        try:
            request = yield from self._read_request()
        except RequestLineTooLong as exc:
            self.handshake_exc = exc
            self.send_response(
                self.reject(
                    http.HTTPStatus.REQUEST_URI_TOO_LONG, f"Failed to open a WebSocket connection: {exc}.\n"
                )
            )
            yield  # never resumed: send_response() replaced this parser
            return
        except (HeaderLineTooLong, TooManyHeaders) as exc:
            self.handshake_exc = exc
            self.send_response(
                self.reject(
                    http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"Failed to open a WebSocket connection: {exc}.\n",
                )
            )
            yield
            return
        except _BodyTooLarge as exc:
            self.handshake_exc = exc
            self.send_response(_library_response(too_large(self.settings)))  # then EOF; the rest is discarded
            yield
            return
        except Exception as exc:
            # Malformed, or the client left early: `send_eof` answers the former with 400.
            self.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
            self.handshake_exc.__cause__ = exc
            self.send_eof()
            self.parser = self.discard()
            next(self.parser)
            yield
            return
        self.events.append(request)
        # The library would parse the frames that follow the request even
        # before the 101. Held back instead, their bytes wait in the buffer
        # until `open()` feeds them through the `FrameCheck` like every later
        # chunk; only EOF ends the wait, as it would end the library's.
        reader = self.reader
        while not reader.eof:
            yield
        yield from Protocol.parse(self)

    def _read_request(self) -> Generator[None, None, _ParsedRequest]:
        """The request, as the library's `Request.parse` reads it, with a plain request's body."""
        read_line = self.reader.read_line
        request_line = yield from parse_line(read_line, RequestLineTooLong)
        try:
            raw_method, raw_path, raw_protocol = request_line.split(b" ", 2)
        except ValueError:  # not enough values to unpack
            raise ValueError(f"invalid HTTP request line: {d(request_line)}") from None
        if raw_protocol not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise ValueError(f"unsupported protocol; expected HTTP/1.1 or HTTP/1.0: {d(request_line)}")
        method = raw_method.decode("ascii")  # UnicodeDecodeError: 400, as in the library
        path = raw_path.decode("ascii")
        headers = yield from parse_headers(read_line)
        request = _ParsedRequest(path, headers, method, raw_protocol.decode("ascii"))
        if "Transfer-Encoding" not in headers and set(headers.get_all("Content-Length")) <= {"0"}:
            return request  # no body: every handshake, and most plain requests
        head = Request(method=method, target=path, headers=Headers(headers.raw_items()))
        if not head.is_upgrade:
            request.body = yield from self._read_body(head, http11=raw_protocol == b"HTTP/1.1")
        return request

    def _read_body(self, head: Request, http11: bool) -> Generator[None, None, bytes]:
        """A plain request's whole body. Raises ValueError if its framing is
        malformed, `_BodyTooLarge` as soon as it is known to be over the limit."""
        headers = head.headers
        codings = [coding.strip().lower() for coding in headers.get_all("transfer-encoding")]
        lengths = set(headers.get_all("content-length"))
        if codings and lengths:
            # Framed two ways, the way request smuggling works: refused (RFC 9112 section 6.1 allows it).
            raise ValueError("both Transfer-Encoding and Content-Length")
        if codings and codings != ["chunked"]:
            raise ValueError(f"unsupported Transfer-Encoding: {', '.join(codings)}")
        if len(lengths) > 1 or not all(_LENGTH.fullmatch(length) for length in lengths):
            raise ValueError(f"invalid Content-Length: {', '.join(headers.get_all('content-length'))}")
        if check_announced(head, self.settings) is not None:
            raise _BodyTooLarge  # refused unread
        if http11 and headers.get("expect", "").strip().lower() == "100-continue":
            # A client that asked (curl does for big bodies) sends the body once told to go on.
            self.writes.append(_CONTINUE)
        if lengths:
            return bytes((yield from self.reader.read_exact(int(lengths.pop()))))  # within the limit
        return (yield from self._read_chunked())

    def _read_chunked(self) -> Generator[None, None, bytes]:
        reader = self.reader
        body = BodyBuffer(self.settings.max_body_size)
        # Bounded: every chunk but the last (size 0) adds to the body, which is bounded.
        while True:
            line = yield from parse_line(reader.read_line, SecurityError)  # the library's line limit
            raw_size = line.split(b";", 1)[0].rstrip(b" \t")  # chunk extensions mean nothing here
            if not _CHUNK_SIZE.fullmatch(raw_size):
                raise ValueError(f"invalid chunk size: {d(raw_size)}")
            size = int(raw_size, 16)
            if size == 0:
                break
            while size:
                # Piece by piece as it arrives: however big a chunk claims to
                # be, the body is refused as soon as it grows past the limit.
                piece = yield from self._read_some(size)
                if not body.add(piece):
                    raise _BodyTooLarge
                size -= len(piece)
            if (yield from reader.read_exact(2)) != b"\r\n":
                raise ValueError("chunk data without CRLF")
        yield from parse_headers(reader.read_line)  # the trailer section, unused
        return body.take()

    def _read_some(self, most: int) -> Generator[None, None, bytearray]:
        """What has arrived, once anything has: ``most`` bytes at most."""
        reader = self.reader
        while not reader.buffer:
            if reader.eof:
                raise EOFError("the connection closed inside a chunk")
            yield
        return (yield from reader.read_exact(min(most, len(reader.buffer))))


# -----------------------------------------------------------------------------


class _ServerProtocol(_RequestReader):
    """The library's protocol, with these changes to how it reads.

    A Close may end a fragmented message: RFC 6455 section 5.4 lets control
    frames come between fragments (Autobahn case 7.1.5), and the library
    would answer such a Close with 1002 instead of completing the handshake.

    Every chunk read once the connection is open goes through the core's
    `FrameCheck` first: it fails invalid UTF-8 at the first bad byte
    (Autobahn 6.4), and refuses a frame over ``max_frame_size`` from its header.

    A protocol error found while reading is held back instead of answered at
    once: the events before it still reach the core, which is told of the
    error after them and fails the connection once the handler has answered
    them (Autobahn 3.x, 4.x, 5.15); reading stops there.

    A request that cannot be parsed gets a 400 instead of a bare EOF.
    """

    check: FrameCheck | None = None  # set with the 101
    failure: tuple[int, str] | None = None

    def receive_data(self, data: bytes | bytearray) -> None:
        check = self.check
        if check is not None and self.failure is None and self.state is _OPEN:
            violation = check.feed(bytes(data))
            if violation is not None:
                # Parse the frames before the offending one; fail after them.
                super().receive_data(data[: max(violation.frame_start, 0)])
                if self.failure is None and self.state is _OPEN:
                    self.hold(violation.code, violation.reason)
                return
        super().receive_data(data)

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is _CLOSE:
            self.current_size = None  # the unfinished message is abandoned
        super().recv_frame(frame)

    def fail(self, code: int, reason: str = "") -> None:
        # Only the parser fails the connection while it is open (nothing
        # else here calls the library's close): hold its protocol errors.
        if code in _HELD_BACK and self.failure is None and self.state is _OPEN:
            self.hold(code, reason)
        else:
            super().fail(code, reason)

    def hold(self, code: int, reason: str) -> None:
        self.failure = (int(code), reason)
        self.parser = self._ignore()  # read nothing more (RFC 6455 section 7.1.7)
        next(self.parser)

    def _ignore(self) -> Generator[None]:
        while not (yield from self.reader.at_eof()):
            self.reader.discard()
        self.state = _CLOSED
        while True:
            yield

    def open(self) -> bytes:
        """The 101 is out: read frames; return the bytes held back before it."""
        buffer = self.reader.buffer
        early = bytes(buffer)
        buffer.clear()
        # The library's frame parser afresh: the one that read the request
        # would keep the request alive in its frame for the connection's life.
        self.parser = Protocol.parse(self)
        next(self.parser)
        return early

    def send_eof(self) -> None:
        problem = _unparsed(self.handshake_exc)
        if self.state is _CONNECTING and isinstance(self.handshake_exc, InvalidMessage) and problem:
            # The request could not be parsed: the library would close without a word.
            answer = Response.text(400, f"Bad request: {problem}\n")
            self.writes.append(_library_response(answer).serialize())
        super().send_eof()


def _unparsed(error: Exception | None) -> str | None:
    """Why the request could not be parsed, or None if it was not malformed:
    parsed, too large (413), or the client left before it was whole."""
    if error is None or isinstance(error, _BodyTooLarge) or isinstance(error.__cause__, EOFError):
        return None
    return str(error.__cause__ or error)


class _ServerLog(logging.LoggerAdapter[logging.Logger]):
    """The library's ``websockets.server`` logger, without its lines at INFO
    and below ("connection open", "connection closed"...): the core writes
    one line per connection itself, and a request the library refused is
    one rate-limited line (`log_bad_request`)."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("websockets.server"))

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.INFO and self.logger.isEnabledFor(level)


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
        # What serve() makes each connection's protocol with, and
        # WebsocketsConnection its own: the same options, the same objects.
        protocol_options: dict[str, Any] = {
            # The library's permessage-deflate: 12 bits, memLevel 5 (serve()'s compression="deflate").
            "extensions": enable_server_permessage_deflate(None) if settings.compression else None,
            "max_size": settings.max_message_size,
            "logger": _ServerLog(),
        }
        server = await serve(
            _never_called,
            None if sock else host,  # create_server takes a socket or an address, never both
            None if sock else port,
            sock=sock,
            ssl=tls,
            compression=None,  # the extensions above, if any
            server_header=None,
            open_timeout=None,  # handshake() runs the whole session; it bounds the request itself
            ping_interval=None,
            ping_timeout=None,
            close_timeout=settings.close_timeout,
            max_queue=None,  # the library's message queue is not used
            write_limit=settings.write_limit,
            create_connection=WebsocketsConnection.serving(self.app, protocol_options),
            **protocol_options,
        )
        task_status.started(WebsocketsServer(server))
        try:
            await server.wait_closed()  # after stop_accepting(), once every handler task ended
        finally:
            server.close(close_connections=False)
            for task in list(server.handler_tasks):
                task.cancel()  # cancelled: every session's handshake() drops its connection


async def _never_called(connection: ServerConnection) -> None:
    raise AssertionError("handshake() runs the session and leaves the connection closed")


class WebsocketsConnection(ServerConnection):
    """One TCP connection: the library's, and the core's `Transport` once it asks for an upgrade."""

    protocol: _ServerProtocol
    request: Request  # type: ignore[assignment]  # the core's request, not the library's
    # Attributes on the class where they can be: past the library's 28 and
    # one more, each connection's attributes take a 1.3 KiB dict.
    _app: Application  # set on the class by serving()
    _protocol_class: type[_ServerProtocol]  # set on the class by serving()
    _protocol_options: dict[str, Any]  # serve()'s for its protocols: set on the class by serving()
    _receiver: Receiver | None = None  # the core, once the 101 is out
    _failed = False  # a protocol error was reported: nothing more is pushed
    _closer: asyncio.TimerHandle | None = None  # drops TCP after the library's own failure

    @classmethod
    def serving(cls, app: Application, protocol_options: dict[str, Any]) -> type[WebsocketsConnection]:
        """The class of one server's connections: ``app`` on the class, not on each
        (and its settings on the class of their protocols, made with the
        ``protocol_options`` that serve() makes its own with)."""
        protocol_class = type(_ServerProtocol.__name__, (_ServerProtocol,), {"settings": app.settings})
        attributes = {"_app": app, "_protocol_class": protocol_class, "_protocol_options": protocol_options}
        return type(cls.__name__, (cls,), attributes)

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        # serve() made the library's protocol; ours replaces it, made the same
        # way. Not the library's with its class changed: on CPython 3.11+ an
        # object whose class is assigned takes a dict of its own, and every
        # attribute read on it, a dozen for each message sent, goes the slow way.
        protocol.parser.close()  # it refers to the protocol: both are freed without the collector
        super().__init__(self._protocol_class(**self._protocol_options), *args, **kwargs)
        # A list, not the library's deque: an empty deque costs 600 bytes a connection.
        self.drain_waiters = []  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        del self.recv_messages  # the library's message queue: frames go to the core instead

    # -- the session, in the library's handler task ---------------------------

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        settings = self._app.settings
        head = deadlines(settings.open_timeout)
        head.set(self, self.transport.abort)  # a slowloris client holds nothing
        try:
            try:
                # Resolved by the request, by one the library could not
                # parse, or by the end of the connection.
                await self.request_rcvd
            finally:
                head.clear(self)
            if self.request is None:
                return  # the client left, or sent no request the library could parse
            request = self.request
            if request.is_upgrade:
                await self._app.handle_websocket(self)
            else:
                response = await self._app.handle_http(request)
                self._respond(response, head_only=request.method == "HEAD")
        finally:
            self.abort()
        # Return once TCP is closed: the library aborts what it finds open.
        # A plain socket with nothing left to write is closed already.
        transport = self.transport
        if not transport.get_write_buffer_size() and transport.get_extra_info("sslcontext") is None:
            return
        try:
            async with asyncio.timeout(settings.close_timeout):
                await asyncio.shield(self.connection_lost_waiter)
        except TimeoutError:
            self.transport.abort()
            await asyncio.shield(self.connection_lost_waiter)

    def _respond(self, response: Response, head_only: bool = False) -> bool:
        protocol = self.protocol
        if protocol.state is not _CONNECTING or protocol.eof_sent or self.transport.is_closing():
            return False
        protocol.send_response(_library_response(response, head_only))  # and EOF
        self.send_data()
        return True

    # -- the library's callbacks ------------------------------------------------

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        receiver = self._receiver
        if receiver is None:
            super().data_received(data)
            if self.request is None:
                if protocol.handshake_exc is not None and not self.request_rcvd.done():
                    self.request_rcvd.set_result(None)  # answered by the library, or by the 400
                    problem = _unparsed(protocol.handshake_exc)
                    if problem is not None:
                        log_bad_request(peer_address(self.transport), problem)
            elif len(protocol.reader.buffer) > self._app.settings.max_request_size:
                self.transport.pause_reading()  # frames before the 101: wait for the answer
            return
        was_open = protocol.state is _OPEN
        super().data_received(data)
        failure = protocol.failure
        if failure is not None:
            if not self._failed:  # after the events that came before it
                self._failed = True
                receiver.protocol_error(*failure)
        elif was_open and protocol.state is _CLOSING and protocol.close_rcvd is None and self._closer is None:
            # The library failed the connection itself (1009, say): Close and
            # EOF are out; the core hears of it with connection_lost. Drop TCP
            # if the client never closes it.
            self._closer = self.loop.call_later(self._app.settings.close_timeout, self.abort)

    def process_event(self, event: Event) -> None:
        receiver = self._receiver
        if receiver is None:
            if type(event) is _ParsedRequest and self.request is None:
                self.request = Request(
                    method=event.method,
                    target=event.path,
                    headers=Headers(event.headers.raw_items()),
                    client=peer_address(self.transport),
                    body=event.body,
                )
                if not self.request_rcvd.done():  # cancelled if shutdown came first
                    self.request_rcvd.set_result(None)
            return
        if self._failed:
            return
        frame = cast(Frame, event)
        opcode = frame.opcode
        if opcode is _TEXT:
            if not frame.fin:
                receiver.fragment_received(bytes(frame.data), False, True)
                return
            try:
                text = str(frame.data, "utf-8")
            except UnicodeDecodeError as error:
                self._fail_reading(CloseCode.INVALID_FRAME_PAYLOAD_DATA, f"invalid UTF-8: {error.reason}")
                return
            receiver.message_received(text)
        elif opcode is _BINARY:
            if frame.fin:
                receiver.message_received(bytes(frame.data))
            else:
                receiver.fragment_received(bytes(frame.data), False, False)
        elif opcode is _CONT:
            receiver.fragment_received(bytes(frame.data), frame.fin, None)
        elif opcode is _PONG:
            receiver.pong_received(bytes(frame.data))
        elif opcode is _CLOSE:
            # Checked and answered (Close, then EOF) by the library already.
            close = self.protocol.close_rcvd
            assert close is not None
            receiver.close_received(close.code if frame.data else None, close.reason)
        # A Ping: the library has answered it.

    def _fail_reading(self, code: int, reason: str) -> None:
        protocol = self.protocol
        if protocol.failure is None:
            protocol.hold(code, reason)
        self._failed = True
        assert self._receiver is not None
        self._receiver.protocol_error(code, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        # The library's, without its message queue and pings (unused here).
        protocol = self.protocol
        protocol.receive_eof()  # idempotent; the state becomes CLOSED
        self.set_connection_exc(exc)
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        self.connection_lost_waiter.set_result(None)
        if not self.request_rcvd.done():
            self.request_rcvd.set_result(None)  # the request will never come
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_exception(TransportClosed("the connection is gone"))
        receiver = self._receiver
        if receiver is not None:
            sent = protocol.close_sent
            if sent is not None and protocol.close_rcvd is None:
                receiver.connection_lost(sent.code, sent.reason)  # the library's own failure, or ours
            else:
                receiver.connection_lost()
            # The channel and this connection refer to each other: let
            # reference counting free both, not the garbage collector (which
            # alone frees the library's own objects of a connection).
            self._receiver = None
            protocol.check = None

    # -- the Transport contract -------------------------------------------------

    async def accept(self, subprotocol: str | None, headers: HeaderList, receiver: Receiver) -> None:
        protocol = self.protocol
        if protocol.state is not _CONNECTING or protocol.eof_sent or self.transport.is_closing():
            raise TransportClosed("the client left during the handshake")
        # The core checked the request (fastrapi.core.handshake): the 101 is
        # built here rather than by the library's accept(), which would check
        # it all again from a copy of its headers in the library's type.
        request_headers = self.request.headers
        response_headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(request_headers["sec-websocket-key"].strip())),
        ]
        offers = request_headers.get_all("sec-websocket-extensions")
        if offers and protocol.available_extensions:
            # Negotiated by the library, which then uses what it accepted.
            offered = LibraryHeaders([("Sec-WebSocket-Extensions", offer) for offer in offers])
            try:
                accepted, protocol.extensions = protocol.process_extensions(offered)
            except InvalidHandshake as error:  # an offer it cannot parse
                protocol.send_response(protocol.reject(400, f"Bad WebSocket handshake: {error}\n"))
                self.send_data()
                raise TransportClosed(f"the library refused the extension offer: {error}") from error
            if accepted is not None:
                response_headers.append(("Sec-WebSocket-Extensions", accepted))
        if subprotocol is not None:
            protocol.subprotocol = Subprotocol(subprotocol)
            response_headers.append(("Sec-WebSocket-Protocol", subprotocol))
        response_headers.extend(headers)
        response = LibraryResponse(101, "Switching Protocols", LibraryHeaders(response_headers))
        protocol.check = FrameCheck(self._app.settings.frame_limit)
        self._receiver = receiver
        protocol.send_response(response)
        self.send_data()
        self.transport.resume_reading()
        early = protocol.open()
        if early:
            self.data_received(early)

    async def reject(self, response: Response) -> None:
        sent = self._respond(response)
        self.abort()
        if not sent:
            raise TransportClosed("the client left during the handshake")

    def send(self, data: str | bytes) -> Awaitable[None] | None:  # type: ignore[override]  # the core's Transport.send
        protocol = self.protocol
        if protocol.state is not _OPEN:
            return self._closed()
        if type(data) is str:
            protocol.send_text(data.encode())
        else:
            protocol.send_binary(data)  # type: ignore[arg-type]  # not str: bytes
        self.send_data()
        return self._drain() if self.paused else None

    async def send_fragment(self, data: str | bytes, first: bool, final: bool) -> None:
        protocol = self.protocol
        if protocol.state is not _OPEN:
            await self._closed()
        payload = data.encode() if isinstance(data, str) else data
        if not first:
            protocol.send_continuation(payload, fin=final)
        elif isinstance(data, str):
            protocol.send_text(payload, fin=final)
        else:
            protocol.send_binary(payload, fin=final)
        self.send_data()
        if self.paused:
            await self._drain()

    async def _closed(self) -> NoReturn:
        # The library failed the connection itself; as its own send does,
        # wait for the end (close_timeout at most), so its code is known.
        await asyncio.shield(self.connection_lost_waiter)
        raise TransportClosed("the connection is closed")

    async def _drain(self) -> None:
        waiter: asyncio.Future[None] = self.loop.create_future()
        self.drain_waiters.append(waiter)
        try:
            await waiter  # TransportClosed once the connection is lost
        finally:
            self.drain_waiters.remove(waiter)

    def send_ping(self, data: bytes) -> None:
        if self.protocol.state is _OPEN:
            self.protocol.send_ping(data)
            self.send_data()

    def send_pong(self, data: bytes) -> None:
        if self.protocol.state is _OPEN:
            self.protocol.send_pong(data)
            self.send_data()

    def send_close(self, code: int, reason: str) -> None:
        protocol = self.protocol
        if protocol.state is not _OPEN:
            return  # the library sent its Close already (an answer, or a failure)
        if protocol.failure is not None:
            # Failing after a held-back protocol error: Close and EOF now,
            # no closing handshake (RFC 6455 section 7.1.7).
            protocol.fail(code, reason)
        elif code == CloseCode.NO_STATUS_RCVD:
            protocol.send_close()
        else:
            protocol.send_close(code, reason)
        self.send_data()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def abort(self) -> None:
        drop(self.transport, self._app.settings.close_timeout)


def _library_response(response: Response, head_only: bool = False) -> LibraryResponse:
    try:
        phrase = http.HTTPStatus(response.status).phrase
    except ValueError:
        phrase = ""
    body = b"" if head_only else response.body
    return LibraryResponse(response.status, phrase, LibraryHeaders(response.wire_headers()), body)


backend_class: type[Backend] = WebsocketsBackend

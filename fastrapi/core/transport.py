"""The contract between the core and a backend: the only place they meet.

The core decides, a backend moves. A backend listens, parses the opening
HTTP request into a `Request`, and hands each upgrade request
(`Request.is_upgrade`) to `Application.handle_websocket` as a `Transport`;
plain requests go to `Application.handle_http`, which answers with a
`Response`.

Events travel by push, never by a reader task: once ``accept`` has sent the
101, the backend calls the `Receiver` it was given from wherever its library
produces each event (a protocol's ``data_received``, a parser's callback),
in order. The core answers pings, joins fragments, checks sizes and close
codes and queues messages for the handler right there; when its bounded
inbox is full it calls `Transport.pause_reading`, so TCP pushes back.

Writes are synchronous where the wire allows it: a control frame or a Close
is put in the socket's buffer at once (timers and callbacks send them), and
only whole messages and fragments are awaited, for flow control.

Adding a backend is one module in ``fastrapi/backends`` ending with
``backend_class: type[Backend] = MyBackend`` and one entry in `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from socket import socket
from ssl import SSLContext
from typing import Protocol

from anyio.abc import TaskStatus

from fastrapi.core.request import Address, Request
from fastrapi.core.settings import Settings

# name -> one-line description. The module fastrapi.backends.<name> holds it.
BACKENDS: dict[str, str] = {
    "wsproto": "wsproto and h11 on an asyncio protocol: pure Python, sans-I/O, the reference backend",
    "websockets": "the websockets library's asyncio server",
    "aiohttp": "aiohttp's web server and its compiled frame reader",
}
# Chosen by measurement (bench/results, README "Benchmarks"): the fastest on
# request/response, round trips, handshakes and pipelining, and it passes
# the whole conformance suite and Autobahn like the others.
DEFAULT_BACKEND = "aiohttp"

HeaderList = Sequence[tuple[str, str]]
# Responses that never have content: no Content-Length either (RFC 9110
# sections 8.6 and 15.4.5; a 304's would have to be the 200's length).
BODILESS_STATUSES = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response to a request that did not become a WebSocket."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def text(cls, status: int, text: str, headers: HeaderList = ()) -> Response:
        return cls(status, [("content-type", "text/plain; charset=utf-8"), *headers], text.encode())

    @classmethod
    def html(cls, html: str, status: int = 200) -> Response:
        return cls(status, [("content-type", "text/html; charset=utf-8")], html.encode())

    def wire_headers(self) -> list[tuple[str, str]]:
        """The headers as sent: ours plus the framing every backend uses.

        One request per connection on every backend: the length is always
        given (but for a 204 or 304, which have no content), and the server
        closes the connection after the response.
        """
        if self.status in BODILESS_STATUSES:
            return [*self.headers, ("connection", "close")]
        return [*self.headers, ("content-length", str(len(self.body))), ("connection", "close")]


class Receiver(Protocol):
    """What a backend calls as its library reports events: the core's `Channel`.

    Each method is synchronous and cheap, called in the order the events
    arrived, and never raises.
    """

    def message_received(self, data: str | bytes) -> None:
        """A whole message: str for text (already valid UTF-8), bytes for binary."""
        ...

    def fragment_received(self, data: str | bytes | bytearray, final: bool, text: bool | None) -> None:
        """A piece of a message that may be fragmented (RFC 6455 section 5.4).

        ``text`` is the message's type, required on the first piece and
        None where the library does not say (continuations). A text piece
        may be str, or bytes of UTF-8 that the core decodes (a character may
        span pieces). A final piece with nothing before it is a whole message.
        Pieces before the final one may be a bytearray (the core copies them
        once, when it joins the message); the final piece is str or bytes.
        """
        ...

    def ping_received(self, data: bytes) -> None:
        """A Ping the library did not answer itself; the core sends the Pong."""
        ...

    def pong_received(self, data: bytes) -> None: ...

    def close_received(self, code: int | None, reason: str) -> None:
        """The peer's Close frame (``code`` None when it had no payload).

        The core checks the code, answers with its own Close (a no-op on a
        library that already did) and then closes TCP (section 7.1.1).
        """
        ...

    def protocol_error(self, code: int, reason: str) -> None:
        """The peer broke the protocol and the library sent nothing about it.

        Events before it were reported first; nothing is reported after it
        (the backend reads no more). The core lets the handler read what
        came before, then fails the connection with ``code`` (section 7.1.7).
        """
        ...

    def connection_lost(self, code: int = 1006, reason: str = "") -> None:
        """TCP is gone. ``code``/``reason`` are the library's own Close if it
        failed the connection itself (a too-big message, say), else 1006."""
        ...


class Transport(Protocol):
    """One WebSocket connection as a backend offers it to the core.

    Nothing here waits except `accept`, `reject`, `send_fragment` and what
    `send` returns when it must wait; those raise `TransportClosed` once the connection is
    gone, and nothing else. The core never sends after a Close and never
    calls two awaited sends of fragments at once.
    """

    request: Request

    async def accept(self, subprotocol: str | None, headers: HeaderList, receiver: Receiver) -> None:
        """Send the 101 with ``subprotocol`` and the extra ``headers``, then push
        every event to ``receiver``."""
        ...

    async def reject(self, response: Response) -> None:
        """Answer the handshake with an HTTP error response and close; no 101 is ever sent."""
        ...

    def send(self, data: str | bytes) -> Awaitable[None] | None:
        """Write one whole message now (str as text, bytes as binary).

        Returns None when that is all, which is nearly always: no coroutine
        per message. Returns an awaitable when the sender must wait: the
        write buffer is over ``write_limit`` (done once it drained), or the
        transport's writes are themselves awaited (ASGI). `TransportClosed`
        comes from the call or from the awaitable.
        """
        ...

    async def send_fragment(self, data: str | bytes, first: bool, final: bool) -> None:
        """Send one frame of a fragmented message: the first frame is text or
        binary by ``data``'s type, later ones continuations (section 5.4)."""
        ...

    def send_ping(self, data: bytes) -> None: ...

    def send_pong(self, data: bytes) -> None: ...

    def send_close(self, code: int, reason: str) -> None:
        """Write our Close frame; a no-op if one was sent already (by the library, say)."""
        ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None:
        """Close TCP now; frames still buffered get ``close_timeout`` to go
        out, then the socket is cut. Idempotent; never raises."""
        ...


class Application(Protocol):
    """What a backend calls into: implemented by the core's `FastrAPI`."""

    @property
    def settings(self) -> Settings: ...

    async def handle_websocket(self, transport: Transport) -> None:
        """Run a WebSocket upgrade request to its end; never raises."""
        ...

    async def handle_http(self, request: Request) -> Response:
        """Answer a request that is not a WebSocket upgrade."""
        ...

    def lifespan_context(self) -> AbstractAsyncContextManager[None]:
        """Start-up on enter, shutdown on exit; raises `LifespanStartupError`."""
        ...


class Server(Protocol):
    """A listening backend, as reported by `Backend.run` once bound."""

    @property
    def addresses(self) -> list[Address]:
        """Where it listens (the real port when 0 was asked for)."""
        ...

    async def stop_accepting(self) -> None:
        """Close the listening sockets; open connections go on."""
        ...


class Backend(Protocol):
    """A transport library adapted to the core."""

    def __init__(self, app: Application) -> None: ...

    async def run(
        self,
        host: str,
        port: int,
        tls: SSLContext | None,
        *,
        task_status: TaskStatus[Server],
        sock: socket | None = None,
    ) -> None:
        """Listen on ``host:port`` (over TLS with ``tls``, a server-side
        context), report the `Server` through ``task_status``, then serve;
        return after `Server.stop_accepting` once every connection has
        ended. Cancelling it drops every connection.

        ``sock``, when given, is a TCP socket the core already bound: listen
        on it instead (``host`` and ``port`` then only name it), as
        ``loop.create_server(sock=...)`` does, and close it on the way out.
        The core passes one to each worker process of ``serve(workers=N)``:
        on Linux the worker's own, bound with SO_REUSEPORT to the port the
        others share; elsewhere one listening socket every worker inherited.
        """
        ...

"""The contract between the core and a backend: the only place they meet.

The core decides, a backend moves. A backend listens on a socket, parses the
opening HTTP request into a `Request`, and hands each request that asks for
an upgrade (`Request.is_upgrade`) to `Application.handle_websocket` as a
`Transport`; the core checks the handshake itself. From then on the core owns
routing, the handshake decision (accept with a subprotocol and headers, or an
HTTP status), the state machine, limits, close codes and errors; the transport
only performs what it is told and reports what arrived. Plain HTTP requests go
to `Application.handle_http`, which answers with a `Response`.

Adding a backend is one module in ``fastrapi/backends`` ending with
``backend_class: type[Backend] = MyBackend`` and one entry in `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from anyio.abc import TaskStatus

from fastrapi.core.events import Event, Message, Ping, Pong
from fastrapi.core.request import Address, Request
from fastrapi.core.settings import Settings

# name -> one-line description. The module fastrapi.backends.<name> holds it.
BACKENDS: dict[str, str] = {
    "wsproto": "wsproto and h11 on anyio: pure Python, sans-I/O, the reference backend",
    "websockets": "the websockets library's asyncio server",
    "aiohttp": "aiohttp.web with a WebSocketResponse",
}
DEFAULT_BACKEND = "wsproto"

HeaderList = Sequence[tuple[str, str]]


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


class Transport(Protocol):
    """One WebSocket connection as a backend offers it to the core.

    The core calls these methods from one task at a time per direction: one
    task in `receive`, and sends (`send`, `close`) serialised by the core, so
    a transport needs no locks of its own. Every method raises
    `TransportClosed` once the connection is gone, and nothing else.
    """

    request: Request

    async def accept(self, subprotocol: str | None, headers: HeaderList) -> None:
        """Answer the handshake with 101, ``subprotocol`` and the extra ``headers``."""
        ...

    async def reject(self, response: Response) -> None:
        """Answer the handshake with an HTTP error response; no 101 is ever sent."""
        ...

    async def receive(self) -> Event:
        """Wait for the next event; after `Closed` it is not called again.

        Messages may come as fragments (``final=False``). Pings and Pongs are
        reported, not answered: the core answers. A peer's Close is answered by
        the transport (RFC 6455 section 5.5.1), which then reports `Closed`.
        A protocol error is reported as `ProtocolError` with nothing sent
        yet, where the library allows it (the core then calls `close` and
        `abort`); else as `Closed` after the library sent its Close.
        """
        ...

    async def send(self, event: Message | Ping | Pong) -> None:
        """Send one message or control frame.

        A message may come in fragments: events with ``final=False``, of
        one type, then one with ``final=True``; the first is sent as a text
        or binary frame, the rest as continuation frames (RFC 6455 section
        5.4). Control frames may come between fragments; other messages not.
        """
        ...

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake: send a Close frame; `receive` reports `Closed` when done."""
        ...

    async def abort(self) -> None:
        """Drop the TCP connection now, without a handshake. Idempotent; never raises."""
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

    async def run(self, host: str, port: int, *, task_status: TaskStatus[Server]) -> None:
        """Listen on ``host:port``, report the `Server` through ``task_status``,
        then serve; return after `Server.stop_accepting` once every connection
        has ended. Cancelling it drops every connection.
        """
        ...

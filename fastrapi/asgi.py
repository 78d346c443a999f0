"""fastrapi as an ASGI 3 application: ``uvicorn module:app`` serves it unchanged.

`FastrAPI.__call__` lands here. The ASGI server owns the socket and the
WebSocket protocol (frames, pings, compression, frame limits); the core
still routes, checks the handshake (Origin, request size), runs the state
machine, bounds messages by ``max_message_size`` and applies its timeouts
and close codes. The server's pings replace the core's keepalive, which is
off here: ASGI has no way to send a ping or see a pong.

ASGI is pull-based, so each connection has one reader task that takes the
server's events and pushes them to the core's `Receiver`, as a backend's
parser callback does; it stops taking while the core has paused reading,
which leaves the server's own buffer to push back on TCP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from fastrapi.core.body import BodyBuffer, check_announced, too_large
from fastrapi.core.codes import CloseCode
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.request import Address, Headers, Request
from fastrapi.core.transport import BODILESS_STATUSES, HeaderList, Receiver, Response

if TYPE_CHECKING:
    from fastrapi.core.app import FastrAPI

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def handle(app: FastrAPI, scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await _websocket(app, scope, receive, send)
    elif kind == "http":
        await _http(app, scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(app, receive, send)
    else:
        raise ValueError(f"fastrapi does not handle ASGI scope type {kind!r}")


def _request(scope: Scope, method: str, scheme: str) -> Request:
    # Routing is on the path below the mount point (Starlette's Mount and
    # servers started with --root-path give a root_path).
    path: str = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
    path = path.partition("?")[0]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    query = scope.get("query_string", b"").decode("latin-1")
    client = scope.get("client")
    return Request(
        method=method,
        target=f"{path}?{query}" if query else path,
        headers=Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        ),
        client=Address(str(client[0]), int(client[1])) if client else None,
        scheme=scheme,
    )


# -- WebSocket ---------------------------------------------------------------


async def _websocket(app: FastrAPI, scope: Scope, receive: Receive, send: Send) -> None:
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    request = _request(scope, "GET", scope.get("scheme", "ws"))
    transport = AsgiTransport(request, scope, receive, send)
    settings = replace(app.settings, ping_interval=None)  # the ASGI server pings
    async with anyio.create_task_group() as task_group:
        transport.task_group = task_group
        await app.handle_websocket(transport, settings)
        task_group.cancel_scope.cancel()


class AsgiTransport:
    """The core's `Transport` over one ASGI ``websocket`` scope."""

    def __init__(self, request: Request, scope: Scope, receive: Receive, send: Send) -> None:
        self.request = request
        self._receive = receive
        self._send = send
        self._response_extension = "websocket.http.response" in scope.get("extensions", {})
        self.task_group: anyio.abc.TaskGroup | None = None
        self._receiver: Receiver | None = None
        self._reading = anyio.Event()
        self._reading.set()
        self._closed = False  # the server said disconnect, or we sent our close
        self._gone = False  # the server said disconnect

    async def accept(self, subprotocol: str | None, headers: HeaderList, receiver: Receiver) -> None:
        self._receiver = receiver
        await self._emit(
            {
                "type": "websocket.accept",
                "subprotocol": subprotocol,
                "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
            }
        )
        assert self.task_group is not None
        self.task_group.start_soon(self._read)

    async def reject(self, response: Response) -> None:
        if self._response_extension:
            headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.wire_headers()]
            await self._emit(
                {"type": "websocket.http.response.start", "status": response.status, "headers": headers}
            )
            await self._emit({"type": "websocket.http.response.body", "body": response.body})
        else:  # the server answers 403
            await self._emit({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
        self._closed = True

    def send(self, data: str | bytes) -> Awaitable[None]:
        if self._closed:
            raise TransportClosed("the connection is closed")
        if isinstance(data, str):
            return self._emit({"type": "websocket.send", "text": data})
        return self._emit({"type": "websocket.send", "bytes": data})

    async def send_fragment(self, data: str | bytes, first: bool, final: bool) -> None:
        raise TransportClosed("ASGI sends whole messages only; use send_text/send_bytes under ASGI")

    def send_ping(self, data: bytes) -> None:
        pass  # the ASGI server owns pings; the core's keepalive is off here

    def send_pong(self, data: bytes) -> None:
        pass  # the ASGI server answers pings itself

    def send_close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        assert self.task_group is not None
        # The core calls this synchronously; the server's reply comes as a disconnect.
        self.task_group.start_soon(self._emit_close, code, reason)

    def pause_reading(self) -> None:
        self._reading = anyio.Event()

    def resume_reading(self) -> None:
        self._reading.set()

    def abort(self) -> None:
        if not self._closed:
            self.send_close(CloseCode.INTERNAL_ERROR, "")

    async def _emit_close(self, code: int, reason: str) -> None:
        try:
            await self._emit({"type": "websocket.close", "code": code, "reason": reason})
        except TransportClosed:
            pass  # the client left first: its disconnect already ended the session

    async def _emit(self, message: Message) -> None:
        if self._gone:
            raise TransportClosed("the client is gone")
        try:
            await self._send(message)
        except OSError as error:  # servers raise their own OSError subclasses on a gone client
            raise TransportClosed(str(error)) from error

    async def _read(self) -> None:
        receiver = self._receiver
        assert receiver is not None
        while True:
            await self._reading.wait()
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                receiver.message_received(text if text is not None else bytes(message.get("bytes") or b""))
            elif kind == "websocket.disconnect":
                self._gone = True
                code = int(message.get("code", CloseCode.ABNORMAL_CLOSURE))
                if code == CloseCode.ABNORMAL_CLOSURE:
                    receiver.connection_lost()
                else:
                    receiver.close_received(
                        None if code == CloseCode.NO_STATUS_RCVD else code, message.get("reason") or ""
                    )
                    receiver.connection_lost(code, message.get("reason") or "")
                return


# -- HTTP ----------------------------------------------------------------------


async def _http(app: FastrAPI, scope: Scope, receive: Receive, send: Send) -> None:
    request = _request(scope, scope["method"], scope.get("scheme", "http"))
    settings = app.settings
    response = check_announced(request, settings)  # 413 before any of the body is read
    if response is None:
        body = BodyBuffer(settings.max_body_size)
        more = True
        while more:  # ends with the body's last message; bounded by max_body_size
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            more = bool(message.get("more_body", False))
            if not body.add(message.get("body", b"")):
                response = too_large(settings)
                break
        if response is None:
            response = await app.handle_http(replace(request, body=body.take()))
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
    if response.status not in BODILESS_STATUSES:
        headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    body_out = b"" if scope["method"] == "HEAD" else response.body
    await send({"type": "http.response.body", "body": body_out})


# -- lifespan ------------------------------------------------------------------


async def _lifespan(app: FastrAPI, receive: Receive, send: Send) -> None:
    message = await receive()
    assert message["type"] == "lifespan.startup"
    context = app.lifespan_context()
    try:
        await context.__aenter__()
    except Exception as error:  # a LifespanStartupError, whose text names the cause
        await send({"type": "lifespan.startup.failed", "message": str(error)})
        return
    await send({"type": "lifespan.startup.complete"})
    message = await receive()  # lifespan.shutdown
    try:
        await context.__aexit__(None, None, None)
    except Exception as error:
        await send({"type": "lifespan.shutdown.failed", "message": f"{type(error).__name__}: {error}"})
        return
    await send({"type": "lifespan.shutdown.complete"})

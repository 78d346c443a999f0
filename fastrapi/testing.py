"""Test an app in-process, with no sockets: `TestClient` (blocking) and `AsyncTestClient`.

Both run the real core over the memory transport (`fastrapi.backends.memory`):
routing, the handshake checks, the state machine, the limits and the close
codes are the ones a server applies. Every wait is bounded by ``timeout``
and fails with `TimeoutError` instead of hanging.

    def test_echo():
        with TestClient(app) as client:
            with client.websocket_connect("/chat/lobby?name=ann") as ws:
                ws.send_text("hi")
                assert ws.receive_text() == "hi"

`TestClient` runs the app's event loop in a thread of its own (anyio's
blocking portal) and offers the same calls as `AsyncTestClient`, without
``await``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from fastrapi.backends.memory import Accepted, MemoryClient, MemoryTransport, make_request
from fastrapi.core import json
from fastrapi.core.app import FastrAPI
from fastrapi.core.events import BytesMessage, Closed, Message, Ping, Pong, TextMessage
from fastrapi.core.exceptions import MessageTypeError, WebSocketDisconnect
from fastrapi.core.request import Headers, Request
from fastrapi.core.session import handler_errors
from fastrapi.core.transport import Response

DEFAULT_TIMEOUT = 5.0


class WebSocketDenied(Exception):
    """The handshake was refused before ``accept()``: the HTTP answer instead of a 101."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__(f"the WebSocket handshake was refused with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.headers = headers
        self.body = body


class TestResponse:
    """An HTTP response, as `client.get(...)` returns it."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, response: Response) -> None:
        self.status_code = response.status
        self.headers = Headers(response.headers)
        self.content = response.body

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


class AsyncTestWebSocket:
    """The client's end of one connection: what `websocket_connect` yields."""

    def __init__(self, client: MemoryClient, accepted: Accepted, path: str, timeout: float) -> None:
        self._client = client
        self._path = path
        self._timeout = timeout
        self.accepted_subprotocol = accepted.subprotocol
        self.accepted_headers = accepted.headers  # the 101's extra headers
        self.close_code: int | None = None  # the server's close code, once it closed

    async def send_text(self, data: str) -> None:
        await self._client.send(TextMessage(data))

    async def send_bytes(self, data: bytes) -> None:
        await self._client.send(BytesMessage(bytes(data)))

    async def send_json(self, data: Any, mode: str = "text") -> None:
        encoded = json.dumps(data)
        await (self.send_text(encoded.decode()) if mode == "text" else self.send_bytes(encoded))

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message; `WebSocketDisconnect` once the server closed."""
        if self.close_code is not None:
            raise WebSocketDisconnect(self.close_code)
        limit = self._timeout if timeout is None else timeout
        try:
            with anyio.fail_after(limit):
                event = await self._client.receive()
                while isinstance(event, Ping | Pong):  # the core's keepalive: the transport answers
                    event = await self._client.receive()
        except TimeoutError:
            raise TimeoutError(f"nothing received from {self._path} within {limit} s") from None
        if isinstance(event, Closed):
            self.close_code = event.code
            raise WebSocketDisconnect(event.code, event.reason)
        return event

    async def receive_text(self, timeout: float | None = None) -> str:
        message = await self.receive(timeout)
        if not isinstance(message, TextMessage):
            raise MessageTypeError("expected a text message, got binary", message)
        return message.data

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        message = await self.receive(timeout)
        if not isinstance(message, BytesMessage):
            raise MessageTypeError("expected a binary message, got text", message)
        return message.data

    async def receive_json(self, timeout: float | None = None) -> Any:
        message = await self.receive(timeout)
        return json.loads(message.data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None and not self._client.transport.aborted:
            await self._client.close(code, reason)


class _Session:
    """One connection's session task, which the client can stop."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self._scope = anyio.CancelScope()

    async def run(self, app: FastrAPI, transport: MemoryTransport) -> None:
        with self._scope:
            await app.handle_websocket(transport)
        self.done.set()

    def stop(self) -> None:
        self._scope.cancel()  # a handler that outlived its connection's block


class AsyncTestClient:
    """Drive ``app`` from an async test: ``async with AsyncTestClient(app) as client``."""

    def __init__(self, app: FastrAPI, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.app = app
        self.timeout = timeout
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> AsyncTestClient:
        # The app's lifespan runs around the client, as around a server, and
        # the sessions inside it.
        with anyio.fail_after(self.timeout):
            await self._stack.enter_async_context(self.app.lifespan_context())
        self._tasks = await self._stack.enter_async_context(anyio.create_task_group())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    @asynccontextmanager
    async def websocket_connect(
        self,
        path: str,
        subprotocols: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[AsyncTestWebSocket]:
        """Open a connection to ``path``; the block's end closes it (1000) if
        nobody did, and re-raises the handler's exception, if it raised one.

        Raises:
            WebSocketDenied: the handler refused the handshake.
            TimeoutError: no answer to the handshake within the timeout.
        """
        limit = self.timeout if timeout is None else timeout
        request = make_request(path, list((headers or {}).items()), subprotocols)
        transport = MemoryTransport(request)
        client = MemoryClient(transport)
        errors: list[BaseException] = []
        token = handler_errors.set(errors)  # the session task starts with this context
        try:
            session = _Session()
            self._tasks.start_soon(session.run, self.app, transport)
        finally:
            handler_errors.reset(token)
        try:
            try:
                with anyio.fail_after(limit):
                    answer = await client.wait_handshake()
            except TimeoutError:
                raise TimeoutError(f"no answer to the handshake for {path} within {limit} s") from None
            if isinstance(answer, Response):
                raise WebSocketDenied(answer.status, answer.headers, answer.body)
            ws = AsyncTestWebSocket(client, answer, path, limit)
            try:
                yield ws
            finally:
                await ws.close()
                # The session ends once the close is answered.
                with anyio.move_on_after(limit):
                    await session.done.wait()
        finally:
            session.stop()
            transport.abort()
        if errors:
            raise errors[0]

    async def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> TestResponse:
        """An HTTP request to the app's HTTP routes (bodies are not passed yet)."""
        items = [("host", "testserver"), *(headers or {}).items()]
        with anyio.fail_after(self.timeout):
            response = await self.app.handle_http(Request(method.upper(), path, Headers(items)))
        return TestResponse(response)

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> TestResponse:
        return await self.request("GET", path, headers)

    async def head(self, path: str, headers: Mapping[str, str] | None = None) -> TestResponse:
        return await self.request("HEAD", path, headers)

    async def post(self, path: str, headers: Mapping[str, str] | None = None) -> TestResponse:
        return await self.request("POST", path, headers)


class TestWebSocket:
    """`AsyncTestWebSocket`'s calls, blocking: each runs in the app's loop."""

    __test__ = False

    def __init__(self, portal: BlockingPortal, ws: AsyncTestWebSocket) -> None:
        self._portal = portal
        self._ws = ws
        self.accepted_subprotocol = ws.accepted_subprotocol
        self.accepted_headers = ws.accepted_headers

    def send_text(self, data: str) -> None:
        self._portal.call(self._ws.send_text, data)

    def send_bytes(self, data: bytes) -> None:
        self._portal.call(self._ws.send_bytes, data)

    def send_json(self, data: Any, mode: str = "text") -> None:
        self._portal.call(self._ws.send_json, data, mode)

    def receive(self, timeout: float | None = None) -> Message:
        return self._portal.call(self._ws.receive, timeout)

    def receive_text(self, timeout: float | None = None) -> str:
        return self._portal.call(self._ws.receive_text, timeout)

    def receive_bytes(self, timeout: float | None = None) -> bytes:
        return self._portal.call(self._ws.receive_bytes, timeout)

    def receive_json(self, timeout: float | None = None) -> Any:
        return self._portal.call(self._ws.receive_json, timeout)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._portal.call(self._ws.close, code, reason)


class TestClient:
    """Drive ``app`` from a plain (synchronous) test: ``with TestClient(app) as client``."""

    __test__ = False

    def __init__(self, app: FastrAPI, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._client = AsyncTestClient(app, timeout)
        self._portals = ExitStack()
        self._portal: BlockingPortal | None = None

    def __enter__(self) -> TestClient:
        portal = self._portals.enter_context(start_blocking_portal())
        try:
            # One task in the portal enters and exits the async client, as
            # anyio's task groups and cancel scopes (the lifespan's too) need.
            self._portals.enter_context(portal.wrap_async_context_manager(self._client))
        except BaseException:
            self._portals.close()
            raise
        self._portal = portal
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._portal = None
        self._portals.close()

    @property
    def portal(self) -> BlockingPortal:
        if self._portal is None:
            raise RuntimeError("use the client inside `with TestClient(app) as client:`")
        return self._portal

    @contextmanager
    def websocket_connect(
        self,
        path: str,
        subprotocols: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[TestWebSocket]:
        portal = self.portal
        connection = self._client.websocket_connect(path, subprotocols, headers, timeout)
        with portal.wrap_async_context_manager(connection) as ws:
            yield TestWebSocket(portal, ws)

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> TestResponse:
        return self.portal.call(self._client.request, method, path, headers)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> TestResponse:
        return self.request("GET", path, headers)

    def head(self, path: str, headers: Mapping[str, str] | None = None) -> TestResponse:
        return self.request("HEAD", path, headers)

    def post(self, path: str, headers: Mapping[str, str] | None = None) -> TestResponse:
        return self.request("POST", path, headers)

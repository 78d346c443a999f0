"""Test an app in-process, with no sockets: `TestClient` (blocking) and `AsyncTestClient`.

Both run the real core over the memory transport (`fastrapi.backends.memory`):
routing, the handshake checks, the state machine, the limits and the close
codes are the ones a server applies, and the app's lifespan runs around the
client as it runs around a server. Every wait is bounded by ``timeout`` and
fails with a `TimeoutError` that says what it waited for, never a hang::

    def test_echo():
        with TestClient(app) as client:
            with client.websocket_connect("/chat/lobby?name=ann") as ws:
                ws.send_text("hi")
                assert ws.receive_text() == "hi"

What a test sees:

- a handshake refused before ``accept()`` (the handler returned or closed,
  ``deny()``, no route, a bad Origin): `WebSocketDenied`, with the response;
- a close from the server: `WebSocketDisconnect` with its code and reason, on
  the next receive;
- an exception raised by the handler: raised again in the test when the
  ``websocket_connect`` block ends (``raise_server_exceptions=False`` leaves
  only what a client sees: HTTP 500, or close 1011).

`AsyncTestClient` is the implementation; `TestClient` runs it on an event loop
in a thread of its own (anyio's blocking portal) and offers the same calls
without ``await``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any, Literal, TypedDict, Unpack, cast

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal

from fastrapi.backends.memory import TEST_CLIENT, Accepted, MemoryClient, MemoryTransport, make_request
from fastrapi.core.app import FastrAPI
from fastrapi.core.events import BytesMessage, Closed, Message, Ping, Pong, TextMessage
from fastrapi.core.exceptions import MessageTypeError, TransportClosed, WebSocketDisconnect
from fastrapi.core.json import dumps, loads
from fastrapi.core.request import Headers, Request
from fastrapi.core.session import handler_errors
from fastrapi.core.transport import Response

DEFAULT_TIMEOUT = 5.0  # seconds, for every wait of a client: a hang guard

HeaderItems = Mapping[str, str] | Sequence[tuple[str, str]]


class RequestOptions(TypedDict, total=False):
    """What every HTTP call takes besides the method and the path."""

    headers: HeaderItems | None
    content: bytes | str | None  # the body; a str is sent as UTF-8 text
    json: Any  # the body as JSON (not with content)


class WebSocketDenied(Exception):
    """The server answered the WebSocket handshake with an HTTP response, not a 101.

    Attributes:
        status: the HTTP status: 403 when the handler returned or closed
            before ``accept()``, 404 when no route matched, ``deny()``'s own...
        headers: the response's headers, as a client receives them.
        body: the response's body.
    """

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        detail = f": {body[:200]!r}" if body else ""
        super().__init__(f"the WebSocket handshake was refused with HTTP {status}{detail}")
        self.status = status
        self.headers = headers
        self.body = body


class TestResponse:
    """The answer to an HTTP request, as ``client.get(...)`` returns it.

    Attributes:
        status_code: the HTTP status.
        headers: the headers as a client receives them (with content-length).
        content: the body; empty for a HEAD request, as on the wire.
    """

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, response: Response, method: str) -> None:
        self.status_code = response.status
        self.headers = Headers(response.wire_headers())
        self.content = b"" if method == "HEAD" else response.body

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            InvalidJSON: the body is not JSON.
        """
        return loads(self.content)

    def __repr__(self) -> str:
        return f"<TestResponse {self.status_code}>"


class AsyncTestWebSocket:
    """The client's end of one connection, as ``websocket_connect`` yields it.

    Attributes:
        accepted_subprotocol: the subprotocol the server chose, or None.
        extra_headers: the headers the handler added to the 101 (``accept(headers=...)``).
    """

    def __init__(self, client: MemoryClient, accepted: Accepted, path: str, timeout: float) -> None:
        self._client = client
        self._path = path
        self._timeout = timeout
        self._closed: Closed | None = None  # how the connection ended, once this end knows
        self._parts: list[Message] = []  # the fragments of a message still arriving
        self.accepted_subprotocol = accepted.subprotocol
        self.extra_headers = Headers(accepted.headers)

    @property
    def close_code(self) -> int | None:
        """The server's close code once the close was seen (1006 if it vanished)."""
        return None if self._closed is None else self._closed.code

    @property
    def close_reason(self) -> str | None:
        return None if self._closed is None else self._closed.reason

    # -- sending ------------------------------------------------------------

    async def send_text(self, data: str) -> None:
        """Send a text message.

        Raises:
            TypeError: ``data`` is not a str.
            WebSocketDisconnect: the connection is over.
            TimeoutError: the app has not read enough to take it within the timeout.
        """
        if not isinstance(data, str):
            raise TypeError(f"send_text() takes a str, not {type(data).__name__}; use send_bytes() for bytes")
        await self._send(TextMessage(data), "send_text()")

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message; raises as `send_text` does."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"send_bytes() takes bytes, not {type(data).__name__}; use send_text() for str")
        await self._send(BytesMessage(bytes(data)), "send_bytes()")

    async def send_json(self, data: Any, mode: Literal["text", "binary"] = "text") -> None:
        """Send ``data`` as JSON in a text (default) or binary message."""
        payload = dumps(data)
        if mode == "text":
            await self._send(TextMessage(payload.decode()), "send_json()")
        elif mode == "binary":
            await self._send(BytesMessage(payload), "send_json()")
        else:
            raise ValueError(f'send_json() mode must be "text" or "binary", not {mode!r}')

    async def _send(self, message: Message, call: str) -> None:
        if self._closed is not None:
            raise WebSocketDisconnect(self._closed.code, self._closed.reason)
        try:
            with anyio.fail_after(self._timeout):
                await self._client.send(message)
        except TimeoutError:
            # Only while the core has paused reading: its inbox (max_queue)
            # and the connection's buffer are full because the handler does not read.
            raise TimeoutError(
                f"{call} to {self._path} could not send within {self._timeout} s: "
                "the app is not reading its messages"
            ) from None
        except anyio.BrokenResourceError:
            # The server ended the connection; what it sent before stays readable.
            sent = self._client.transport.sent_close or Closed(1006)
            raise WebSocketDisconnect(sent.code, sent.reason) from None

    # -- receiving ----------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message: a `TextMessage` or a `BytesMessage`.

        Args:
            timeout: seconds to wait instead of the client's timeout.

        Raises:
            WebSocketDisconnect: the server closed the connection (its code and
                reason), or it vanished (1006); again on every later call.
            TimeoutError: no message within the timeout.
        """
        return await self._receive("receive()", timeout)

    async def receive_text(self, timeout: float | None = None) -> str:
        """The next message, which must be text; raises `MessageTypeError` otherwise."""
        message = await self._receive("receive_text()", timeout)
        if not isinstance(message, TextMessage):
            raise MessageTypeError("text", message)
        return message.data

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """The next message, which must be binary; raises `MessageTypeError` otherwise."""
        message = await self._receive("receive_bytes()", timeout)
        if not isinstance(message, BytesMessage):
            raise MessageTypeError("binary", message)
        return message.data

    async def receive_json(self, timeout: float | None = None) -> Any:
        """The next message (text or binary) parsed as JSON; raises `InvalidJSON` if it is not."""
        message = await self._receive("receive_json()", timeout)
        return loads(message.data)

    async def _receive(self, call: str, timeout: float | None) -> Message:
        if self._closed is not None:
            raise WebSocketDisconnect(self._closed.code, self._closed.reason)
        limit = self._timeout if timeout is None else timeout
        try:
            with anyio.fail_after(limit):
                event = await self._next_event()
        except TimeoutError:
            raise TimeoutError(f"{call} got no message from {self._path} within {limit} s") from None
        if isinstance(event, Closed):
            self._closed = event
            raise WebSocketDisconnect(event.code, event.reason)
        return event

    async def _next_event(self) -> Message | Closed:
        """The next message, its fragments joined (``send_fragments``), or the Close.

        Fragments read before a deadline cut the wait stay in ``_parts``: the
        next call goes on with the same message.
        """
        parts = self._parts
        while True:  # bounded by the caller's deadline and the server's end
            frame = await self._next_frame()
            if isinstance(frame, Closed):
                parts.clear()  # a message abandoned midway: only its Close counts
                return frame
            if frame.final and not parts:
                return frame
            parts.append(frame)
            if frame.final:
                break
        # Every fragment of a message has the first one's type (RFC 6455 section 5.4).
        first, self._parts = parts[0], []
        if isinstance(first, TextMessage):
            return TextMessage("".join(cast(str, part.data) for part in parts))
        return BytesMessage(b"".join(cast(bytes, part.data) for part in parts))

    async def _next_frame(self) -> Message | Closed:
        event = await self._client.receive()
        # The transport answers the core's pings itself, and a Pong only
        # answers a ping, which this client never sends.
        assert not isinstance(event, Ping | Pong)
        return event

    # -- closing ------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a Close and wait for the server's (RFC 6455 section 7.1.2).

        Messages that arrive before the server's Close are dropped, as client
        libraries drop them. Does nothing once the connection is closed. The
        code is sent as given, so a test can send one the server must refuse.

        Raises:
            TimeoutError: no Close came back within the timeout (the app is not reading).
        """
        if self._closed is not None:
            return
        try:
            with anyio.fail_after(self._timeout):
                with contextlib.suppress(anyio.BrokenResourceError):  # gone already: its Close is queued
                    await self._client.close(code, reason)
                event = await self._next_event()
                while not isinstance(event, Closed):  # bounded by the deadline and the server's end
                    event = await self._next_event()
        except TimeoutError:
            self._closed = Closed(1006, "the closing handshake timed out")
            raise TimeoutError(
                f"close() to {self._path}: no Close came back within {self._timeout} s"
            ) from None
        self._closed = event


class _Connection:
    """One WebSocket session of the app, run as a task of the client."""

    def __init__(self, request: Request) -> None:
        self.transport = MemoryTransport(request, answer_pings=True)
        self.client = MemoryClient(self.transport)
        self.errors: list[BaseException] = []  # what the handler raised (filled by the core)
        self.done = anyio.Event()
        self._scope = anyio.CancelScope()

    async def run(self, app: FastrAPI) -> None:
        with self._scope:
            await app.handle_websocket(self.transport)
        self.done.set()

    def stop(self) -> None:
        # A handler still running once its block is over is cut, as a
        # server's shutdown cuts it once its grace is over.
        self._scope.cancel()
        self.transport.abort()

    def take_error(self) -> BaseException | None:
        return self.errors.pop(0) if self.errors else None


class AsyncTestClient:
    """Drive ``app`` from an async test: ``async with AsyncTestClient(app) as client``.

    Args:
        app: the application; its lifespan runs on enter and exit.
        timeout: seconds for every wait (the lifespan's start-up and shutdown,
            a handshake, a receive, a send the app does not read, an HTTP
            answer) before `TimeoutError`.
        raise_server_exceptions: raise a handler's exception in the test when
            its ``websocket_connect`` block ends; False leaves only what a
            client sees (HTTP 500 before ``accept()``, close 1011 after).
    """

    def __init__(
        self, app: FastrAPI, *, timeout: float = DEFAULT_TIMEOUT, raise_server_exceptions: bool = True
    ) -> None:
        self.app = app
        self.timeout = timeout
        self.raise_server_exceptions = raise_server_exceptions
        self._task_group: TaskGroup | None = None
        self._shutdown_error: Exception | None = None

    def _running(self) -> TaskGroup:
        """The task group the sessions run in, once the client's block has begun."""
        if self._task_group is None:
            raise RuntimeError("use the client inside `async with AsyncTestClient(app) as client:`")
        return self._task_group

    # -- the client's life: the app's lifespan -----------------------------

    async def __aenter__(self) -> AsyncTestClient:
        # The test's exceptions never pass through this task group (anyio
        # would wrap them in an ExceptionGroup): it is left with none.
        tasks = anyio.create_task_group()
        await tasks.__aenter__()
        self._shutdown_error = None
        self._shutdown = anyio.Event()
        self._lifespan_over = anyio.Event()
        try:
            with anyio.fail_after(self.timeout):
                await tasks.start(self._run_lifespan)
        except BaseException as error:
            await tasks.__aexit__(None, None, None)  # start() has ended the lifespan's task
            if isinstance(error, TimeoutError):
                message = f"the app's lifespan start-up did not finish within {self.timeout} s"
                raise TimeoutError(message) from None
            raise
        self._task_group = tasks
        return self

    async def _run_lifespan(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # A task of its own: a lifespan may open task groups and cancel
        # scopes, which only the task that entered them may leave.
        started = False
        try:
            async with self.app.lifespan_context():
                task_status.started()
                started = True
                await self._shutdown.wait()
        except Exception as error:
            if not started:
                raise  # start() raises it in __aenter__: LifespanStartupError
            self._shutdown_error = error  # raised by __aexit__ as it is, not in an ExceptionGroup
        finally:
            self._lifespan_over.set()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Shutdown comes after the last connection, as on a server: each
        # websocket_connect block has waited for its own session.
        tasks = self._running()
        self._task_group = None
        self._shutdown.set()
        with anyio.CancelScope(shield=True):  # a cancelled test still shuts the app down, in time
            with anyio.move_on_after(self.timeout) as waiting:
                await self._lifespan_over.wait()
        if waiting.cancelled_caught:
            tasks.cancel_scope.cancel()
        await tasks.__aexit__(None, None, None)  # outside any scope entered since the group was
        if waiting.cancelled_caught:
            raise TimeoutError(f"the app's lifespan shutdown did not finish within {self.timeout} s")
        if self._shutdown_error is not None:
            raise self._shutdown_error

    # -- WebSocket ------------------------------------------------------------

    @asynccontextmanager
    async def websocket_connect(
        self,
        path: str,
        subprotocols: Sequence[str] = (),
        headers: HeaderItems | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[AsyncTestWebSocket]:
        """Open a WebSocket connection to ``path`` (with its query string) for the block.

        The block's end closes the connection with 1000 if it is still open,
        waits up to the timeout for the handler to end (then cancels it, as
        a server's shutdown does once its grace is over), and raises the
        handler's exception if it raised one.

        Args:
            subprotocols: offered in Sec-WebSocket-Protocol, most preferred first.
            headers: added to the upgrade request; one named like a default
                (``sec-websocket-version``, ``host``...) replaces it.
            timeout: seconds instead of the client's, for this connection's waits.

        Raises:
            WebSocketDenied: the server refused the handshake with an HTTP response.
            TimeoutError: the handler neither accepted nor refused within the timeout.
            WebSocketDisconnect: the server dropped the connection during the
                handshake (its ``open_timeout``).
        """
        limit = self.timeout if timeout is None else timeout
        connection = self._start(make_request(path, _header_list(headers), subprotocols))
        ws: AsyncTestWebSocket | None = None
        try:
            ws = await self._handshake(connection, path, limit)
            yield ws
        finally:
            with anyio.move_on_after(limit):
                if ws is not None:
                    with contextlib.suppress(TimeoutError):  # a handler that never reads: cut below
                        await ws.close()
                await connection.done.wait()
            connection.stop()
            error = connection.take_error()
            if error is not None and self.raise_server_exceptions:
                raise error  # the test's own exception, if any, is its __context__

    def _start(self, request: Request) -> _Connection:
        connection = _Connection(request)
        # The core puts a handler's exception in the list `handler_errors`
        # holds, besides logging it; the session task copies this context
        # when it is created. A context variable leaves the server's code
        # path and signatures as they are.
        token = handler_errors.set(connection.errors)
        try:
            self._running().start_soon(connection.run, self.app)
        finally:
            handler_errors.reset(token)
        return connection

    async def _handshake(self, connection: _Connection, path: str, limit: float) -> AsyncTestWebSocket:
        try:
            with anyio.fail_after(limit):
                answer = await connection.client.wait_handshake()
        except TimeoutError:
            raise TimeoutError(
                f"websocket_connect({path!r}) got no answer to its handshake within {limit} s: "
                "the handler neither accepted nor refused it"
            ) from None
        except TransportClosed:
            raise WebSocketDisconnect(
                1006, "the server dropped the connection during the handshake"
            ) from None
        if isinstance(answer, Accepted):
            return AsyncTestWebSocket(connection.client, answer, path, limit)
        # The core records the handler's exception before it answers 500.
        error = connection.take_error()
        if error is not None and self.raise_server_exceptions:
            raise error
        raise WebSocketDenied(answer.status, Headers(answer.wire_headers()), answer.body)

    # -- HTTP -----------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: HeaderItems | None = None,
        content: bytes | str | None = None,
        json: Any = None,
    ) -> TestResponse:
        """Send an HTTP request to the app's HTTP routes (``app.handle_http``).

        ``content`` or ``json`` is the body (``request.body`` in the handler)
        and sets the content-type (unless given) and content-length headers;
        one over ``max_body_size`` gets 413, as on a server. An HTTP
        handler's exception is the 500 a client sees (and the core logs it).

        Raises:
            ValueError: both ``content`` and ``json`` were given.
            TimeoutError: no response within the timeout.
        """
        self._running()  # the lifespan has run: handlers may need what it set up
        method = method.upper()
        items = _header_list(headers)
        given = {name.lower() for name, _ in items}
        if "host" not in given:
            items.insert(0, ("host", "testserver"))
        body = _body(content, json)
        payload = b""
        if body is not None:
            payload, kind = body
            if "content-type" not in given:
                items.append(("content-type", kind))
            items.append(("content-length", str(len(payload))))
        request = Request(method, path, Headers(items), TEST_CLIENT, scheme="http", body=payload)
        try:
            with anyio.fail_after(self.timeout):
                response = await self.app.handle_http(request)
        except TimeoutError:
            raise TimeoutError(f"{method} {path} got no response within {self.timeout} s") from None
        return TestResponse(response, method)

    async def get(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return await self.request("GET", path, **options)

    async def head(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return await self.request("HEAD", path, **options)

    async def options(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return await self.request("OPTIONS", path, **options)

    async def delete(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return await self.request("DELETE", path, **options)

    async def post(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return await self.request("POST", path, **options)

    async def put(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return await self.request("PUT", path, **options)

    async def patch(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return await self.request("PATCH", path, **options)


def _header_list(headers: HeaderItems | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def _body(content: bytes | str | None, json: Any) -> tuple[bytes, str] | None:
    """The body and its content-type."""
    if content is not None and json is not None:
        raise ValueError("pass content= or json=, not both")
    if json is not None:
        return dumps(json), "application/json"
    if isinstance(content, str):
        return content.encode(), "text/plain; charset=utf-8"
    if content is not None:
        return bytes(content), "application/octet-stream"
    return None


# -- the blocking client: the async one, called through the portal -------------


class TestWebSocket:
    """`AsyncTestWebSocket`'s calls, blocking: each runs in the app's event loop."""

    __test__ = False

    def __init__(self, portal: BlockingPortal, ws: AsyncTestWebSocket) -> None:
        self._portal = portal
        self._ws = ws

    @property
    def accepted_subprotocol(self) -> str | None:
        return self._ws.accepted_subprotocol

    @property
    def extra_headers(self) -> Headers:
        return self._ws.extra_headers

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._ws.close_reason

    def send_text(self, data: str) -> None:
        self._portal.call(self._ws.send_text, data)

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        self._portal.call(self._ws.send_bytes, data)

    def send_json(self, data: Any, mode: Literal["text", "binary"] = "text") -> None:
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
    """Drive ``app`` from a plain test: ``with TestClient(app) as client``.

    The arguments are `AsyncTestClient`'s. The app runs on an asyncio event
    loop in a thread of its own (``client.portal``), for the whole block.
    """

    __test__ = False

    def __init__(
        self, app: FastrAPI, *, timeout: float = DEFAULT_TIMEOUT, raise_server_exceptions: bool = True
    ) -> None:
        self._client = AsyncTestClient(app, timeout=timeout, raise_server_exceptions=raise_server_exceptions)
        self._stack: ExitStack | None = None
        self._portal: BlockingPortal | None = None

    @property
    def app(self) -> FastrAPI:
        return self._client.app

    @property
    def portal(self) -> BlockingPortal:
        """The portal into the app's event loop: ``client.portal.call(coroutine_function, ...)``."""
        if self._portal is None:
            raise RuntimeError("use the client inside `with TestClient(app) as client:`")
        return self._portal

    def __enter__(self) -> TestClient:
        with ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal("asyncio"))
            # One task of the portal enters and leaves the async client, as
            # its task group and the lifespan's scopes require.
            stack.enter_context(portal.wrap_async_context_manager(self._client))
            self._portal = portal
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack, self._portal = self._stack, None, None
        assert stack is not None  # set by __enter__, which ran
        stack.__exit__(exc_type, exc, tb)

    @contextmanager
    def websocket_connect(
        self,
        path: str,
        subprotocols: Sequence[str] = (),
        headers: HeaderItems | None = None,
        timeout: float | None = None,
    ) -> Iterator[TestWebSocket]:
        """`AsyncTestClient.websocket_connect`, as a plain ``with`` block."""
        portal = self.portal
        connection = self._client.websocket_connect(path, subprotocols, headers, timeout)
        with portal.wrap_async_context_manager(connection) as ws:
            yield TestWebSocket(portal, ws)

    def request(self, method: str, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        """`AsyncTestClient.request`, blocking."""
        return self.portal.call(functools.partial(self._client.request, method, path, **options))

    def get(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return self.request("GET", path, **options)

    def head(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return self.request("HEAD", path, **options)

    def options(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return self.request("OPTIONS", path, **options)

    def delete(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return self.request("DELETE", path, **options)

    def post(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return self.request("POST", path, **options)

    def put(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return self.request("PUT", path, **options)

    def patch(self, path: str, **options: Unpack[RequestOptions]) -> TestResponse:
        return self.request("PATCH", path, **options)

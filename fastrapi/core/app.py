"""The application: routes, settings, and the entry points that serve it."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from ssl import SSLContext
from typing import Any, TypeVar

import anyio

from fastrapi.core import server as _server
from fastrapi.core import workers as _workers
from fastrapi.core.body import check_body
from fastrapi.core.broker import Broker, LocalBroker
from fastrapi.core.groups import DEFAULT_OUTBOX, DEFAULT_OVERFLOW, Groups, Overflow
from fastrapi.core.handshake import check_size
from fastrapi.core.lifespan import Lifespan, LifespanStartupError, State, run_lifespan
from fastrapi.core.request import Request
from fastrapi.core.responses import as_response
from fastrapi.core.routing import Route, RouteError, Router
from fastrapi.core.session import run_session
from fastrapi.core.settings import Settings
from fastrapi.core.static import StaticFiles
from fastrapi.core.tls import server_context
from fastrapi.core.transport import DEFAULT_BACKEND, Response, Server, Transport
from fastrapi.core.websocket import WebSocket

logger = logging.getLogger("fastrapi.server")

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

UPGRADE_REQUIRED = Response.text(
    426,
    "This is a WebSocket endpoint; connect with a WebSocket client.",
    [("upgrade", "websocket"), ("sec-websocket-version", "13")],
)


class FastrAPI:
    """A WebSocket application.

    Args:
        settings: limits and timeouts; `Settings()` defaults otherwise.
        lifespan: an async context manager factory run around serving (see
            `fastrapi.core.lifespan`); what it yields lands on ``app.state``.
        group_overflow: the policy of ``app.groups`` for a member too slow
            for a broadcast, once its outbox is full (`fastrapi.core.groups`):
            "drop_newest" (the default), "drop_oldest", "close_1008" or "close_1013".
        group_outbox: how many broadcast messages may wait for a member that
            is behind, beyond ``write_limit`` bytes in its buffer (16).
        broker: what carries ``app.groups``' broadcasts to the other
            processes serving the app: a `Broker`, or a Redis URL
            (``"redis://host:6379/0"``, ``"rediss://..."`` for TLS,
            ``"unix:///path"``) for a `fastrapi.brokers.redis.RedisBroker`
            with its defaults. None (the default) keeps groups in this process.
        **overrides: individual settings, e.g. ``max_message_size=4 * 2**20``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        lifespan: Lifespan | None = None,
        group_overflow: Overflow = DEFAULT_OVERFLOW,
        group_outbox: int = DEFAULT_OUTBOX,
        broker: Broker | str | None = None,
        **overrides: Any,
    ) -> None:
        self._settings = replace(settings or Settings(), **overrides)
        self.groups = Groups(group_overflow, group_outbox, _broker(broker))
        self._lifespan = lifespan
        self.state = State()
        self.websocket_router = Router()
        self.http_routers: dict[str, Router] = {}  # method -> its routes
        self._live = _server.LiveConnections()

    @property
    def settings(self) -> Settings:
        return self._settings

    # -- routes -------------------------------------------------------------

    def websocket(self, path: str) -> Callable[[Handler], Handler]:
        """Register an async handler for WebSocket connections to ``path``.

        The handler gets the `WebSocket` (its first parameter, or the one
        annotated ``WebSocket``) and the path's parameters by name.

        Raises:
            RouteError: the template is malformed, duplicates another, or does
                not fit the handler's signature.
        """

        def register(endpoint: Handler) -> Handler:
            self.websocket_router.add(Route(path, endpoint, WebSocket))
            return endpoint

        return register

    def route(self, path: str, methods: Sequence[str] = ("GET",)) -> Callable[[Handler], Handler]:
        """Register an async handler for HTTP requests to ``path`` with any of ``methods``.

        It takes the path's parameters (and a `Request` if it annotates one:
        ``request.body`` and ``request.json()`` give the body) and returns a
        `Response`, a str (text/plain), bytes, or a dict or list (JSON). GET
        routes answer HEAD too; another method on the path gets 405 with an
        ``Allow`` header.

        Raises:
            RouteError: as for `websocket`, per method.
        """

        def register(endpoint: Handler) -> Handler:
            for method in methods:
                router = self.http_routers.setdefault(method.upper(), Router())
                router.add(Route(path, endpoint, Request, connection_required=False))
            return endpoint

        return register

    def get(self, path: str) -> Callable[[Handler], Handler]:
        """`route` for GET (and HEAD)."""
        return self.route(path, ["GET"])

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self.route(path, ["POST"])

    def put(self, path: str) -> Callable[[Handler], Handler]:
        return self.route(path, ["PUT"])

    def patch(self, path: str) -> Callable[[Handler], Handler]:
        return self.route(path, ["PATCH"])

    def delete(self, path: str) -> Callable[[Handler], Handler]:
        return self.route(path, ["DELETE"])

    def static(self, path: str, directory: str | os.PathLike[str]) -> None:
        """Serve the files below ``directory`` at ``path``, for GET and HEAD.

        ``app.static("/static", "public")`` answers ``/static/css/site.css``
        with ``public/css/site.css``: its content-type, ETag and Last-Modified,
        and 304 to ``If-None-Match``/``If-Modified-Since`` when the client's
        copy is current. Missing files, directories and anything outside
        ``directory`` (``..``, absolute paths, symlinks that lead out) get 404.
        Each file is read whole (see `FileResponse`).

        Raises:
            NotADirectoryError: ``directory`` is not a directory.
            RouteError: ``path`` does not start with "/" or holds a ``{parameter}``.
        """
        if not isinstance(path, str) or not path.startswith("/") or "{" in path or "}" in path:
            raise RouteError(f'app.static() takes a plain path like "/static", not {path!r}')
        files = StaticFiles(directory)
        self.route(path.rstrip("/") + "/{file_path:path}", ["GET"])(files.serve)

    # -- serving ------------------------------------------------------------

    def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        backend: str | None = None,
        settings: Settings | None = None,
        access_log: bool = True,
        ssl: SSLContext | None = None,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        workers: int = 1,
    ) -> None:
        """Serve until Ctrl+C (SIGINT) or SIGTERM, then shut down cleanly.

        Args:
            backend: a name from `fastrapi.backends.BACKENDS`; by default the
                ``FASTRAPI_BACKEND`` environment variable, else the default
                (`fastrapi.core.transport.DEFAULT_BACKEND`).
            settings: replaces the app's settings for this run.
            access_log: False silences the two lines per connection (answered,
                closed) of the ``fastrapi.access`` logger, as uvicorn's
                ``--no-access-log`` does.
            ssl: a server-side `ssl.SSLContext`: serve ``wss://`` and ``https://``.
            certfile, keyfile: the shortcut for ``ssl``: a PEM certificate
                chain and its key (``keyfile`` may be omitted when the
                certificate file holds the key).
            workers: more than 1 forks that many worker processes sharing the
                port (`fastrapi.core.workers`), each with its own lifespan
                and connections; this process supervises them.

        Raises:
            UnknownBackendError: ``backend`` names no registered backend.
            SystemExit(1): the lifespan's start-up failed (logged with its traceback).
            ValueError: both ``ssl`` and ``certfile`` given, or ``keyfile`` without
                ``certfile``, or ``workers`` less than 1.
            RuntimeError: ``workers`` over 1 where there is no ``os.fork``.
        """
        _workers.check_count(workers)
        if settings is not None:
            self._settings = settings
        tls = server_context(ssl, certfile, keyfile)
        backend = backend or os.environ.get("FASTRAPI_BACKEND") or DEFAULT_BACKEND
        if workers > 1:
            _workers.serve(self, self._live, host, port, backend, access_log, tls, workers)
            return
        _server.serve(self, self._live, host, port, backend, access_log, tls)

    @asynccontextmanager
    async def run_server(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        backend: str = DEFAULT_BACKEND,
        ssl: SSLContext | None = None,
    ) -> AsyncIterator[Server]:
        """Serve inside an ``async with`` block (for tests and embedding).

        ``port=0`` picks a free port; ``server.addresses`` tells which.
        ``ssl`` as for `serve`.
        """
        async with _server.running(self, self._live, host, port, backend, ssl) as server:
            yield server

    # -- the Application contract, called by backends -------------------------

    def lifespan_context(self) -> AbstractAsyncContextManager[None]:
        """The lifespan around one serve: start-up on enter, shutdown on exit.

        The groups' broker runs around the app's own lifespan, so that its
        start-up and shutdown may broadcast.
        """
        return self._serving()

    @asynccontextmanager
    async def _serving(self) -> AsyncIterator[None]:
        try:
            await self.groups.start()
        except Exception as error:
            raise LifespanStartupError(
                f"the groups' broker failed to start: {type(error).__name__}: {error}"
            ) from error
        try:
            async with run_lifespan(self, self._lifespan, self.state):
                yield
        finally:
            # Shielded: a cancelled serve still disconnects (the close is bounded).
            with anyio.CancelScope(shield=True):
                await self.groups.close()

    def handle_websocket(
        self, transport: Transport, settings: Settings | None = None
    ) -> Coroutine[Any, Any, None]:
        """``settings`` replaces the app's for this connection (ASGI turns off keepalive).

        The session's own coroutine, not one that awaits it: one frame less
        to resume on every message.
        """
        return run_session(
            self.websocket_router, settings or self._settings, transport, self._live.opened, self._closed
        )

    def _closed(self, ws: WebSocket) -> None:
        # A session's end: the connection leaves every group with it.
        self._live.closed(ws)
        self.groups.forget(ws)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI 3 entry point: ``uvicorn module:app`` (see `fastrapi.asgi`)."""
        from fastrapi import asgi  # not needed unless an ASGI server calls

        await asgi.handle(self, scope, receive, send)

    async def handle_http(self, request: Request) -> Response:
        too_big = check_size(request, self._settings) or check_body(request, self._settings)
        if too_big is not None:
            return too_big
        method = "GET" if request.method == "HEAD" else request.method
        router = self.http_routers.get(method)
        found = router.match(request.raw_path) if router is not None else None
        if found is None:
            allowed = [name for name, other in self.http_routers.items() if other.match(request.raw_path)]
            if allowed:
                allow = ", ".join(sorted({*allowed, "HEAD"} if "GET" in allowed else set(allowed)))
                return Response.text(405, "Method Not Allowed", [("allow", allow)])
            if self.websocket_router.match(request.raw_path) is not None:
                return UPGRADE_REQUIRED
            return Response.text(404, "Not Found")
        route, params = found
        try:
            result = await route.call(request, params)
        except Exception:
            logger.exception("HTTP handler for %s raised", request.path)
            return Response.text(500, "Internal Server Error")
        response = as_response(result)
        if response is not None:
            return response
        logger.error(
            "HTTP handler for %s returned %r, not a Response, str, bytes, dict or list", request.path, result
        )
        return Response.text(500, "Internal Server Error")


def _broker(broker: Broker | str | None) -> Broker:
    if broker is None:
        return LocalBroker()
    if isinstance(broker, str):
        scheme = broker.partition("://")[0].lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"FastrAPI(broker=...) takes a redis://, rediss:// or unix:// URL or a Broker, not {broker!r}"
            )
        # Imported only now: the redis package is an optional extra.
        from fastrapi.brokers.redis import RedisBroker

        return RedisBroker(broker)
    if not isinstance(broker, Broker):
        raise TypeError(f"FastrAPI(broker=...) takes a URL or a Broker, not {type(broker).__name__}")
    return broker

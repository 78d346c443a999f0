"""Running a backend: start, report, track live connections, shut down cleanly.

Shutdown, the same on every backend: stop accepting, send 1001 "going away"
to every open connection, give handlers ``shutdown_timeout`` seconds to end,
then cancel the rest. Nothing of the server's own outlives `running`.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib import import_module
from socket import socket
from ssl import SSLContext
from typing import TYPE_CHECKING, cast

import anyio

from fastrapi.core.codes import CloseCode
from fastrapi.core.exceptions import BackendUnavailableError, UnknownBackendError
from fastrapi.core.lifespan import LifespanStartupError
from fastrapi.core.loop import Task, cancel
from fastrapi.core.request import Address
from fastrapi.core.state import WebSocketState
from fastrapi.core.transport import BACKENDS, Application, Backend, Server

if TYPE_CHECKING:
    from fastrapi.core.websocket import WebSocket

logger = logging.getLogger("fastrapi.server")
# The name of the log handler that serve() sets up when the program has none.
LOG_HANDLER = "fastrapi"


def load_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``.

    Raises:
        UnknownBackendError: no backend has that name; the message lists them.
        BackendUnavailableError: its library is not installed; the message
            says what to install.
    """
    if name not in BACKENDS:
        known = ", ".join(repr(known) for known in BACKENDS)
        raise UnknownBackendError(f"unknown backend {name!r}; available backends: {known}")
    try:
        module = import_module(f"fastrapi.backends.{name}")
    except ModuleNotFoundError as missing:
        raise BackendUnavailableError(
            f"backend {name!r} needs the {missing.name!r} library, which is not installed; "
            f"install it with: pip install 'fastrapi[{name}]'"
        ) from missing
    return cast("type[Backend]", module.backend_class)


class LiveConnections:
    """The open connections of one running server, for shutdown."""

    def __init__(self) -> None:
        self._scopes: dict[WebSocket, Task] = {}
        # Made only when shutdown waits: an app is built before any event loop runs.
        self._empty: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._scopes)

    def opened(self, ws: WebSocket, task: Task) -> None:
        self._scopes[ws] = task

    def closed(self, ws: WebSocket) -> None:
        self._scopes.pop(ws, None)
        if not self._scopes and self._empty is not None:
            self._empty.set()

    async def close_all(self, grace: float) -> None:
        """1001 to every open connection; after ``grace`` seconds, cancel the rest."""
        async with anyio.create_task_group() as task_group:
            for ws in list(self._scopes):
                if ws.client_state is WebSocketState.CONNECTED:
                    task_group.start_soon(ws.close, CloseCode.GOING_AWAY, "server shutting down")
            if self._scopes:
                self._empty = anyio.Event()
                with anyio.move_on_after(grace):
                    await self._empty.wait()
            for task in self._scopes.values():
                cancel(task)
            task_group.cancel_scope.cancel()


@asynccontextmanager
async def running(
    app: Application,
    live: LiveConnections,
    host: str,
    port: int,
    backend: str,
    tls: SSLContext | None = None,
    sock: socket | None = None,
) -> AsyncIterator[Server]:
    """Serve ``app`` with ``backend`` on ``host:port`` (over TLS with ``tls``)
    inside the block; shut down on exit. ``sock``: listen on this bound
    socket instead (`Backend.run`)."""
    backend_class = load_backend(backend)
    # The lifespan wraps the whole serve: its start-up runs before anything
    # listens, its shutdown after the last connection has closed.
    async with app.lifespan_context(), anyio.create_task_group() as task_group:
        run = partial(backend_class(app).run, sock=sock)
        server: Server = await task_group.start(run, host, port, tls)
        try:
            yield server
        finally:
            with anyio.CancelScope(shield=True):
                await server.stop_accepting()
                await live.close_all(app.settings.shutdown_timeout)
            # Every session has ended; the backend returns by itself, or is
            # cancelled if it lingers past the close timeout.
            task_group.cancel_scope.deadline = anyio.current_time() + app.settings.close_timeout


def serve(
    app: Application,
    live: LiveConnections,
    host: str,
    port: int,
    backend: str,
    access_log: bool = True,
    tls: SSLContext | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; blocking. ``access_log=False`` silences
    the per-connection lines (the ``fastrapi.access`` logger)."""
    load_backend(backend)  # fail before the event loop starts
    _configure_logging()
    if not access_log:
        logging.getLogger("fastrapi.access").setLevel(logging.WARNING)
    try:
        anyio.run(_serve_until_signal, app, live, host, port, backend, tls)
    except LifespanStartupError as failure:
        logger.error("%s; not serving", failure, exc_info=failure.__cause__)
        raise SystemExit(1) from None


async def _serve_until_signal(
    app: Application,
    live: LiveConnections,
    host: str,
    port: int,
    backend: str,
    tls: SSLContext | None,
    sock: socket | None = None,
    announce: Callable[[Server], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down. ``announce`` is told once
    the server listens; by default it logs where."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with running(app, live, host, port, backend, tls, sock) as server:
            if announce is not None:
                announce(server)
            else:
                for address in server.addresses:
                    logger.info(
                        "fastrapi serving on %s (backend %s); press Ctrl+C to stop",
                        _url(address, tls is not None),
                        backend,
                    )
            async for signum in signals:
                logger.info("%s received; closing connections", signal.Signals(signum).name)
                break
    logger.info("fastrapi stopped")


def _url(address: Address, tls: bool) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{'https' if tls else 'http'}://{host}:{address.port}"


def _configure_logging() -> None:
    # A script that calls serve() without configuring logging still gets the
    # start line and errors; an application that configured logging keeps its own.
    package_logger = logging.getLogger("fastrapi")
    if logging.getLogger().handlers or package_logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.set_name(LOG_HANDLER)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)

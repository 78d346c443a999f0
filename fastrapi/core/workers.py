"""``serve(workers=N)``: one app served by N processes on one port.

The process that calls ``serve`` becomes the supervisor (`Supervisor`): it
binds the port (`share_port`), forks the workers before any event loop
runs, and keeps them running. Each worker is a whole server, as
``serve(workers=1)`` is: its own event loop, lifespan, connections and
groups, and the same shutdown (1001 to each connection) on SIGINT or
SIGTERM, which the supervisor passes on to every worker. A worker whose
supervisor was killed stops by itself.

Forking is what lets ``app.serve(workers=2)`` run from a plain script:
each worker starts with the app object as it is, with no import string.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from ssl import SSLContext
from typing import TYPE_CHECKING

import anyio

from fastrapi.core import server as _server
from fastrapi.core.lifespan import LifespanStartupError
from fastrapi.core.listeners import SharedPort, share_port
from fastrapi.core.loop import running_loop
from fastrapi.core.request import Address
from fastrapi.core.supervisor import EXIT_STARTUP_FAILED, Supervisor
from fastrapi.core.transport import Application, Server

if TYPE_CHECKING:
    from fastrapi.core.groups import Groups

logger = logging.getLogger("fastrapi.server")

# Seconds a worker gets to stop beyond its settings' shutdown_timeout and
# close_timeout: the lifespan's shutdown and the process's exit.
STOP_SLACK = 5.0
# Seconds between a worker's looks at whether its supervisor is still there.
SUPERVISOR_CHECK = 1.0
# Lines of N + 1 processes interleave: each says which one wrote it.
PID_FORMAT = "%(levelname)s %(name)s [%(process)d]: %(message)s"


def check_count(workers: int) -> None:
    """Raises ValueError unless ``workers`` is a whole number of 1 or more,
    and RuntimeError for more than 1 where processes cannot be forked."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(
            f"workers={workers!r}: give the number of worker processes, 1 or more "
            "(1, the default, serves in this process)"
        )
    if workers > 1 and not hasattr(os, "fork"):
        raise RuntimeError(
            f"workers={workers} forks worker processes, and os.fork does not exist on {sys.platform}; "
            "use workers=1"
        )


def serve(
    app: Application,
    live: _server.LiveConnections,
    host: str,
    port: int,
    backend: str,
    access_log: bool,
    tls: SSLContext | None,
    workers: int,
) -> None:
    """Serve ``app`` from ``workers`` processes on ``host:port`` until SIGINT
    or SIGTERM; blocking.

    Raises:
        SystemExit(1): a worker's start-up failed, or workers kept ending as
            soon as they started (logged).
        OSError: the port cannot be bound.
    """
    _server.load_backend(backend)  # fail before any process starts
    _server._configure_logging()
    _show_pids()
    if not access_log:
        logging.getLogger("fastrapi.access").setLevel(logging.WARNING)
    shared = share_port(host, port)
    _warn_if_groups_are_local(app, workers)
    settings = app.settings
    supervisor = Supervisor(
        workers,
        partial(_work, app, live, host, port, backend, tls, shared, os.getpid()),
        announce=partial(_announce, shared.address, backend, tls is not None, workers),
        release=shared.close,
        stop_timeout=settings.shutdown_timeout + settings.close_timeout + STOP_SLACK,
    )
    try:
        status = supervisor.run()
    finally:
        shared.close()
    logger.info("fastrapi stopped")
    if status:
        raise SystemExit(status)


def _work(
    app: Application,
    live: _server.LiveConnections,
    host: str,
    port: int,
    backend: str,
    tls: SSLContext | None,
    shared: SharedPort,
    supervisor: int,
    serving: Callable[[], None],
) -> int:
    """A worker's life, in the forked process: serve until SIGINT or SIGTERM;
    the exit status."""

    def announce(server: Server) -> None:
        logger.info("worker %d serving", os.getpid())
        serving()
        _stop_when_orphaned(supervisor)

    sock = shared.worker_socket()
    try:
        anyio.run(_server._serve_until_signal, app, live, host, port, backend, tls, sock, announce)
    except LifespanStartupError as failure:
        logger.error("%s; not serving", failure, exc_info=failure.__cause__)
        return EXIT_STARTUP_FAILED
    return 0


def _stop_when_orphaned(supervisor: int) -> None:
    """Stop this worker as SIGTERM does once its supervisor is gone: killed,
    it passed no signal on, and nothing else would ever stop the worker."""
    if os.getppid() == supervisor:
        running_loop().call_later(SUPERVISOR_CHECK, _stop_when_orphaned, supervisor)
        return
    logger.warning("worker %d: its supervisor %d is gone; stopping", os.getpid(), supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


def _announce(address: Address, backend: str, tls: bool, workers: int) -> None:
    logger.info(
        "fastrapi serving on %s (backend %s, %d workers); press Ctrl+C to stop",
        _server._url(address, tls),
        backend,
        workers,
    )


def _show_pids() -> None:
    # Only the handler serve() set up: a program's own logging setup is its own.
    for handler in logging.getLogger("fastrapi").handlers:
        if handler.get_name() == _server.LOG_HANDLER:
            handler.setFormatter(logging.Formatter(PID_FORMAT))


def _warn_if_groups_are_local(app: Application, workers: int) -> bool:
    """Warn (and return True) unless the app's groups reach every worker.

    ``app.groups`` broadcasts through the app's broker: the in-memory one
    (`LocalBroker`, the default) reaches the connections of its own process
    only; a shared one (``FastrAPI(broker="redis://...")``) says so.
    """
    groups: Groups | None = getattr(app, "groups", None)  # FastrAPI's; not part of the contract
    if groups is not None and groups.broker.shared:
        return False
    logger.warning(
        "app.groups are per process: with %d workers, a broadcast reaches only the members "
        "connected to the same worker; groups across workers need a shared broker, "
        'e.g. FastrAPI(broker="redis://...")',
        workers,
    )
    return True

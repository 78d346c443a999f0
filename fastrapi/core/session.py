"""Run one WebSocket connection from its opening request to its last byte.

How a handler's end becomes what the client sees:

=============================  ===================  ============================
handler ends with              before accept()      after accept()
=============================  ===================  ============================
return                         HTTP 403             close 1000
close() / deny()               HTTP 403 / deny's    the close it sent
WebSocketException(code, r)    HTTP 403             close code, r
WebSocketDisconnect            HTTP 403             (already over) debug log
any other exception            HTTP 500, logged     close 1011, logged
=============================  ===================  ============================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar

from fastrapi.core.codes import CloseCode, is_sendable
from fastrapi.core.exceptions import WebSocketDisconnect, WebSocketException
from fastrapi.core.handshake import check_origin, check_size, check_upgrade
from fastrapi.core.loop import Task, current_task
from fastrapi.core.request import Request
from fastrapi.core.routing import Router
from fastrapi.core.settings import Settings
from fastrapi.core.state import WebSocketState
from fastrapi.core.timers import deadlines
from fastrapi.core.transport import Response, Transport
from fastrapi.core.websocket import FORBIDDEN, WebSocket

logger = logging.getLogger("fastrapi.websocket")

# Where a handler's exception also goes, besides the log: set by
# `fastrapi.testing` around the sessions it runs, so that the test that
# drove the handler sees its error. The session task inherits it.
handler_errors: ContextVar[list[BaseException] | None] = ContextVar("handler_errors", default=None)
access_logger = logging.getLogger("fastrapi.access")

NOT_FOUND = Response.text(404, "Not Found")
SERVER_ERROR = Response.text(500, "Internal Server Error")


async def run_session(
    router: Router,
    settings: Settings,
    transport: Transport,
    on_open: Callable[[WebSocket, Task], None],
    on_close: Callable[[WebSocket], None],
) -> None:
    """Route ``transport``'s request, run its handler, and close it; never raises.

    ``on_open``/``on_close`` let the server track live connections for shutdown.
    The handler runs right in this coroutine (no wrapper of its own): every
    frame between the backend and the handler is resumed on every message.
    """
    request = transport.request
    started = time.monotonic()
    problem = (
        check_size(request, settings)
        or check_upgrade(request)
        or check_origin(request, settings.allowed_origins)
    )
    if problem is not None:
        await _reject(transport, problem)
        _log_access(transport, problem.status, started)
        return
    found = router.match(request.raw_path)
    if found is None:
        await _reject(transport, NOT_FOUND)
        _log_access(transport, 404, started)
        return
    route, params = found

    def answered(status: int) -> None:
        # Keyed by the transport: a closure over ws would make a reference
        # cycle (ws -> this -> ws) that only the garbage collector frees.
        watchdog.clear(transport)
        _log_access(transport, status, started)

    ws = WebSocket(transport, settings, params, answered)
    # The handshake is bounded as a whole (open_timeout): a handler that
    # neither accepts nor refuses in time loses the connection, and its
    # accept() then raises WebSocketDisconnect.
    watchdog = deadlines(settings.open_timeout)
    watchdog.set(transport, ws._drop_if_undecided)
    on_open(ws, current_task())  # what shutdown cancels, once its grace is over
    try:
        failure: tuple[int, str] | None = None
        crashed = False
        try:
            await route.call(ws, params)
        except WebSocketDisconnect as end:
            logger.debug("%r ended by disconnect: %s", ws, end)
        except WebSocketException as error:
            failure = (error.code, error.reason)
            if not is_sendable(error.code):
                logger.error("WebSocketException code %d may not be sent; closing with 1011", error.code)
                failure = (CloseCode.INTERNAL_ERROR, "")
        except Exception as error:
            logger.exception("handler for %s raised", request.path)
            sink = handler_errors.get()
            if sink is not None:  # a test client re-raises it in the test
                sink.append(error)
            failure, crashed = (CloseCode.INTERNAL_ERROR, ""), True
        if ws.client_state is WebSocketState.CONNECTING:
            await ws._reject(SERVER_ERROR if crashed else FORBIDDEN)
        else:
            await ws._end(*(failure or (CloseCode.NORMAL_CLOSURE, "")))
        if ws.handshake_status == 101 and access_logger.isEnabledFor(logging.INFO):
            access_logger.info(
                '%s - "WebSocket %s" closed %s after %.1fs',
                _client(request),
                request.target,
                ws.close_code,
                time.monotonic() - started,
            )
    except Exception:  # a transport that broke its contract: lose this connection only
        logger.exception("ending the connection to %s failed", request.client)
    finally:
        watchdog.clear(transport)
        on_close(ws)
        ws._release()
        transport.abort()  # idempotent: only acts if anything is left


async def _reject(transport: Transport, response: Response) -> None:
    try:
        await transport.reject(response)
    except Exception:  # the client left; nothing to answer
        logger.debug("could not send %d to %s", response.status, transport.request.client)


def _log_access(transport: Transport, status: int, started: float) -> None:
    # One line per handshake, once it is answered: the client, the target,
    # the status (101 or the refusal) and how long the handshake took.
    if access_logger.isEnabledFor(logging.INFO):
        request = transport.request
        access_logger.info(
            '%s - "WebSocket %s" %d %.1fms',
            _client(request),
            request.target,
            status,
            (time.monotonic() - started) * 1000,
        )


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "-"

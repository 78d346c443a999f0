"""Broadcast servers for bench/fanout.py: fastrapi's groups on each backend and two references.

    python bench/fanout_server.py SERVER PORT [--broker URL] [--workers N]

Every server has two endpoints. A subscriber connects to /sub: the server
makes it a member of the broadcast, then sends it "ready" (so the client
knows that no broadcast can miss it) and keeps it until it closes. A
publisher connects to /pub: each text message it sends is broadcast, as it
is, to every subscriber. Compression is off and every library keeps its
other defaults (keepalive pings included), as in bench/echo_server.py.

- fastrapi-groups-BACKEND: ``await app.groups.send_text("all", message)``;
- websockets-broadcast: websockets' own ``broadcast(subscribers, message)``;
- fastrapi-guide-loop: the user guide's loop (examples/broadcast.py), on the
  default backend: ``await connection.send_text(message)`` for each
  connection of a module-level set.

--broker and --workers are for fastrapi's groups across processes (a Redis
broker, ``app.serve(workers=N)``); a server refuses them with an error that
says what is missing when fastrapi has no such option.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import resource
import sys
from collections.abc import Callable
from typing import Any

READY = "ready"
GROUP = "all"


class Unsupported(Exception):
    """A mode this fastrapi or this server cannot run; the message says why."""


def fastrapi_features() -> dict[str, bool]:
    """Which of the cross-process options this fastrapi takes."""
    from fastrapi import FastrAPI

    return {
        "broker": "broker" in inspect.signature(FastrAPI.__init__).parameters,
        "workers": "workers" in inspect.signature(FastrAPI.serve).parameters,
    }


def check_options(server: str, broker: str | None, workers: int) -> None:
    """Raise Unsupported unless ``server`` can run with this broker and worker count."""
    if broker is None and workers == 1:
        return
    if not server.startswith("fastrapi-groups-"):
        raise Unsupported(f"{server} broadcasts within one process only: no broker, no workers")
    features = fastrapi_features()
    if broker is not None and not features["broker"]:
        raise Unsupported(
            "this fastrapi has no broker: FastrAPI() takes no broker= argument, "
            "so app.groups cannot reach members in other processes"
        )
    if workers > 1 and not features["workers"]:
        raise Unsupported("this fastrapi has no workers: app.serve() takes no workers= argument")


def fastrapi_groups(backend: str, port: int, broker: str | None, workers: int) -> None:
    from fastrapi import FastrAPI, WebSocket

    # Only given when asked for, so that without them this runs on any fastrapi.
    app_options: dict[str, Any] = {} if broker is None else {"broker": broker}
    serve_options: dict[str, Any] = {} if workers == 1 else {"workers": workers}
    app = FastrAPI(**app_options)

    @app.websocket("/sub")
    async def subscribe(ws: WebSocket) -> None:
        await ws.accept()
        await app.groups.add(GROUP, ws)
        await ws.send_text(READY)
        async for _ in ws.iter_text():  # subscribers send nothing; this waits for the close
            pass

    @app.websocket("/pub")
    async def publish(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws.iter_text():
            await app.groups.send_text(GROUP, message)

    print("ready", flush=True)  # serve() binds at once; the caller polls the port
    app.serve("127.0.0.1", port, backend=backend, access_log=False, **serve_options)


def fastrapi_guide_loop(port: int) -> None:
    """The broadcast of the user guide (examples/broadcast.py), sending the message as it came."""
    from fastrapi import FastrAPI, WebSocket

    app = FastrAPI()
    connections: set[WebSocket] = set()

    @app.websocket("/sub")
    async def subscribe(ws: WebSocket) -> None:
        await ws.accept()
        connections.add(ws)
        try:
            await ws.send_text(READY)
            async for _ in ws.iter_text():
                pass
        finally:
            connections.discard(ws)

    @app.websocket("/pub")
    async def publish(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws.iter_text():
            for connection in connections:
                try:
                    await connection.send_text(message)
                except Exception:
                    connections.discard(connection)

    print("ready", flush=True)
    app.serve("127.0.0.1", port, access_log=False)


async def websockets_broadcast(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    subscribers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        if path == "/sub":
            subscribers.add(ws)
            try:
                await ws.send(READY)
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)
        elif path == "/pub":
            async for message in ws:
                broadcast(subscribers, message)
        else:
            await ws.close(1008, "no such endpoint")

    async with serve(handler, "127.0.0.1", port, compression=None):
        print("ready", flush=True)
        await asyncio.Future()


BACKENDS = ("aiohttp", "websockets", "wsproto")
Serve = Callable[[int, str | None, int], None]


def _groups(backend: str) -> Serve:
    return lambda port, broker, workers: fastrapi_groups(backend, port, broker, workers)


SERVERS: dict[str, Serve] = {
    **{f"fastrapi-groups-{backend}": _groups(backend) for backend in BACKENDS},
    "websockets-broadcast": lambda port, broker, workers: asyncio.run(websockets_broadcast(port)),
    "fastrapi-guide-loop": lambda port, broker, workers: fastrapi_guide_loop(port),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("port", type=int)
    parser.add_argument("--broker", help="fastrapi's broker URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--workers", type=int, default=1, help="app.serve(workers=N)")
    options = parser.parse_args()
    try:
        check_options(options.server, options.broker, options.workers)
    except Unsupported as error:
        print(f"Unsupported: {error}", file=sys.stderr, flush=True)
        return 3
    # Thousands of subscribers, one descriptor each.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    SERVERS[options.server](options.port, options.broker, options.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())

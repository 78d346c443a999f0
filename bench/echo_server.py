"""Echo servers for the benchmarks: each library used raw, fastrapi on each backend, and two references.

    python bench/echo_server.py SERVER PORT
    python bench/echo_server.py raw|fastrapi BACKEND PORT      (the form bench/throughput.py uses)

SERVER is one of `SERVERS` below. Every server echoes text as text and binary
as binary at /ws, with compression off and the library's other defaults
(message size limits aside, where the default would refuse the 1 MiB bulk
message), and prints "ready" once it listens (fastrapi just before: the
caller polls the port).
"""

from __future__ import annotations

import asyncio
import resource
import sys
from collections.abc import Callable
from typing import Any

PATH = "/ws"


async def raw_websockets(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None):
        print("ready", flush=True)
        await asyncio.Future()


async def raw_aiohttp(port: int) -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Future()


async def raw_wsproto(port: int) -> None:
    """wsproto's state machine on asyncio streams: the least a server built on it does."""
    from wsproto import ConnectionType, WSConnection
    from wsproto import events as ws

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        protocol = WSConnection(ConnectionType.SERVER)
        closing = False
        try:
            while not closing:
                data = await reader.read(65536)
                if not data:
                    return
                protocol.receive_data(data)
                out = []
                for event in protocol.events():
                    if isinstance(event, ws.Request):
                        out.append(protocol.send(ws.AcceptConnection()))
                    elif isinstance(event, ws.TextMessage | ws.BytesMessage):
                        echo = type(event)(data=event.data, message_finished=event.message_finished)
                        out.append(protocol.send(echo))
                    elif isinstance(event, ws.Ping):
                        out.append(protocol.send(event.response()))
                    elif isinstance(event, ws.CloseConnection):
                        out.append(protocol.send(event.response()))
                        closing = True  # the server closes the TCP connection first (RFC 6455, 7.1.1)
                if out:
                    writer.write(b"".join(out))
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


async def raw_picows(port: int) -> None:
    """picows: a C (Cython) WebSocket implementation, the fastest Python reference."""
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
                # Frame by frame: picows hands frames, not messages, to the listener.
                transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)

    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


def starlette_uvicorn(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])

    app = Starlette(routes=[WebSocketRoute(PATH, echo)])
    print("ready", flush=True)  # uvicorn.run() binds at once; the caller polls the port
    uvicorn.run(
        app, host="127.0.0.1", port=port, ws="auto", ws_per_message_deflate=False, log_level="warning"
    )


def fastrapi_server(backend: str, port: int, workers: int = 1) -> None:
    from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect

    app = FastrAPI()

    @app.websocket(PATH)
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send(await ws.receive())
        except WebSocketDisconnect:
            pass

    print("ready", flush=True)  # serve() binds at once; the caller polls the port
    # No line per connection, like every reference here (aiohttp's
    # access_log=None, uvicorn at log_level="warning").
    # workers=N only when asked for: the option is the one thing measured.
    options = {"workers": workers} if workers > 1 else {}
    app.serve("127.0.0.1", port, backend=backend, access_log=False, **options)


def on_asyncio(serve: Callable[[int], Any]) -> Callable[[int], None]:
    return lambda port: asyncio.run(serve(port))


def on_fastrapi(backend: str) -> Callable[[int], None]:
    return lambda port: fastrapi_server(backend, port)


RAW = {"websockets": raw_websockets, "aiohttp": raw_aiohttp, "wsproto": raw_wsproto}
SERVERS: dict[str, Callable[[int], None]] = {
    **{f"fastrapi-{backend}": on_fastrapi(backend) for backend in RAW},
    **{backend: on_asyncio(serve) for backend, serve in RAW.items()},
    "starlette-uvicorn": starlette_uvicorn,
    "picows": on_asyncio(raw_picows),
    # The same app as fastrapi-aiohttp, served by app.serve(workers=2): only run when named.
    "fastrapi-aiohttp-w2": lambda port: fastrapi_server("aiohttp", port, workers=2),
}


def raise_open_file_limit() -> None:
    # The idle benchmark holds thousands of connections, one descriptor each.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    raise_open_file_limit()
    if len(sys.argv) == 4:
        kind, backend, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
        name = f"fastrapi-{backend}" if kind == "fastrapi" else backend
    else:
        name, port = sys.argv[1], int(sys.argv[2])
    SERVERS[name](port)

"""Echo servers for the throughput benchmark: each library used raw, and fastrapi on it.

    python bench/echo_server.py raw|fastrapi BACKEND PORT

Every server echoes text as text and binary as binary on any path, with
compression off and the library's other defaults, and prints "ready" once
it listens.
"""

from __future__ import annotations

import asyncio
import sys

import anyio


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
    from anyio.abc import SocketStream
    from wsproto import ConnectionType, WSConnection
    from wsproto import events as ws

    async def connection(stream: SocketStream) -> None:
        protocol = WSConnection(ConnectionType.SERVER)
        async with stream:
            while True:
                try:
                    data = await stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                protocol.receive_data(data)
                out = b""
                for event in protocol.events():
                    if isinstance(event, ws.Request):
                        out += protocol.send(ws.AcceptConnection())
                    elif isinstance(event, ws.TextMessage | ws.BytesMessage):
                        out += protocol.send(
                            type(event)(data=event.data, message_finished=event.message_finished)
                        )
                    elif isinstance(event, ws.Ping):
                        out += protocol.send(event.response())
                    elif isinstance(event, ws.CloseConnection):
                        out += protocol.send(event.response())
                if out:
                    await stream.send(out)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    print("ready", flush=True)
    await listener.serve(connection)


def fastrapi_server(backend: str, port: int) -> None:
    from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect

    app = FastrAPI()

    @app.websocket("/")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send(await ws.receive())
        except WebSocketDisconnect:
            pass

    print("ready", flush=True)  # serve() binds at once; the client retries until it listens
    app.serve("127.0.0.1", port, backend=backend)


RAW = {"websockets": raw_websockets, "aiohttp": raw_aiohttp, "wsproto": raw_wsproto}


if __name__ == "__main__":
    kind, backend, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "raw":
        asyncio.run(RAW[backend](port))
    else:
        fastrapi_server(backend, port)

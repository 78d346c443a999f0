"""A task started by the lifespan that broadcasts to every connection.

The lifespan owns the task: it starts before the first connection is
accepted and is cancelled after the last one has closed.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect

TICK_SECONDS = 1.0
clients: set[WebSocket] = set()


async def announce_time() -> None:
    tick = 0
    while True:
        await anyio.sleep(TICK_SECONDS)
        tick += 1
        for ws in list(clients):
            try:
                await ws.send_json({"tick": tick})
            except WebSocketDisconnect:
                clients.discard(ws)


@asynccontextmanager
async def lifespan(app: FastrAPI) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(announce_time)
        yield
        tasks.cancel_scope.cancel()


app = FastrAPI(lifespan=lifespan)


@app.websocket("/ticks")
async def ticks(ws: WebSocket) -> None:
    await ws.accept()
    clients.add(ws)
    try:
        async for _ in ws.iter_text():  # the client's messages are ignored
            pass
    finally:
        clients.discard(ws)


if __name__ == "__main__":
    app.serve("0.0.0.0", 8000)

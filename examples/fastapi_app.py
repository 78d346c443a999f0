"""A FastAPI app with fastrapi mounted inside it, served by an ASGI server.

FastAPI answers the HTTP API; fastrapi, mounted at ``/rt``, the WebSockets.
Both run in one process and one event loop, so an HTTP route can broadcast
to a fastrapi group::

    uvicorn fastapi_app:api          # from examples/; or: python examples/fastapi_app.py
    python -m websockets ws://127.0.0.1:8000/rt/rooms/lobby
    curl -X POST 'http://127.0.0.1:8000/rooms/lobby/announce?text=hello'

Needs ``pip install fastapi uvicorn``. Under an ASGI server the server owns
the socket: pings, compression and frame limits are its settings, not
fastrapi's (docs/how-to/asgi.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastrapi import FastrAPI, WebSocket

# --8<-- [start:realtime]
realtime = FastrAPI()


@realtime.websocket("/rooms/{room}")
async def room(ws: WebSocket, room: str) -> None:
    await ws.accept()
    await realtime.groups.add(room, ws)
    async for text in ws.iter_text():
        await realtime.groups.send_json(room, {"from": "a member", "text": text})


# --8<-- [end:realtime]


# --8<-- [start:mount]
@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    # FastAPI runs no lifespan of a mounted app: run fastrapi's inside its own.
    async with realtime.lifespan_context():
        yield


api = FastAPI(lifespan=lifespan)
api.mount("/rt", realtime)  # /rt/rooms/lobby reaches @realtime.websocket("/rooms/{room}")


@api.post("/rooms/{room}/announce")
async def announce(room: str, text: str) -> dict[str, int]:
    delivered = await realtime.groups.send_json(room, {"from": "the server", "text": text})
    return {"delivered": delivered}


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


# --8<-- [end:mount]

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(api, host="127.0.0.1", port=8000)

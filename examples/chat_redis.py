"""The chat of chat_groups.py served by two worker processes that share Redis.

Start Redis (``redis-server``, or set ``REDIS_URL``), then run
``python examples/chat_redis.py`` and open http://127.0.0.1:8000/ in two
browser tabs: the page, rooms and events are chat_groups.py's. Each tab's
connection lands on either worker; a message reaches the room's members on
both, because every broadcast also goes through Redis to the other worker.

The only changes against chat_groups.py: ``broker=`` and ``workers=2``; a
``welcome`` event that tells a member which worker serves it (the page
ignores it); and a hook that tells the members of a worker whose connection
to Redis came back that they may have missed messages meanwhile.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from fastrapi import (
    CloseCode,
    FastrAPI,
    FileResponse,
    JSONResponse,
    MessageTypeError,
    Response,
    Settings,
    WebSocket,
    WebSocketDisconnect,
)

# --8<-- [start:broker]
app = FastrAPI(broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


@app.groups.on_reconnect
async def tell_members_to_resync() -> None:
    # Redis keeps no history: what the other worker broadcast while this one
    # was cut off is lost. Only this worker's members missed it, so they are
    # told one by one here, not with a broadcast that would reach everyone.
    notice = {"type": "system", "message": "reconnected to the other servers: messages may be missing"}
    for name in app.groups.stats().groups:
        for ws in app.groups.members(name):
            with contextlib.suppress(WebSocketDisconnect):  # it left meanwhile
                await ws.send_json(notice)
                # --8<-- [end:broker]


PAGE = Path(__file__).with_name("chat.html")


@app.get("/")
async def index() -> Response:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8")


@app.websocket("/chat/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    name = ws.query_params.get("name", "Anonymous")
    group = f"room:{room}"
    await ws.accept()
    # Returns once Redis confirmed the room's subscription: nothing broadcast
    # after this is missed.
    await app.groups.add(group, ws)
    await ws.send_json({"type": "welcome", "room": room, "worker": os.getpid()})
    await app.groups.send_json(group, {"type": "user_joined", "username": name, "room": room}, exclude=ws)
    try:
        while True:
            text = await ws.receive_text()
            await app.groups.send_json(group, {"type": "message", "username": name, "message": text})
    except WebSocketDisconnect:
        pass  # the client left
    except MessageTypeError:
        await ws.close(CloseCode.UNSUPPORTED_DATA, "text messages only")
    finally:
        app.groups.discard(group, ws)
        await app.groups.send_json(group, {"type": "user_left", "username": name})


@app.get("/stats")
async def stats() -> Response:
    """This worker's groups (the one that answers: each counts its own)."""
    snapshot = app.groups.stats()
    return JSONResponse(
        {
            "worker": os.getpid(),
            "members": snapshot.members,
            "rooms": snapshot.groups,
            "sent": snapshot.sent,
            "dropped": snapshot.dropped,
            "published": snapshot.published,
            "publish_failures": snapshot.publish_failures,
            "received": snapshot.received,
            "redis_connected": snapshot.broker_connected,
            "reconnects": snapshot.reconnects,
        }
    )


# Only the chat's own pages may connect (cross-site WebSocket hijacking): see demo.py.
ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")

if __name__ == "__main__":
    # --8<-- [start:serve]
    app.serve("127.0.0.1", 8000, settings=Settings(allowed_origins=ORIGINS), workers=2)
    # --8<-- [end:serve]

"""Tutorial step 6: the chat served by two worker processes that share Redis.

Start Redis, then run ``python step6_workers.py`` (or set ``REDIS_URL``) and
open http://127.0.0.1:8000/ in two browser tabs. Each tab's connection is
served by either worker; a message reaches the room on both, through Redis.
The chat itself is step 5's.
"""

import os
from pathlib import Path

from fastrapi import (
    CloseCode,
    FastrAPI,
    FileResponse,
    MessageTypeError,
    Response,
    WebSocket,
    WebSocketDisconnect,
)

ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")

# --8<-- [start:broker]
# Every worker connects to this Redis, and each broadcast goes through it to
# the members of the other workers.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

app = FastrAPI(allowed_origins=ORIGINS, broker=REDIS_URL)
# --8<-- [end:broker]
PAGE = Path(__file__).parent.parent / "chat.html"


# --8<-- [start:reconnect]
@app.groups.on_reconnect
async def tell_members() -> None:
    # Redis keeps no history: while this worker was cut off from it, the other
    # worker's messages were lost. Its own members are told, one by one.
    notice = {"type": "system", "message": "messages may be missing"}
    for room in app.groups.stats().groups:
        for ws in app.groups.members(room):
            try:
                await ws.send_json(notice)
            except WebSocketDisconnect:
                pass  # it left meanwhile
                # --8<-- [end:reconnect]


@app.get("/")
async def index() -> Response:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8")


@app.websocket("/chat/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    name = ws.query_params.get("name", "").strip()
    if not 1 <= len(name) <= 32:
        await ws.deny(
            400, body=b"say who you are: /chat/lobby?name=Ada (1 to 32 characters)"
        )
        return
    await ws.accept()
    await app.groups.add(room, ws)
    await ws.send_json(
        {"type": "welcome", "room": room, "members": app.groups.count(room)}
    )
    await app.groups.send_json(
        room, {"type": "user_joined", "username": name, "room": room}, exclude=ws
    )
    try:
        async for text in ws.iter_text():
            await app.groups.send_json(
                room, {"type": "message", "username": name, "message": text}
            )
    except MessageTypeError:
        await ws.close(CloseCode.UNSUPPORTED_DATA, "text messages only")
    finally:
        app.groups.discard(room, ws)
        await app.groups.send_json(room, {"type": "user_left", "username": name})


if __name__ == "__main__":
    # --8<-- [start:serve]
    app.serve(workers=2)
    # --8<-- [end:serve]

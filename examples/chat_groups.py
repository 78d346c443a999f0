"""The chat of demo.py written with groups: rooms are `app.groups`, not sets.

Run ``python examples/chat_groups.py`` and open http://127.0.0.1:8000/ in two
browser tabs (the page is demo.py's, chat.html). The name comes from the
``name`` query parameter (``/chat/lobby?name=Ada``) and the events are those
of the guide's chat.py: ``user_joined``, ``message`` and ``user_left``.

What groups change against the guide's loop over a set: a broadcast encodes
the JSON once and never waits for a member, so a member that stops reading
holds up nobody (it misses messages once its outbox is full, counted in
``app.groups.stats()``); a member leaves every group when its connection
ends, however it ends; and nobody iterates a set that changes under them.
"""

from __future__ import annotations

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

app = FastrAPI()
PAGE = Path(__file__).with_name("chat.html")


@app.get("/")
async def index() -> Response:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8")


@app.websocket("/chat/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    name = ws.query_params.get("name", "Anonymous")
    group = f"room:{room}"
    await ws.accept()
    await app.groups.add(group, ws)
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
        app.groups.discard(group, ws)  # before telling the others: it gets nothing more
        await app.groups.send_json(group, {"type": "user_left", "username": name})


@app.get("/stats")
async def stats() -> Response:
    """How the groups are doing: members, per room, messages sent and dropped."""
    snapshot = app.groups.stats()
    return JSONResponse(
        {
            "members": snapshot.members,
            "rooms": snapshot.groups,
            "sent": snapshot.sent,
            "dropped": snapshot.dropped,
        }
    )


# Only the chat's own pages may connect (cross-site WebSocket hijacking): see demo.py.
ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")

if __name__ == "__main__":
    app.serve("127.0.0.1", 8000, settings=Settings(allowed_origins=ORIGINS))

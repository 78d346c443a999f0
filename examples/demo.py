"""A chat demo: a page at http://127.0.0.1:8000/ and chat rooms at /chat/{room}.

Run ``python examples/demo.py`` and open http://127.0.0.1:8000/ in two browser
tabs. Everyone in a room sees that room's messages and nobody else's; the name
comes from the ``name`` query parameter (``/chat/lobby?name=Ada``). The events
are the ones of the guide's chat.py: ``user_joined``, ``message`` and
``user_left``, as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastrapi import (
    CloseCode,
    FastrAPI,
    FileResponse,
    MessageTypeError,
    Response,
    Settings,
    WebSocket,
    WebSocketDisconnect,
)

app = FastrAPI()
rooms: dict[str, set[WebSocket]] = {}

# The chat page, shared with chat_groups.py: the same events, the same page.
PAGE = Path(__file__).with_name("chat.html")


@app.get("/")
async def index() -> Response:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8")


async def broadcast(room: str, event: dict[str, Any], skip: WebSocket | None = None) -> None:
    """Send ``event`` to everyone in ``room`` (but ``skip``); drop those who left."""
    members = rooms.get(room, set())
    for member in list(members):  # a copy: members may leave while we send
        if member is skip:
            continue
        try:
            await member.send_json(event)
        except ConnectionError:
            members.discard(member)


@app.websocket("/chat/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    name = ws.query_params.get("name", "Anonymous")
    await ws.accept()
    members = rooms.setdefault(room, set())
    members.add(ws)
    try:
        await broadcast(room, {"type": "user_joined", "username": name, "room": room}, skip=ws)
        while True:
            text = await ws.receive_text()
            await broadcast(room, {"type": "message", "username": name, "message": text})
    except WebSocketDisconnect:
        pass  # the client left
    except MessageTypeError:
        await ws.close(CloseCode.UNSUPPORTED_DATA, "text messages only")
    finally:
        members.discard(ws)
        if not members and rooms.get(room) is members:
            del rooms[room]
        await broadcast(room, {"type": "user_left", "username": name})


# Browsers send cookies with a WebSocket handshake from any site, and CORS does
# not cover WebSockets: name the pages that may open the chat, or any site a
# visitor has open could (cross-site WebSocket hijacking).
ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")

if __name__ == "__main__":
    app.serve("127.0.0.1", 8000, settings=Settings(allowed_origins=ORIGINS))

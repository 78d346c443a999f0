"""Tutorial step 5: the chat with its page, open to its own pages only.

Run ``python step5_page.py`` and open http://127.0.0.1:8000/ in two browser
tabs. The page is examples/chat.html, the demo's: it shows ``message``,
``user_joined`` and ``user_left`` events and ignores the others.
"""

from pathlib import Path

from fastrapi import (
    CloseCode,
    FastrAPI,
    FileResponse,
    MessageTypeError,
    Response,
    WebSocket,
)

# --8<-- [start:origins]
# Browsers send cookies with a WebSocket handshake from any site, and CORS does
# not apply to WebSockets: only the pages named here may open a connection.
ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")

app = FastrAPI(allowed_origins=ORIGINS)
PAGE = Path(__file__).parent.parent / "chat.html"


@app.get("/")
async def index() -> Response:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8")
    # --8<-- [end:origins]


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
    app.serve()

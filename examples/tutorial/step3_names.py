"""Tutorial step 3: names, and events as JSON.

A client says who it is in the query string (``/chat/lobby?name=Ada``); a
handshake without a usable name is refused with HTTP 400 before anything is
accepted. Everyone in the room is told who joins, who speaks and who leaves.
"""

from fastrapi import CloseCode, FastrAPI, MessageTypeError, WebSocket

app = FastrAPI()


# --8<-- [start:refuse]
@app.websocket("/chat/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    name = ws.query_params.get("name", "").strip()
    if not 1 <= len(name) <= 32:
        await ws.deny(
            400, body=b"say who you are: /chat/lobby?name=Ada (1 to 32 characters)"
        )
        return
    # --8<-- [end:refuse]
    # --8<-- [start:events]
    await ws.accept()
    await app.groups.add(room, ws)
    # The newcomer learns it is in: everything sent to the room from now on reaches it.
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
        # However the connection ends (left, lost, closed for binary data),
        # the room hears of it.
        app.groups.discard(room, ws)
        await app.groups.send_json(room, {"type": "user_left", "username": name})
    # --8<-- [end:events]


if __name__ == "__main__":
    app.serve()

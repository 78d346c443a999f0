# "Chat room example" (chat.py) from the WebSocket guide, exactly as documented.
# fmt: off
# ruff: noqa: E722, F401, I001, UP006, UP035
from fastrapi import FastrAPI
from typing import Dict
import json

app = FastrAPI()
rooms: Dict[str, set] = {}

@app.websocket("/chat/{room}")
async def chat_room(ws, room: str):
    await ws.accept()

    # Get username from query parameter
    username = "Anonymous"

    # Add to room
    if room not in rooms:
        rooms[room] = set()
    rooms[room].add(ws)

    # Notify others of new user
    for connection in rooms[room]:
        if connection != ws:
            try:
                await connection.send_json({
                    "type": "user_joined",
                    "username": username,
                    "room": room
                })
            except:
                rooms[room].discard(connection)

    try:
        while True:
            data = await ws.receive_text()

            # Broadcast message to room
            for connection in rooms[room]:
                try:
                    await connection.send_json({
                        "type": "message",
                        "username": username,
                        "message": data
                    })
                except:
                    rooms[room].discard(connection)

    except Exception as e:
        print(f"Connection closed: {e}")
    finally:
        rooms[room].discard(ws)

        # Notify others of user leaving
        for connection in rooms[room]:
            try:
                await connection.send_json({
                    "type": "user_left",
                    "username": username
                })
            except:
                rooms[room].discard(connection)

if __name__ == "__main__":
    app.serve("0.0.0.0", 8000)

"""Tutorial step 2: rooms. A message reaches everyone in the sender's room.

Each room is a group of ``app.groups``, named after the room in the path.
"""

from fastrapi import FastrAPI, WebSocket

app = FastrAPI()


@app.websocket("/chat/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    await ws.accept()
    await app.groups.add(room, ws)
    async for text in ws.iter_text():
        await app.groups.send_text(room, text)


if __name__ == "__main__":
    app.serve()

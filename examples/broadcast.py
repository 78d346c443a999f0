# "Broadcast pattern" (broadcast.py) from the WebSocket guide, exactly as documented.
# fmt: off
# ruff: noqa: E722, F401, I001, UP006, UP035
from fastrapi import FastrAPI
from typing import Set
import asyncio

app = FastrAPI()
connections: Set = set()

@app.websocket("/ws")
async def websocket_endpoint(ws):
    await ws.accept()
    connections.add(ws)

    try:
        while True:
            data = await ws.receive_text()

            # Broadcast to all connected clients
            for connection in connections:
                try:
                    await connection.send_json({
                        "message": data,
                        "total_clients": len(connections)
                    })
                except:
                    connections.discard(connection)

    except Exception as e:
        print(f"Connection closed: {e}")
    finally:
        connections.discard(ws)

if __name__ == "__main__":
    app.serve("0.0.0.0", 8000)

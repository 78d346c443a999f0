# "Limiting connection duration" from the WebSocket guide, exactly as documented,
# with the handle_messages() it calls (an echo loop).
# fmt: off
# ruff: noqa: F841, UP041
import asyncio

from fastrapi import FastrAPI

app = FastrAPI()

async def handle_messages(ws):
    try:
        while True:
            data = await ws.receive_text()
            await ws.send_text(data)
    except ConnectionError:
        pass  # the client disconnected

@app.websocket("/ws")
async def websocket_endpoint(ws):
    await ws.accept()
    timeout = asyncio.create_task(asyncio.sleep(3600))

    try:
        await asyncio.wait_for(handle_messages(ws), timeout=3600)
    except asyncio.TimeoutError:
        await ws.close()

if __name__ == "__main__":
    app.serve(host="0.0.0.0", port=8000)

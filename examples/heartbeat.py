# The "Send periodic pings" heartbeat from the WebSocket guide, exactly as documented,
# run alongside an echo endpoint.
# fmt: off
# ruff: noqa: E722
import asyncio

from fastrapi import FastrAPI

app = FastrAPI()

async def heartbeat(ws):
    while True:
        await asyncio.sleep(30)
        try:
            await ws.send_json({"type": "ping"})
        except:
            break

@app.websocket("/ws")
async def websocket_endpoint(ws):
    await ws.accept()
    task = asyncio.create_task(heartbeat(ws))
    try:
        while True:
            data = await ws.receive_text()
            await ws.send_text(data)
    except ConnectionError:
        pass  # the client disconnected
    finally:
        task.cancel()

if __name__ == "__main__":
    app.serve(host="0.0.0.0", port=8000)

# "Connection state" from the WebSocket guide, exactly as documented.
# fmt: off
from fastrapi import FastrAPI

app = FastrAPI()

@app.websocket("/ws")
async def websocket_endpoint(ws):
    await ws.accept()

    while ws.client_state == 1:  # 1 = Connected
        data = await ws.receive_text()
        await ws.send_text(f"Echo: {data}")

if __name__ == "__main__":
    app.serve(host="0.0.0.0", port=8000)

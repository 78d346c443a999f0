# "Error handling" from the WebSocket guide, exactly as documented.
# fmt: off
from fastrapi import FastrAPI, WebSocketException

app = FastrAPI()

@app.websocket("/ws")
async def websocket_endpoint(ws):
    try:
        await ws.accept()

        while True:
            try:
                data = await ws.receive_text()
                await ws.send_json({"echo": data})
            except ConnectionError:
                print("Client disconnected")
                break
            except ValueError as e:
                await ws.send_json({"error": str(e)})

    except WebSocketException as e:
        print(f"WebSocket error: {e.code} - {e.reason}")
    finally:
        # Cleanup code
        print("Connection closed")

if __name__ == "__main__":
    app.serve(host="0.0.0.0", port=8000)

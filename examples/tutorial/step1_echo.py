"""Tutorial step 1: a WebSocket endpoint that sends every message back.

Run it with ``python step1_echo.py`` (or ``fastrapi run step1_echo:app``) and
talk to it with ``python -m websockets ws://127.0.0.1:8000/echo``.
"""

from fastrapi import FastrAPI, WebSocket

app = FastrAPI()


@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text)


if __name__ == "__main__":
    app.serve()  # http://127.0.0.1:8000, until Ctrl+C

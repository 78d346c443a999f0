"""The server the Autobahn testsuite's fuzzing client tests: echo on ``/``.

Every message comes back unchanged (text as text, binary as binary) until
the client closes. The message limit is large enough for the 9.x cases
(up to 16 MiB per message).

    .venv/bin/python conformance/autobahn/echo.py --backend wsproto --port 9001
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's fastrapi

from fastrapi import FastrAPI, Settings, WebSocket, WebSocketDisconnect
from fastrapi.backends import BACKENDS, DEFAULT_BACKEND

MAX_MESSAGE_SIZE = 32 * 1024 * 1024  # the largest 9.x message is 16 MiB

app = FastrAPI(settings=Settings(max_message_size=MAX_MESSAGE_SIZE, compression=True))


@app.websocket("/")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send(await ws.receive())
    except WebSocketDisconnect:
        pass  # the client closed (or the connection was lost): the case is over


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Echo server on ws://127.0.0.1:PORT/ for the fuzzing client."
    )
    parser.add_argument("--backend", choices=list(BACKENDS), default=DEFAULT_BACKEND)
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app.serve("127.0.0.1", args.port, backend=args.backend)


if __name__ == "__main__":
    main()

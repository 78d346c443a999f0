"""The app of conformance/test_workers.py: each connection is told which process serves it.

    python conformance/workers_app.py PORT BACKEND WORKERS [shared]

``shared`` makes the workers accept on one socket of the supervisor's, as
where SO_REUSEPORT does not spread connections, instead of each its own.
"""

from __future__ import annotations

import os
import sys

import fastrapi.core.listeners
from fastrapi import FastrAPI, WebSocket

app = FastrAPI(shutdown_timeout=2, close_timeout=2)


@app.websocket("/pid")
async def pid(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(str(os.getpid()))
    async for text in ws.iter_text():
        await ws.send_text(f"{os.getpid()}: {text}")


if __name__ == "__main__":
    port, backend, workers, *mode = sys.argv[1:]
    if mode == ["shared"]:
        fastrapi.core.listeners.REUSE_PORT = False
    app.serve("127.0.0.1", int(port), backend=backend, workers=int(workers))

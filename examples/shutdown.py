"""What a handler and the lifespan do when the server stops (SIGTERM or Ctrl+C).

On a signal the server stops accepting, sends every open connection a Close
with 1001 "server shutting down", and gives the handlers ``shutdown_timeout``
seconds to finish; then it cancels those still running, runs the lifespan's
shutdown and exits with status 0. Here each connection keeps notes, saved
when the connection ends however it ends, and the store is closed last.

Run ``python examples/shutdown.py``, connect, send a few messages, and stop
the server with Ctrl+C.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastrapi import FastrAPI, WebSocket


class Store:
    """Stands for a database: what the lifespan opens and closes."""

    def __init__(self) -> None:
        self.notes: dict[str, list[str]] = {}

    def save(self, user: str, notes: list[str]) -> None:
        self.notes.setdefault(user, []).extend(notes)

    def close(self) -> None:
        print(f"store closed with notes of {sorted(self.notes)}", flush=True)


# --8<-- [start:lifespan]
@asynccontextmanager
async def lifespan(app: FastrAPI) -> AsyncIterator[dict[str, Store]]:
    store = Store()
    yield {"store": store}  # app.state.store, for every handler
    store.close()  # after the last connection has ended


app = FastrAPI(lifespan=lifespan, shutdown_timeout=5.0)
# --8<-- [end:lifespan]


# --8<-- [start:handler]
@app.websocket("/notes/{user}")
async def notes(ws: WebSocket, user: str) -> None:
    await ws.accept()
    taken: list[str] = []
    try:
        # Ends when the client closes with 1000 or 1001, or when the server
        # shuts down (its own 1001); another close code raises WebSocketDisconnect.
        async for text in ws.iter_text():
            taken.append(text)
            await ws.send_text(f"noted ({len(taken)})")
    finally:
        # Runs however the connection ended, within shutdown_timeout on a
        # shutdown: keep it short, and do not send (the connection is closed).
        app.state.store.save(user, taken)
        print(f"saved {len(taken)} notes of {user} (close code {ws.close_code})", flush=True)


# --8<-- [end:handler]

if __name__ == "__main__":
    app.serve("0.0.0.0", 8000)

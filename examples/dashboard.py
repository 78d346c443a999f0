"""A live dashboard: the server pushes numbers, a page plots them as they come.

Run ``python examples/dashboard.py`` and open http://127.0.0.1:8000/. A task
the lifespan starts makes a reading ten times a second (a random walk,
standing for a gauge such as load or queue length) and broadcasts it to the
pages in the ``dashboard`` group; dashboard.html draws the last 30 seconds on
a canvas, with no script or style from anywhere else.

Why ``group_overflow="drop_oldest"``: a page that falls behind (a slow link,
a laptop waking up) should show the newest readings, not replay old ones. It
keeps at most ``group_outbox`` readings waiting, and skips the oldest.
A new page gets the recent history first, so it draws at once; the page
reconnects by itself when the server restarts.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from fastrapi import FastrAPI, FileResponse, Response, Settings, WebSocket

INTERVAL = 0.1  # seconds between readings
HISTORY = 300  # readings a new page gets first: the 30 seconds the page shows
PAGE = Path(__file__).with_name("dashboard.html")
history: deque[dict[str, float]] = deque(maxlen=HISTORY)


# --8<-- [start:producer]
async def produce(app: FastrAPI) -> None:
    value = 50.0
    while True:
        await anyio.sleep(INTERVAL)
        value = min(100.0, max(0.0, value + random.uniform(-4.0, 4.0)))
        reading = {"t": round(time.time() * 1000), "value": round(value, 2)}  # t: milliseconds
        history.append(reading)
        await app.groups.send_json("dashboard", reading)  # never waits for a page


@asynccontextmanager
async def lifespan(app: FastrAPI) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(produce, app)
        yield
        tasks.cancel_scope.cancel()


app = FastrAPI(lifespan=lifespan, group_overflow="drop_oldest", group_outbox=32)
# --8<-- [end:producer]


@app.get("/")
async def index() -> Response:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8")


# --8<-- [start:endpoint]
@app.websocket("/readings")
async def readings(ws: WebSocket) -> None:
    await ws.accept()
    await app.groups.add("dashboard", ws)
    # The history may reach the page after a reading or two broadcast since
    # the add: the page merges readings by their time, so order does not matter.
    await ws.send_json({"history": list(history)})
    async for _ in ws.iter_text():  # the page sends nothing: wait until it leaves
        pass


# --8<-- [end:endpoint]

# Only this dashboard's own page may connect (cross-site WebSocket hijacking).
ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")

if __name__ == "__main__":
    app.serve("127.0.0.1", 8000, settings=Settings(allowed_origins=ORIGINS))

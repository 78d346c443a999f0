"""One large message sent in pieces as they are produced: ``ws.send_fragments``.

``/report?rows=N`` sends a CSV report of N rows as one text message, in
fragments of 1,000 rows each, as a generator produces them: the server never
holds the whole report, and the client receives one message. ``/download``
sends a file as one binary message, 64 KiB at a time.

A client must accept a message this big: browsers do; Python's websockets
client needs ``max_size=`` (1 MiB by default).

Run ``python examples/streaming.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from fastrapi import FastrAPI, WebSocket

app = FastrAPI()
MAX_ROWS = 1_000_000  # a bound on what one request can make the server produce
ROWS_PER_FRAGMENT = 1_000


# --8<-- [start:report]
async def report(rows: int) -> AsyncIterator[str]:
    """The CSV, 1,000 rows at a time: each piece is sent before the next is made."""
    yield "id,name,score\n"
    for start in range(0, rows, ROWS_PER_FRAGMENT):
        stop = min(start + ROWS_PER_FRAGMENT, rows)
        yield "".join(f"{i},player-{i},{i * 7 % 100}\n" for i in range(start, stop))


@app.websocket("/report")
async def send_report(ws: WebSocket) -> None:
    try:
        rows = int(ws.query_params.get("rows", "10000"))
    except ValueError:
        rows = -1
    if not 0 <= rows <= MAX_ROWS:
        await ws.deny(400, body=f"rows: a number from 0 to {MAX_ROWS}\n".encode())
        return
    await ws.accept()
    await ws.send_fragments(report(rows))  # one text message; pings are still answered meanwhile
    await ws.close()


# --8<-- [end:report]

# --8<-- [start:download]
DOWNLOAD = Path(__file__).with_name("chat.html")  # one fixed file: never a path from the client


async def chunks(path: Path, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as file:
        while chunk := await file.read(size):
            yield chunk


@app.websocket("/download")
async def download(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_fragments(chunks(DOWNLOAD))  # one binary message
    await ws.close()


# --8<-- [end:download]


if __name__ == "__main__":
    app.serve()

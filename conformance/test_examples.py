"""The how-to examples that need a real server: shutdown.py on every backend
(a subprocess stopped with a signal) and fastapi_app.py under uvicorn."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conformance.conftest import EXAMPLES, http_exchange, run_example, run_script

pytestmark = pytest.mark.anyio

GUARD = 20  # seconds: a hang guard around every wait, never a timing assertion


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_shutdown_saves_every_connections_notes_then_closes_the_store(
    backend: str, tmp_path: Path, signum: int
) -> None:
    with run_example("shutdown.py", backend, tmp_path) as server:
        with anyio.fail_after(GUARD):
            async with connect(f"{server.url}/notes/ada") as ada, connect(f"{server.url}/notes/bob") as bob:
                for text in ("first", "second"):
                    await ada.send(text)
                await bob.send("only")
                assert [await ada.recv(), await ada.recv(), await bob.recv()] == [
                    "noted (1)",
                    "noted (2)",
                    "noted (1)",
                ]
                code = await anyio.to_thread.run_sync(server.stop, signum)
                for ws in (ada, bob):
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.recv()
                    assert closed.value.rcvd is not None
                    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                        1001,
                        "server shutting down",
                    )
    assert code == 0, server.output
    log = server.output
    assert "saved 2 notes of ada (close code 1001)" in log
    assert "saved 1 notes of bob (close code 1001)" in log
    # The lifespan's shutdown runs after the last connection ended.
    assert log.index("store closed with notes of ['ada', 'bob']") > max(
        log.index("notes of ada"), log.index("notes of bob")
    )
    assert "Traceback" not in log


UVICORN = """
import sys
sys.path.insert(0, {examples!r})
import uvicorn
uvicorn.run("fastapi_app:api", host="127.0.0.1", port={port}, log_level="info")
"""


async def test_fastapi_app_mounts_fastrapi_and_broadcasts_from_an_http_route(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the examples extra (FastAPI needs pydantic 2.9 or newer)")

    def render(port: int) -> str:
        return UVICORN.format(examples=str(EXAMPLES), port=port)

    with run_script(tmp_path, "launch.py", render) as server:
        with anyio.fail_after(GUARD):
            health = await http_exchange(server.port, get("/health"))
            assert health.startswith(b"HTTP/1.1 200 ") and health.endswith(b'{"status":"ok"}')
            async with (
                connect(f"{server.url}/rt/rooms/lobby") as ada,
                connect(f"{server.url}/rt/rooms/lobby") as bob,
            ):
                await ada.send("hi")  # once both see it, both are in the room
                for ws in (ada, bob):
                    assert json.loads(await ws.recv()) == {"from": "a member", "text": "hi"}
                reply = await http_exchange(server.port, post("/rooms/lobby/announce?text=deploy%20at%205"))
                assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'{"delivered":2}')
                for ws in (ada, bob):
                    assert json.loads(await ws.recv()) == {"from": "the server", "text": "deploy at 5"}
            missing = await http_exchange(server.port, get("/rt/nowhere"))
            assert missing.startswith(b"HTTP/1.1 404 ")
    assert "Traceback" not in server.output


def get(path: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def post(path: str) -> str:
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


async def test_hello_replies_to_each_message(backend: str, tmp_path: Path) -> None:
    with run_example("hello.py", backend, tmp_path) as server:
        with anyio.fail_after(GUARD):
            async with connect(f"{server.url}/ws") as ws:
                for text in ("hi", "", "é🎉"):
                    await ws.send(text)
                    assert json.loads(await ws.recv()) == {"reply": "Message received", "echo": text}
    assert "Traceback" not in server.output

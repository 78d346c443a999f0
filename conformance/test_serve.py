"""``app.serve()`` as a user runs it: a process that logs its URL and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conformance.conftest import ExampleServer, free_port, run_script
from fastrapi.backends import BACKENDS

pytestmark = pytest.mark.anyio

GUARD = 10

SCRIPT = """
import asyncio
from fastrapi import FastrAPI

app = FastrAPI(shutdown_timeout=0.5)

@app.websocket("/ws")
async def echo(ws):
    await ws.accept()
    while True:
        await ws.send_text(await ws.receive_text())

@app.websocket("/stubborn")
async def stubborn(ws):
    await ws.accept()
    try:
        await asyncio.sleep(3600)  # ignores the server's close
    finally:
        print("stubborn handler cancelled", flush=True)

app.serve("127.0.0.1", {port}, backend={backend!r}, access_log={access_log!r})
"""


def script_server(
    tmp_path: Path, backend: str, access_log: bool = True
) -> AbstractContextManager[ExampleServer]:
    return run_script(
        tmp_path,
        "server.py",
        lambda port: SCRIPT.format(port=port, backend=backend, access_log=access_log),
    )


@pytest.mark.parametrize("access_log", [True, False])
async def test_access_log_has_two_lines_per_connection_unless_turned_off(
    backend: str, tmp_path: Path, access_log: bool
) -> None:
    with script_server(tmp_path, backend, access_log) as server:
        with anyio.fail_after(GUARD):
            async with connect(f"{server.url}/ws?n=1") as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
            # The close line is written as the session ends, which may be
            # just after the client saw the close; a silenced log never has it.
            for _ in range(20 if access_log else 6):
                if "closed 1000" in server.log.read_text(errors="replace"):
                    break
                await anyio.sleep(0.05)
        code = await anyio.to_thread.run_sync(server.stop, signal.SIGINT)
    assert code == 0
    lines = [line for line in server.output.splitlines() if "fastrapi.access" in line]
    if access_log:
        assert len(lines) == 2, server.output
        assert '"WebSocket /ws?n=1" 101 ' in lines[0]
        assert '"WebSocket /ws?n=1" closed 1000 after ' in lines[1]
    else:
        assert lines == [], server.output
    assert "serving on" in server.output  # the server's own lines stay


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_closes_every_connection_with_1001_and_exits_0(
    backend: str, tmp_path: Path, signum: int
) -> None:
    with script_server(tmp_path, backend) as server:
        with anyio.fail_after(GUARD):
            async with connect(f"{server.url}/ws") as first, connect(f"{server.url}/ws") as second:
                await first.send("hi")
                assert await first.recv() == "hi"
                code = await anyio.to_thread.run_sync(server.stop, signum)
                for ws in (first, second):
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.recv()
                    assert closed.value.rcvd is not None
                    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                        1001,
                        "server shutting down",
                    )
    assert code == 0
    assert f"serving on http://127.0.0.1:{server.port} (backend {backend})" in server.output
    assert "stopped" in server.output
    assert "Traceback" not in server.output


async def test_handlers_that_ignore_the_close_are_cancelled_after_the_grace_period(
    backend: str, tmp_path: Path
) -> None:
    with script_server(tmp_path, backend) as server:
        with anyio.fail_after(GUARD):
            async with connect(f"{server.url}/stubborn") as ws:
                code = await anyio.to_thread.run_sync(server.stop, signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert code == 0
    assert "stubborn handler cancelled" in server.output
    assert "Traceback" not in server.output


def test_an_unknown_backend_fails_before_serving(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SCRIPT.format(port=free_port(), backend="nonexistent", access_log=True))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=GUARD, check=False
    )
    assert result.returncode != 0
    assert "unknown backend 'nonexistent'; available backends: " in result.stderr
    assert all(repr(name) in result.stderr for name in BACKENDS)

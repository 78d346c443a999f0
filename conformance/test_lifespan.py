"""``FastrAPI(lifespan=...)`` on every backend: around serving, over real sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conformance.conftest import free_port, run_example, serving
from fastrapi import FastrAPI, LifespanStartupError, WebSocket

pytestmark = pytest.mark.anyio

GUARD = 10


async def test_the_lifespan_runs_before_the_first_connection_and_after_the_last(backend: str) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastrAPI) -> AsyncIterator[Mapping[str, Any]]:
        events.append("start-up")
        yield {"greeting": "hello from start-up"}
        events.append("shutdown")

    app = FastrAPI(lifespan=lifespan, shutdown_timeout=2)

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        events.append("connection")
        await ws.send_text(app.state.greeting)  # what the lifespan yielded
        try:
            await ws.receive_text()  # until the server's shutdown closes it
        finally:
            events.append("connection closed")

    with anyio.fail_after(GUARD):
        async with AsyncExitStack() as client_side:
            server_side = AsyncExitStack()
            url = await server_side.enter_async_context(serving(app, backend))
            assert events == ["start-up"]
            ws = await client_side.enter_async_context(connect(f"{url}/ws"))
            assert await ws.recv() == "hello from start-up"
            # Stop the server with the connection still open: it closes it
            # with 1001, and only then ends the lifespan.
            await server_side.aclose()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert events == ["start-up", "connection", "connection closed", "shutdown"]


async def test_a_failed_start_up_serves_nothing_and_says_why(backend: str) -> None:
    @asynccontextmanager
    async def lifespan(app: FastrAPI) -> AsyncIterator[None]:
        raise ConnectionRefusedError("database unreachable")
        yield  # pragma: no cover

    app = FastrAPI(lifespan=lifespan)
    with anyio.fail_after(GUARD), pytest.raises(LifespanStartupError) as failed:
        async with serving(app, backend):
            pytest.fail("served although the start-up failed")
    assert str(failed.value) == "lifespan start-up failed: ConnectionRefusedError: database unreachable"
    assert isinstance(failed.value.__cause__, ConnectionRefusedError)


def test_serve_exits_1_with_the_reason_when_the_start_up_fails(backend: str, tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(
        "from contextlib import asynccontextmanager\n"
        "from fastrapi import FastrAPI\n"
        "@asynccontextmanager\n"
        "async def lifespan(app):\n"
        "    raise RuntimeError('no config')\n"
        "    yield\n"
        "app = FastrAPI(lifespan=lifespan)\n"
        f"app.serve('127.0.0.1', {free_port()}, backend={backend!r})\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=GUARD, check=False
    )
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first == "ERROR fastrapi.server: lifespan start-up failed: RuntimeError: no config; not serving"
    assert "serving on" not in result.stderr


def test_state_names_what_is_missing_and_where_it_comes_from() -> None:
    app = FastrAPI()
    app.state.ready = True
    assert app.state.ready is True
    with pytest.raises(
        AttributeError, match=r"app.state has no 'pool'; yield \{'pool': ...\} from the lifespan"
    ):
        _ = app.state.pool


async def test_the_background_tasks_example_broadcasts_to_every_connection(
    backend: str, tmp_path: Path
) -> None:
    with run_example("background_tasks.py", backend, tmp_path) as server, anyio.fail_after(GUARD):
        async with connect(f"{server.url}/ticks") as first, connect(f"{server.url}/ticks") as second:
            ticks = [json.loads(await ws.recv()) for ws in (first, second)]
            assert all(set(tick) == {"tick"} and tick["tick"] >= 1 for tick in ticks)
            following = json.loads(await first.recv())
            assert following["tick"] == ticks[0]["tick"] + 1
    assert server.stop() == 0

"""fastrapi as an ASGI app under real uvicorn, hypercorn and granian processes, over loopback."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conformance.conftest import ExampleServer, http_exchange, run_script

pytestmark = pytest.mark.anyio

GUARD = 10

APP = """
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Mount

from fastrapi import FastrAPI, Request, WebSocket, WebSocketDisconnect


@asynccontextmanager
async def lifespan(app):
    yield {"started": "lifespan ran"}


app = FastrAPI(lifespan=lifespan, max_message_size=1024, max_body_size=64)


@app.websocket("/chat/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    await ws.accept()
    await ws.send_json({"room": room, "name": ws.query_params.get("name"), "state": app.state.started})
    try:
        async for text in ws.iter_text():
            if text == "bye":
                await ws.close(4001, "bye to you")
                return
            await ws.send_text(text)
    except WebSocketDisconnect as gone:
        print("client closed", gone.code, flush=True)


@app.websocket("/private")
async def private(ws: WebSocket) -> None:
    return  # never accepted: refused


@app.websocket("/login")
async def login(ws: WebSocket) -> None:
    await ws.deny(401, {"www-authenticate": "Bearer"}, b"who are you?")


@app.websocket("/room/{name}")
async def room(ws: WebSocket, name: str) -> None:
    await ws.accept()
    await app.groups.add(name, ws)
    await ws.send_text("joined")
    async for text in ws.iter_text():
        for number in range(20):  # a burst: the outbox holds what the server has not taken yet
            await app.groups.send_text(name, f"{text} {number}")


@app.get("/health")
async def health() -> str:
    return "ok"


@app.post("/echo")
async def echo(request: Request) -> bytes:
    return request.body


# Starlette runs no lifespan of a mounted app: the outer one runs ours.
outer = Starlette(routes=[Mount("/rt", app=app)], lifespan=lambda outer: app.lifespan_context())
"""

SERVERS = {
    # `granian --interface asgi module:app`, its command line; workers are spawned processes.
    "granian": (
        "import sys\nfrom granian.cli import entrypoint\n"
        "if __name__ == '__main__':\n"
        "    sys.argv = ['granian', '--interface', 'asgi', '--host', '127.0.0.1',\n"
        "                '--port', '{port}', {target!r}]\n"
        "    entrypoint()\n"
    ),
    "uvicorn": "import uvicorn\nuvicorn.run({target!r}, host='127.0.0.1', port={port}, log_level='info')\n",
    # hypercorn's own command line; its worker is a spawned process, hence the guard.
    "hypercorn": (
        "import sys\nfrom hypercorn.__main__ import main\n"
        "if __name__ == '__main__':\n"
        "    sys.exit(main([{target!r}, '--bind', '127.0.0.1:{port}']))\n"
    ),
}


@pytest.fixture(params=sorted(SERVERS))
def asgi_server_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def asgi_server(name: str, tmp_path: Path, target: str) -> Iterator[ExampleServer]:
    (tmp_path / "asgiapp.py").write_text(APP)
    launcher = "import sys\nsys.path.insert(0, '.')\n" + SERVERS[name]
    with run_script(tmp_path, "launch.py", lambda port: launcher.format(target=target, port=port)) as server:
        yield server


def get(path: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def post(path: str, body: bytes) -> str:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head + body.decode()


@pytest.mark.parametrize("mount", ["", "/rt"], ids=["app", "mounted"])
async def test_routes_params_lifespan_and_close_codes_under_the_server(
    asgi_server_name: str, tmp_path: Path, mount: str
) -> None:
    target = "asgiapp:outer" if mount else "asgiapp:app"
    with asgi_server(asgi_server_name, tmp_path, target) as server, anyio.fail_after(GUARD):
        base = f"ws://127.0.0.1:{server.port}{mount}"
        async with connect(f"{base}/chat/lobby?name=ann") as ws:
            hello = json.loads(await ws.recv())
            assert hello == {"room": "lobby", "name": "ann", "state": "lifespan ran"}
            await ws.send("echo me")
            assert await ws.recv() == "echo me"
            await ws.send("bye")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye to you")

        # The core's max_message_size still applies: 1009.
        async with connect(f"{base}/chat/big") as ws:
            await ws.recv()
            await ws.send("x" * 2000)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

        # A handler that never accepts: refused with 403.
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{base}/private"):
                pass
        assert refused.value.response.status_code == 403

        reply = await http_exchange(server.port, get(f"{mount}/health"))
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert reply.endswith(b"\r\n\r\nok")
        missing = await http_exchange(server.port, get(f"{mount}/nowhere"))
        assert missing.startswith(b"HTTP/1.1 404 ")

        # A body reaches the handler; one over max_body_size gets 413.
        echoed = await http_exchange(server.port, post(f"{mount}/echo", b"a body"))
        assert echoed.startswith(b"HTTP/1.1 200 "), echoed
        assert echoed.endswith(b"\r\n\r\na body")
        too_big = await http_exchange(server.port, post(f"{mount}/echo", b"x" * 65))
        assert too_big.startswith(b"HTTP/1.1 413 "), too_big


async def test_deny_reaches_the_client_with_its_status_headers_and_body(
    asgi_server_name: str, tmp_path: Path
) -> None:
    # Each of these servers offers the websocket.http.response extension.
    with asgi_server(asgi_server_name, tmp_path, "asgiapp:app") as server, anyio.fail_after(GUARD):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{server.port}/login"):
                pass
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.body == b"who are you?"


async def test_group_broadcasts_reach_every_member_in_order(asgi_server_name: str, tmp_path: Path) -> None:
    # Under ASGI every write is awaited: a member takes one broadcast at a
    # time, and the rest of a burst waits in its outbox (16 by default).
    with asgi_server(asgi_server_name, tmp_path, "asgiapp:app") as server, anyio.fail_after(GUARD):
        base = f"ws://127.0.0.1:{server.port}/room/lobby"
        async with (
            connect(base) as ann,
            connect(base) as bob,
            connect(f"ws://127.0.0.1:{server.port}/room/other") as eve,
        ):
            for ws in (ann, bob, eve):
                assert await ws.recv() == "joined"
            await ann.send("from ann")
            got = {name: [await ws.recv() for _ in range(17)] for name, ws in (("ann", ann), ("bob", bob))}
            # The first went out at once, the next 16 waited: the rest of the burst was dropped.
            assert got["ann"] == got["bob"] == [f"from ann {number}" for number in range(17)]
            await eve.send("from eve")
            # Nothing from the lobby reached the other room. Every member reads
            # its whole share before closing: a close while outbox writes are
            # still in flight once took granian past the client's close timeout.
            assert [await eve.recv() for _ in range(17)] == [f"from eve {number}" for number in range(17)]


# hypercorn 0.18 reports a client's Close as 1006 (its disconnect event has
# only 1000, after a close the app sent, or 1006): the code is lost there.
CLIENT_CLOSE_SEEN = {"uvicorn": 4002, "hypercorn": 1006, "granian": 4002}


async def test_a_client_close_reaches_the_handler_with_its_code(
    asgi_server_name: str, tmp_path: Path
) -> None:
    expected = f"client closed {CLIENT_CLOSE_SEEN[asgi_server_name]}"
    with asgi_server(asgi_server_name, tmp_path, "asgiapp:app") as server, anyio.fail_after(GUARD):
        async with connect(f"ws://127.0.0.1:{server.port}/chat/lobby") as ws:
            await ws.recv()
            await ws.close(4002)
        for _ in range(40):  # the handler's line may follow the client's close by a moment
            if expected in server.log.read_text(errors="replace"):
                break
            await anyio.sleep(0.05)
    assert expected in server.output
    assert "Traceback" not in server.output


def test_the_app_is_an_asgi3_callable() -> None:
    import inspect

    sys.modules.pop("asgiapp", None)
    from fastrapi import FastrAPI

    assert inspect.iscoroutinefunction(FastrAPI.__call__)
    assert list(inspect.signature(FastrAPI.__call__).parameters) == ["self", "scope", "receive", "send"]

"""The WebSocket guide's examples, run as written, on every backend.

Each example in ``examples/`` runs as a subprocess exactly as documented (only
its host and port are changed, see `run_example`) and is driven by the
independent ``websockets`` client. The heartbeat's 30 s interval and the
one-hour connection limit are also run in-process with those delays scaled
down, so no test waits for real time. ``demo.py`` is imported and served
in-process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import types
from collections.abc import Awaitable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK

from conformance.conftest import EXAMPLES, ROOT, ExampleServer, run_example, serving

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds: a hang guard around every wait, never a timing assertion
SEED = ROOT.parent / "shared" / "seed" / "fastrapi-websockets.txt"


# -- helpers ------------------------------------------------------------------


async def recv_json(ws: ClientConnection) -> Any:
    return json.loads(await ws.recv())


class Output:
    """What a running example prints, read from its log as it comes."""

    def __init__(self, server: ExampleServer) -> None:
        self.server = server
        self._position = 0

    async def wait_for(self, text: str) -> None:
        """Wait until ``text`` appears after what earlier waits found (30 s at most)."""
        for _ in range(1500):
            found = self.server.log.read_text(errors="replace").find(text, self._position)
            if found >= 0:
                self._position = found + len(text)
                return
            if self.server.process.poll() is not None:
                raise AssertionError(f"the server exited before printing {text!r}:\n{self.text}")
            await anyio.sleep(0.02)
        raise AssertionError(f"the server did not print {text!r} within 30 s:\n{self.text}")

    @property
    def text(self) -> str:
        return self.server.log.read_text(errors="replace")

    def stop(self) -> str:
        """Stop the server with SIGINT, check that it exits with 0; all its output."""
        code = self.server.stop()
        assert code == 0, self.server.output
        return self.server.output


# The log line a session writes once its handler has returned.
SESSION_ENDED = '"WebSocket /ws" closed'


def load_example(name: str) -> types.ModuleType:
    """Import ``examples/<name>.py`` as a fresh module (its own app and state)."""
    spec = importlib.util.spec_from_file_location(f"seed_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scaled_asyncio(factor: float) -> types.SimpleNamespace:
    """``asyncio`` with every delay of `sleep` and `wait_for` divided by ``factor``."""

    async def sleep(delay: float, result: Any = None) -> Any:
        return await asyncio.sleep(delay / factor, result)

    # The parameter is named as asyncio's, which the examples pass by keyword.
    async def wait_for(awaitable: Awaitable[Any], timeout: float | None) -> Any:  # noqa: ASYNC109
        return await asyncio.wait_for(awaitable, None if timeout is None else timeout / factor)

    return types.SimpleNamespace(**{**vars(asyncio), "sleep": sleep, "wait_for": wait_for})


def _lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines())


def seed_snippet(after: str, through: str) -> str:
    """The guide's text following ``after`` up to and including ``through``.

    Trailing whitespace is ignored (the guide has it on blank lines).
    """
    seed = _lines(SEED.read_text(encoding="utf-8"))
    start = seed.index(after) + len(after)
    return seed[start : seed.index(through, start) + len(through)]


# (example, the prose line before its snippet in the guide, the snippet's last line)
SNIPPETS = [
    (
        "main.py",
        "Create a WebSocket endpoint using the @app.websocket() decorator:\nmain.py\n",
        'app.serve(host="0.0.0.0", port=8000)',
    ),
    (
        "broadcast.py",
        "multiple connected clients:\nbroadcast.py\n",
        'app.serve("0.0.0.0", 8000)',
    ),
    (
        "chat.py",
        "Build a simple chat room with user identification:\nchat.py\n",
        'app.serve("0.0.0.0", 8000)',
    ),
    (
        "connection_state.py",
        "Check the connection state with the client_state property:\n",
        'await ws.send_text(f"Echo: {data}")',
    ),
    (
        "error_handling.py",
        "Handle connection errors and closures gracefully:\n",
        'print("Connection closed")',
    ),
    (
        "heartbeat.py",
        "Send periodic pings to detect dead connections:\n",
        "            break",
    ),
    (
        "connection_duration.py",
        "consider limiting connection duration:\n",
        "        await ws.close()",
    ),
]


# -- the examples hold the guide's code ----------------------------------------


@pytest.mark.parametrize(("name", "after", "through"), SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_example_contains_the_guides_snippet(name: str, after: str, through: str) -> None:
    snippet = seed_snippet(after, through)
    assert snippet.count("\n") >= 4, snippet  # the markers found a real snippet
    assert snippet in _lines((EXAMPLES / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", [s[0] for s in SNIPPETS])
def test_example_serves_on_the_documented_address(name: str) -> None:
    source = (EXAMPLES / name).read_text(encoding="utf-8")
    assert len(re.findall(r"app\.serve\(", source)) == 1
    assert re.search(r'app\.serve\((host=)?"0\.0\.0\.0", (port=)?8000\)', source)


def test_client_html_is_the_guides() -> None:
    seed = SEED.read_text(encoding="utf-8")
    start = seed.index("<!DOCTYPE html>")
    snippet = seed[start : seed.index("</html>", start) + len("</html>")]
    assert (EXAMPLES / "client.html").read_text(encoding="utf-8") == snippet + "\n"


# -- main.py -------------------------------------------------------------------


async def test_main_replies_and_logs(backend: str, tmp_path: Path) -> None:
    texts = ["hello", "héllo wörld", "日本語のテキスト", "emoji 🎉👍🏽 and a ZWJ 👩‍💻", ""]
    with run_example("main.py", backend, tmp_path) as server:
        output = Output(server)
        with anyio.fail_after(GUARD):
            async with connect(f"{server.url}/ws") as ws:
                for text in texts:
                    await ws.send(text)
                    assert await recv_json(ws) == {"reply": "Message received", "echo": text}
            await output.wait_for("Connection closed:")
        log = output.stop()
    for text in texts[:-1]:
        assert f"Client said: {text}" in log
    assert "Traceback" not in log


async def test_client_html_talks_to_main(backend: str, tmp_path: Path) -> None:
    html = (EXAMPLES / "client.html").read_text(encoding="utf-8")
    found = re.search(r"new WebSocket\('([^']+)'\)", html)
    assert found is not None
    target = urlsplit(found.group(1))
    assert (target.scheme, target.hostname, target.port) == ("ws", "localhost", 8000)
    main = (EXAMPLES / "main.py").read_text(encoding="utf-8")
    assert f'@app.websocket("{target.path}")' in main
    with run_example("main.py", backend, tmp_path) as server:
        with anyio.fail_after(GUARD):
            # What the page does: send the input's text, JSON.parse the reply.
            async with connect(f"{server.url}{target.path}") as ws:
                await ws.send("from the page")
                reply = await ws.recv()
    assert isinstance(reply, str)
    assert json.loads(reply)["echo"] == "from the page"


# -- broadcast.py ------------------------------------------------------------


async def test_broadcast_reaches_every_client(backend: str, tmp_path: Path) -> None:
    with run_example("broadcast.py", backend, tmp_path) as server:
        output = Output(server)
        url = f"{server.url}/ws"
        with anyio.fail_after(GUARD):
            async with connect(url) as a:
                # Each client's own message coming back proves it is registered.
                await a.send("a joined")
                assert await recv_json(a) == {"message": "a joined", "total_clients": 1}
                async with connect(url) as b:
                    await b.send("b joined")
                    for ws in (a, b):
                        assert await recv_json(ws) == {"message": "b joined", "total_clients": 2}
                    async with connect(url) as c:
                        await c.send("c joined")
                        for ws in (a, b, c):
                            assert await recv_json(ws) == {"message": "c joined", "total_clients": 3}
                        await b.send("hello everyone ✨")
                        for ws in (a, b, c):
                            assert await recv_json(ws) == {"message": "hello everyone ✨", "total_clients": 3}
                    # c is gone once its handler said so.
                    await output.wait_for("Connection closed:")
                    await a.send("who is left?")
                    for ws in (a, b):
                        assert await recv_json(ws) == {"message": "who is left?", "total_clients": 2}
        log = output.stop()
    assert "Traceback" not in log


# -- chat.py -------------------------------------------------------------------


async def test_chat_rooms_are_separate(backend: str, tmp_path: Path) -> None:
    with run_example("chat.py", backend, tmp_path) as server:
        alpha, beta = f"{server.url}/chat/alpha", f"{server.url}/chat/beta"
        with anyio.fail_after(GUARD):
            async with connect(alpha) as first, connect(beta) as other:
                await first.send("first here")
                assert await recv_json(first) == {
                    "type": "message",
                    "username": "Anonymous",
                    "message": "first here",
                }
                await other.send("beta here")
                assert await recv_json(other) == {
                    "type": "message",
                    "username": "Anonymous",
                    "message": "beta here",
                }
                async with connect(alpha) as second:
                    # beta's join and message did not reach alpha: this comes first.
                    assert await recv_json(first) == {
                        "type": "user_joined",
                        "username": "Anonymous",
                        "room": "alpha",
                    }
                    await second.send("hi alpha")
                    expected = {"type": "message", "username": "Anonymous", "message": "hi alpha"}
                    assert await recv_json(second) == expected
                    assert await recv_json(first) == expected
                assert await recv_json(first) == {"type": "user_left", "username": "Anonymous"}
                # Nothing of alpha's (join, message, leave) reached beta before this.
                await other.send("still beta")
                assert await recv_json(other) == {
                    "type": "message",
                    "username": "Anonymous",
                    "message": "still beta",
                }
        log = Output(server).stop()
    assert "Traceback" not in log


# -- connection_state.py -------------------------------------------------------


async def test_connection_state_loop(backend: str, tmp_path: Path) -> None:
    with run_example("connection_state.py", backend, tmp_path) as server:
        output = Output(server)
        with anyio.fail_after(GUARD):
            async with connect(f"{server.url}/ws") as ws:
                for text in ("x", "ünïcødé 🚀"):
                    await ws.send(text)
                    assert await ws.recv() == f"Echo: {text}"
            # The handler ends when the client leaves...
            await output.wait_for(SESSION_ENDED)
            # ...and the server goes on serving new clients.
            async with connect(f"{server.url}/ws") as ws:
                await ws.send("again")
                assert await ws.recv() == "Echo: again"
        log = output.stop()
    assert "Traceback" not in log


# -- error_handling.py ---------------------------------------------------------


async def test_error_handling_survives_a_binary_message(backend: str, tmp_path: Path) -> None:
    with run_example("error_handling.py", backend, tmp_path) as server:
        output = Output(server)
        with anyio.fail_after(GUARD):
            async with connect(f"{server.url}/ws") as ws:
                await ws.send("hello")
                assert await recv_json(ws) == {"echo": "hello"}
                await ws.send(b"\x00\x01 not text")
                reply = await recv_json(ws)
                assert list(reply) == ["error"]
                assert isinstance(reply["error"], str) and reply["error"]
                await ws.send("still usable")
                assert await recv_json(ws) == {"echo": "still usable"}
            await output.wait_for("Connection closed")
        log = output.stop()
    assert "Client disconnected" in log
    assert "Traceback" not in log


# -- heartbeat.py and connection_duration.py, as written ---------------------


@pytest.mark.parametrize("name", ["heartbeat.py", "connection_duration.py"])
async def test_echo_and_clean_disconnect(backend: str, tmp_path: Path, name: str) -> None:
    with run_example(name, backend, tmp_path) as server:
        output = Output(server)
        with anyio.fail_after(GUARD):
            async with connect(f"{server.url}/ws") as ws:
                for text in ("echo me", "and 🦜 me"):
                    await ws.send(text)
                    assert await ws.recv() == text
            await output.wait_for(SESSION_ENDED)
        log = output.stop()
    assert "Traceback" not in log


# -- heartbeat.py and connection_duration.py, with scaled delays --------------


def _heartbeats() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", None) == "heartbeat" and not task.done()
    ]


async def test_heartbeat_pings_periodically(backend: str) -> None:
    heartbeat = load_example("heartbeat")
    heartbeat.asyncio = scaled_asyncio(1000)  # type: ignore[attr-defined]  # the example imports asyncio  # every 30 s becomes every 30 ms
    async with serving(heartbeat.app, backend) as url:
        with anyio.fail_after(GUARD):
            async with connect(f"{url}/ws") as ws:
                for _ in range(3):
                    assert await recv_json(ws) == {"type": "ping"}
                [task] = _heartbeats()  # one per connection
                await ws.send("between pings")
                while (message := await ws.recv()) != "between pings":
                    assert json.loads(message) == {"type": "ping"}
                assert await recv_json(ws) == {"type": "ping"}  # and they go on
            # The handler cancels the heartbeat when the client leaves.
            await asyncio.wait({task})
            assert task.cancelling() > 0  # cancel() was called, whatever it interrupted


async def test_connection_duration_limit_closes(backend: str) -> None:
    duration = load_example("connection_duration")
    duration.asyncio = scaled_asyncio(3600)  # type: ignore[attr-defined]  # the example imports asyncio  # the hour becomes a second
    async with serving(duration.app, backend) as url:
        with anyio.fail_after(GUARD):
            async with connect(f"{url}/ws") as ws:
                await ws.send("within the hour")
                assert await ws.recv() == "within the hour"
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()  # nothing more is sent: the limit closes it
                assert ws.close_code == 1000


# -- demo.py -------------------------------------------------------------------


def message(username: str, text: str) -> dict[str, str]:
    return {"type": "message", "username": username, "message": text}


async def http_get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while True:
            try:
                response += await stream.receive()
            except anyio.EndOfStream:
                break
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def test_demo_serves_on_loopback() -> None:
    source = (EXAMPLES / "demo.py").read_text(encoding="utf-8")
    assert re.findall(r"app\.serve\(.*\)", source) == [
        'app.serve("127.0.0.1", 8000, settings=Settings(allowed_origins=ORIGINS))'
    ]


async def test_demo_page(backend: str) -> None:
    demo = load_example("demo")
    async with demo.app.run_server("127.0.0.1", 0, backend=backend) as server:
        with anyio.fail_after(GUARD):
            status, headers, body = await http_get(server.addresses[0].port, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    page = body.decode()
    assert int(headers["content-length"]) == len(body)
    assert page.startswith("<!DOCTYPE html>")
    assert "ws://${location.host}/chat/" in page
    assert "?name=" in page
    assert "textContent" in page and "innerHTML" not in page
    assert not re.search(r"(src|href)=", page)  # no external resources


async def test_demo_chat(backend: str) -> None:
    demo = load_example("demo")
    async with serving(demo.app, backend) as url:
        with anyio.fail_after(GUARD):
            async with (
                connect(f"{url}/chat/lobby?name=Ada") as ada,
                connect(f"{url}/chat/caf%C3%A9?name=Eve") as eve,
            ):
                await ada.send("Ada is here")
                assert await recv_json(ada) == message("Ada", "Ada is here")
                await eve.send("Eve is here")
                assert await recv_json(eve) == message("Eve", "Eve is here")
                async with connect(f"{url}/chat/lobby?name=J%C3%BCrgen%20%26%20co") as jurgen:
                    assert await recv_json(ada) == {
                        "type": "user_joined",
                        "username": "Jürgen & co",
                        "room": "lobby",
                    }
                    await jurgen.send("hallo <b>Ada</b>")
                    for ws in (jurgen, ada):
                        assert await recv_json(ws) == message("Jürgen & co", "hallo <b>Ada</b>")
                    await ada.send("hi 👋")
                    for ws in (ada, jurgen):
                        assert await recv_json(ws) == message("Ada", "hi 👋")
                assert await recv_json(ada) == {"type": "user_left", "username": "Jürgen & co"}
                async with connect(f"{url}/chat/caf%C3%A9") as anonymous:
                    # Nothing from the lobby reached café: its next event is this join.
                    assert await recv_json(eve) == {
                        "type": "user_joined",
                        "username": "Anonymous",
                        "room": "café",
                    }
                    await anonymous.send("psst")
                    for ws in (anonymous, eve):
                        assert await recv_json(ws) == message("Anonymous", "psst")
                assert await recv_json(eve) == {"type": "user_left", "username": "Anonymous"}
                await eve.send("bye")
                assert await recv_json(eve) == message("Eve", "bye")
    assert demo.rooms == {}  # empty rooms are forgotten


def test_demo_lets_only_its_own_pages_connect() -> None:
    from fastrapi import Headers, Request
    from fastrapi.core.handshake import check_origin

    demo = load_example("demo")

    def answer(origin: str) -> int | None:
        request = Request("GET", "/chat/lobby", Headers([("origin", origin)]))
        refusal = check_origin(request, demo.ORIGINS)
        return None if refusal is None else refusal.status

    assert answer("http://127.0.0.1:8000") is None
    assert answer("http://localhost:8000") is None
    assert answer("https://evil.example") == 403

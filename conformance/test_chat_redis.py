"""examples/chat_redis.py as a user runs it: two worker processes, one real Redis.

The example runs as a subprocess on every backend, with only its port
substituted and ``REDIS_URL`` pointing at the session's redis-server. Two
members chat from different workers: with the websockets client, through a
Redis restart; then in headless Chromium, two tabs of the chat page.
Every wait is a bounded hang guard, never a timing assertion.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from conformance.browser import CHROMIUM, Page, chromium
from conformance.conftest import EXAMPLES, free_port
from conformance.redis_server import RedisServer
from conformance.test_workers import Served, serving

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes are forked"),
]

GUARD = 30  # seconds: a hang guard around each test's waits
ATTEMPTS = 40  # connections that may land on the same worker before one lands on the other: 1 in 2**40


def example_on(port: int) -> str:
    """chat_redis.py with port 8000 (where it serves, and its pages' origins) replaced."""
    source = (EXAMPLES / "chat_redis.py").read_text()
    assert 'app.serve("127.0.0.1", 8000, ' in source
    assert 'ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")' in source
    return source.replace("8000", str(port))


@contextmanager
def chat_redis(
    tmp_path: Path, backend: str, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    """The example on a free port, served on ``backend`` with two workers, in a
    process group of its own that is killed whole on exit."""
    script = tmp_path / "chat_redis.py"
    script.write_text(example_on(free_port()))
    shutil.copy(EXAMPLES / "chat.html", tmp_path / "chat.html")  # beside the script, as in examples/
    monkeypatch.setenv("REDIS_URL", redis.url)
    monkeypatch.setenv("FASTRAPI_BACKEND", backend)
    with serving(tmp_path, str(script)) as server:
        yield server


async def stop(server: Served) -> None:
    """SIGTERM, as a service manager stops it; it must end cleanly."""
    server.process.send_signal(signal.SIGTERM)
    assert await server.exit_code() == 0, server.output()
    with pytest.raises(ProcessLookupError):  # no worker outlived the supervisor
        os.killpg(server.process.pid, 0)


async def recv_json(ws: ClientConnection) -> Any:
    return json.loads(await ws.recv())


def said(name: str, text: str) -> dict[str, str]:
    return {"type": "message", "username": name, "message": text}


async def join(stack: AsyncExitStack, server: Served, name: str) -> tuple[ClientConnection, int]:
    """A member of the lobby, kept open until ``stack`` closes, and its worker's pid."""
    ws = await stack.enter_async_context(
        connect(
            f"ws://127.0.0.1:{server.port}/chat/lobby?name={name}",
            origin=Origin(f"http://127.0.0.1:{server.port}"),
        )
    )
    welcome = await recv_json(ws)
    assert welcome["type"] == "welcome" and welcome["room"] == "lobby"
    return ws, int(welcome["worker"])


async def test_two_members_on_different_workers_chat_through_redis_and_a_restart(
    backend: str, tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chat_redis(tmp_path, backend, redis_server, monkeypatch) as served, anyio.fail_after(GUARD):
        server = await served.started()
        async with AsyncExitStack() as stack:
            ada, ada_worker = await join(stack, server, "Ada")
            # Bob connects until he lands on the other worker; each Bob on
            # Ada's worker leaves again, and Ada hears of each.
            attempts = 0
            while True:
                assert attempts < ATTEMPTS, f"{ATTEMPTS} connections, all to worker {ada_worker}"
                attempts += 1
                async with AsyncExitStack() as trying:
                    bob, bob_worker = await join(trying, server, "Bob")
                    if bob_worker != ada_worker:
                        stack.push_async_exit(trying.pop_all())
                        break
            events: list[Any] = []
            while events.count({"type": "user_joined", "username": "Bob", "room": "lobby"}) < attempts:
                events.append(await recv_json(ada))
            while events.count({"type": "user_left", "username": "Bob"}) < attempts - 1:
                events.append(await recv_json(ada))

            await ada.send("hi Bob")
            assert await recv_json(ada) == said("Ada", "hi Bob")  # from her own worker
            assert await recv_json(bob) == said("Ada", "hi Bob")  # through Redis
            await bob.send("hi Ada")
            assert await recv_json(bob) == said("Bob", "hi Ada")
            assert await recv_json(ada) == said("Bob", "hi Ada")

            # Redis restarts (empty, as after a crash): both workers reconnect,
            # subscribe again, and their hook tells each its own member.
            redis_server.kill()
            try:
                for ws in (ada, bob):
                    await ws.send("while Redis is down")
                    assert await recv_json(ws) == said(
                        "Ada" if ws is ada else "Bob", "while Redis is down"
                    )  # their own worker's members still get it
            finally:
                redis_server.start()
            notice = {
                "type": "system",
                "message": "reconnected to the other servers: messages may be missing",
            }
            assert await recv_json(ada) == notice
            assert await recv_json(bob) == notice
            await bob.send("back")
            assert await recv_json(bob) == said("Bob", "back")
            assert await recv_json(ada) == said("Bob", "back")

            await stop(server)
            for ws, other in ((ada, "Bob"), (bob, "Ada")):
                with pytest.raises(ConnectionClosed) as closed:
                    # The other worker may close its member first, and its
                    # "left" reach this one before its own Close.
                    if (extra := await recv_json(ws)) == {"type": "user_left", "username": other}:
                        extra = await recv_json(ws)
                    raise AssertionError(f"{extra!r} before the Close")
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    output = server.output()
    assert "(backend " + backend + ", 2 workers)" in output
    assert output.count("reconnected to Redis at") == 2
    assert "Traceback" not in output


# Records what each WebSocket the page opens receives, in window.received:
# the page keeps its socket to itself.
RECORD = """(() => {
  window.received = [];
  const Original = window.WebSocket;
  window.WebSocket = function (url) {
    const socket = new Original(url);
    socket.addEventListener("message", (event) => window.received.push(JSON.parse(event.data)));
    return socket;
  };
})()"""
LOG = "document.getElementById('log').innerText"


async def join_in_page(page: Page, name: str) -> int:
    """Join the lobby as ``name`` (again, if joined already); the worker that serves the tab."""
    await page.evaluate(
        "window.received = [];"
        f"document.getElementById('name').value = '{name}';"
        "document.getElementById('join').requestSubmit()"
    )
    welcome = await page.wait_for("window.received.find((event) => event.type === 'welcome')")
    return int(welcome["worker"])


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (the CI script installs it)")
async def test_the_chat_page_in_two_tabs_served_by_different_workers(
    backend: str, tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chat_redis(tmp_path, backend, redis_server, monkeypatch) as served:
        server = await served.started()
        http = f"http://127.0.0.1:{server.port}"
        async with (
            chromium(tmp_path / "profile") as browser,
            browser.page(f"{http}/") as ada,
            browser.page(f"{http}/") as bob,
        ):
            with anyio.fail_after(2 * GUARD):
                for page in (ada, bob):
                    await page.evaluate(RECORD)
                ada_worker = await join_in_page(ada, "Ada")
                # Bob's tab joins again (the page closes its socket first)
                # until it is served by the other worker.
                for _ in range(ATTEMPTS):
                    if await join_in_page(bob, "Bob") != ada_worker:
                        break
                else:
                    raise AssertionError(f"{ATTEMPTS} connections, all to worker {ada_worker}")
                # (the sockets Bob's tab closed may log their end after this one opened)
                await bob.wait_for("!document.getElementById('message').disabled")
                await ada.evaluate(
                    "document.getElementById('message').value = '<b>hi</b> Bob';"
                    "document.getElementById('send').requestSubmit()"
                )
                await bob.wait_for(f"{LOG}.includes('Ada: <b>hi</b> Bob')")
                assert await bob.evaluate("document.querySelectorAll('#log b').length") == 0
                await bob.evaluate(
                    "document.getElementById('message').value = 'hi Ada';"
                    "document.getElementById('send').requestSubmit()"
                )
                await ada.wait_for(f"{LOG}.includes('Bob: hi Ada')")
                await ada.wait_for(f"{LOG}.includes('Bob joined')")  # through Redis, from Bob's worker
                await stop(server)
                for page in (ada, bob):  # every socket the tab opened has ended
                    ended, opened = (
                        f"{LOG}.split('{line}').length" for line in ("Disconnected", "Connected")
                    )
                    await page.wait_for(f"{ended} === {opened}")
                    assert await page.evaluate("document.getElementById('message').disabled")
    assert "Traceback" not in server.output()


async def test_tutorial_step6_serves_one_chat_from_two_workers(
    backend: str, tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (EXAMPLES / "tutorial" / "step6_workers.py").read_text()
    assert source.count("app.serve(workers=2)") == 1
    (tmp_path / "tutorial").mkdir()
    script = tmp_path / "tutorial" / "step6_workers.py"  # the page is found at ../chat.html
    script.write_text(source.replace("app.serve(workers=2)", 'app.serve("127.0.0.1", 0, workers=2)'))
    shutil.copy(EXAMPLES / "chat.html", tmp_path / "chat.html")
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("FASTRAPI_BACKEND", backend)
    clients = 40  # on one worker only, 1 in 2**39
    with serving(tmp_path, str(script)) as served, anyio.fail_after(GUARD):
        server = await served.started()
        async with AsyncExitStack() as stack:
            members = []
            for index in range(clients):
                ws = await stack.enter_async_context(
                    connect(
                        f"ws://127.0.0.1:{server.port}/chat/lobby?name=m{index}",
                        origin=Origin("http://127.0.0.1:8000"),  # the allowed origin, whatever the port
                    )
                )
                welcome = await recv_json(ws)
                assert welcome["type"] == "welcome"
                members.append((ws, welcome["members"]))
            # "members" counts those of the worker that serves the connection.
            assert max(count for _, count in members) < clients
            await members[0][0].send("hello, both workers")
            for index, (ws, _) in enumerate(members):
                # Each arrival after it, once, and the message, in no order
                # between workers; an arrival just before it may come too (it
                # was still on its way through Redis), and once at most.
                expected = [
                    json.dumps({"type": "user_joined", "username": f"m{later}", "room": "lobby"})
                    for later in range(index + 1, clients)
                ] + [json.dumps(said("m0", "hello, both workers"))]
                events: list[str] = []
                while not set(expected) <= set(events):
                    events.append(json.dumps(await recv_json(ws)))
                assert len(events) == len(set(events)), events
                for extra in set(events) - set(expected):
                    earlier = json.loads(extra)
                    assert earlier["type"] == "user_joined" and int(earlier["username"][1:]) < index
            await stop(server)
    assert "Traceback" not in server.output()

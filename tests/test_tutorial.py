"""The tutorial's steps (examples/tutorial/), each run as the tutorial says.

The docs include these files whole or in sections, so what a reader copies is
what runs here: steps 1, 2, 3 and 5 through the test client, step 4 (itself a
test file) by pytest in a process of its own, from the tutorial's directory,
as ``pytest step4_test_app.py``, and step 6 as two apps on the session's
redis-server (conformance/test_chat_redis.py serves it with two workers).
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import time
import types
from pathlib import Path

import anyio
import pytest

from conformance.redis_server import RedisServer
from fastrapi import FastrAPI, WebSocketDisconnect
from fastrapi.testing import AsyncTestClient, TestClient, WebSocketDenied

TUTORIAL = Path(__file__).resolve().parent.parent / "examples" / "tutorial"


def load(name: str) -> types.ModuleType:
    """Import ``examples/tutorial/<name>.py`` afresh: its own app, its own groups."""
    spec = importlib.util.spec_from_file_location(f"tutorial_{name}", TUTORIAL / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step1_echoes_text() -> None:
    app = load("step1_echo").app
    with TestClient(app) as client, client.websocket_connect("/echo") as ws:
        for text in ("hello", "", "héllo 🌍"):
            ws.send_text(text)
            assert ws.receive_text() == text


def test_step1_ends_when_the_client_closes() -> None:
    app = load("step1_echo").app
    with TestClient(app) as client:
        with client.websocket_connect("/echo") as ws:
            ws.close()
            assert ws.close_code == 1000


def test_step2_a_message_reaches_the_room_and_only_the_room() -> None:
    app = load("step2_rooms").app
    with TestClient(app) as client:
        with (
            client.websocket_connect("/chat/lobby") as ada,
            client.websocket_connect("/chat/lobby") as bob,
            client.websocket_connect("/chat/kitchen") as cy,
        ):
            # Step 2 tells a client nothing when it joins (step 3 does): wait until all three are in.
            wait_for_members(app, "lobby", 2)
            wait_for_members(app, "kitchen", 1)
            bob.send_text("hi all")
            assert ada.receive_text() == "hi all"
            assert bob.receive_text() == "hi all"
            cy.send_text("kitchen only")
            assert cy.receive_text() == "kitchen only"
            ada.send_text("lobby again")
            assert bob.receive_text() == "lobby again"  # nothing from the kitchen came before it
        assert app.groups.stats().members == 0


def wait_for_members(app: FastrAPI, room: str, count: int) -> None:
    for _ in range(500):  # a hang guard: the handlers join within a few loop turns
        if app.groups.count(room) == count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{room} has {app.groups.count(room)} members, not {count}")


def test_step3_events_and_leaving() -> None:
    app = load("step3_names").app
    with TestClient(app) as client:
        with client.websocket_connect("/chat/lobby?name=Ada") as ada:
            assert ada.receive_json() == {"type": "welcome", "room": "lobby", "members": 1}
            with client.websocket_connect("/chat/lobby?name=J%C3%BCrgen") as jurgen:
                assert jurgen.receive_json() == {"type": "welcome", "room": "lobby", "members": 2}
                assert ada.receive_json() == {"type": "user_joined", "username": "Jürgen", "room": "lobby"}
                jurgen.send_text("<b>hallo</b>")
                said = {"type": "message", "username": "Jürgen", "message": "<b>hallo</b>"}
                assert ada.receive_json() == jurgen.receive_json() == said
            assert ada.receive_json() == {"type": "user_left", "username": "Jürgen"}
        assert app.groups.stats().members == 0


def test_step3_refuses_a_missing_name_before_accepting() -> None:
    app = load("step3_names").app
    with TestClient(app) as client, pytest.raises(WebSocketDenied) as denied:
        with client.websocket_connect("/chat/lobby"):
            pass
    assert denied.value.status == 400


def test_step3_a_binary_message_closes_with_1003_and_the_room_hears_of_it() -> None:
    app = load("step3_names").app
    with TestClient(app) as client:
        with (
            client.websocket_connect("/chat/lobby?name=Ada") as ada,
            client.websocket_connect("/chat/lobby?name=Bob") as bob,
        ):
            ada.receive_json()
            bob.receive_json()
            assert ada.receive_json()["type"] == "user_joined"
            bob.send_bytes(b"\xff")
            with pytest.raises(WebSocketDisconnect) as closed:
                bob.receive_json()
            assert closed.value.code == 1003
            assert ada.receive_json() == {"type": "user_left", "username": "Bob"}


def test_step4_passes_under_pytest_as_the_tutorial_runs_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "step4_test_app.py"],
        cwd=TUTORIAL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed" in result.stdout, result.stdout


def test_step5_serves_the_page_and_only_its_own_pages_connect() -> None:
    step5 = load("step5_page")
    with TestClient(step5.app) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "new WebSocket" in page.text
        with client.websocket_connect(
            "/chat/lobby?name=Ada", headers={"origin": "http://127.0.0.1:8000"}
        ) as ws:
            assert ws.receive_json()["type"] == "welcome"
        for origin in ({"origin": "https://evil.example"}, {}):
            with pytest.raises(WebSocketDenied) as denied:
                with client.websocket_connect("/chat/lobby?name=Eve", headers=origin):
                    pass
            assert denied.value.status == 403


@pytest.mark.anyio
async def test_step6_two_apps_on_one_redis_are_one_chat(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two instances of the module stand for its two workers: each its own
    # app, groups and connections to Redis.
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    first, second = load("step6_workers"), load("step6_workers")
    assert inspect.getsource(first.chat) == inspect.getsource(load("step5_page").chat)
    origin = {"origin": "http://127.0.0.1:8000"}
    with anyio.fail_after(20):
        async with (
            AsyncTestClient(first.app) as one,
            AsyncTestClient(second.app) as other,
            one.websocket_connect("/chat/lobby?name=Ada", headers=origin) as ada,
        ):
            # Each counts the members of its own process.
            assert await ada.receive_json() == {"type": "welcome", "room": "lobby", "members": 1}
            async with other.websocket_connect("/chat/lobby?name=Bob", headers=origin) as bob:
                assert await bob.receive_json() == {"type": "welcome", "room": "lobby", "members": 1}
                joined = {"type": "user_joined", "username": "Bob", "room": "lobby"}
                assert await ada.receive_json() == joined
                await ada.send_text("hi Bob")
                said = {"type": "message", "username": "Ada", "message": "hi Bob"}
                assert await ada.receive_json() == said
                got = await bob.receive_json()
                if got["type"] == "user_joined":  # Ada's, if it was still on its way when Bob subscribed
                    assert got["username"] == "Ada"
                    got = await bob.receive_json()
                assert got == said
            assert await ada.receive_json() == {"type": "user_left", "username": "Bob"}
    assert second.app.groups.stats().published >= 2  # Bob's arrival and his leaving
    assert second.app.groups.stats().publish_failures == 0

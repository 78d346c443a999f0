"""`fastrapi.testing`: the real core in-process, driven like a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect, WebSocketException
from fastrapi.testing import AsyncTestClient, TestClient, WebSocketDenied

events: list[str] = []


@asynccontextmanager
async def lifespan(app: FastrAPI) -> AsyncIterator[dict[str, str]]:
    events.append("start-up")
    yield {"motd": "welcome"}
    events.append("shutdown")


app = FastrAPI(lifespan=lifespan, max_message_size=100)


@app.websocket("/chat/{room}")
async def chat(ws: WebSocket, room: str) -> None:
    await ws.accept(subprotocol="chat.v1" if "chat.v1" in ws.subprotocols else None, headers={"x-room": room})
    await ws.send_json({"room": room, "name": ws.query_params.get("name"), "motd": app.state.motd})
    try:
        while True:
            message = await ws.receive()
            if getattr(message, "data", None) == "quit":
                await ws.close(4000, "asked to quit")
                return
            await ws.send(message)
    except WebSocketDisconnect as gone:
        events.append(f"client closed {gone.code}")


@app.websocket("/denied")
async def denied(ws: WebSocket) -> None:
    await ws.deny(401, headers={"www-authenticate": "Bearer"}, body=b"log in first")


@app.websocket("/refused")
async def refused(ws: WebSocket) -> None:
    return


@app.websocket("/broken")
async def broken(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    raise LookupError("no such user")


@app.websocket("/silent")
async def silent(ws: WebSocket) -> None:
    await ws.accept()
    await anyio.sleep(3600)


@app.websocket("/policy")
async def policy(ws: WebSocket) -> None:
    await ws.accept()
    raise WebSocketException(4003, "not allowed")


@app.get("/health")
async def health() -> str:
    return "ok"


def test_messages_params_subprotocol_headers_and_lifespan_state() -> None:
    events.clear()
    with TestClient(app) as client:
        assert events == ["start-up"]
        with client.websocket_connect("/chat/lobby?name=ann", subprotocols=["chat.v1"]) as ws:
            assert ws.accepted_subprotocol == "chat.v1"
            assert ("x-room", "lobby") in ws.accepted_headers
            assert ws.receive_json() == {"room": "lobby", "name": "ann", "motd": "welcome"}
            ws.send_text("hello")
            assert ws.receive_text() == "hello"
            ws.send_bytes(b"\x00\x01")
            assert ws.receive_bytes() == b"\x00\x01"
            ws.send_json({"a": [1, 2]})
            assert ws.receive_json() == {"a": [1, 2]}
    assert events == ["start-up", "client closed 1000", "shutdown"]


def test_a_server_close_is_a_disconnect_on_the_next_receive() -> None:
    with TestClient(app) as client, client.websocket_connect("/chat/lobby") as ws:
        ws.receive_json()
        ws.send_text("quit")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert (closed.value.code, closed.value.reason) == (4000, "asked to quit")


def test_the_client_close_code_reaches_the_handler() -> None:
    events.clear()
    with TestClient(app) as client, client.websocket_connect("/chat/lobby") as ws:
        ws.receive_json()
        ws.close(4100)
    assert "client closed 4100" in events


def test_a_refused_handshake_raises_denied_with_the_answer() -> None:
    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as denial:
            with client.websocket_connect("/denied"):
                pytest.fail("connected although denied")
        assert denial.value.status == 401
        assert ("www-authenticate", "Bearer") in denial.value.headers
        assert denial.value.body == b"log in first"
        with pytest.raises(WebSocketDenied) as forbidden:
            with client.websocket_connect("/refused"):
                pass
        assert forbidden.value.status == 403
        with pytest.raises(WebSocketDenied) as missing:
            with client.websocket_connect("/nowhere"):
                pass
        assert missing.value.status == 404


def test_the_handlers_exception_is_raised_in_the_test_when_the_block_ends() -> None:
    with TestClient(app) as client:
        with pytest.raises(LookupError, match="no such user"):
            with client.websocket_connect("/broken") as ws:
                ws.send_text("go")
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_text()
                assert closed.value.code == 1011


def test_a_websocket_exception_closes_with_its_code_and_is_not_re_raised() -> None:
    with TestClient(app) as client, client.websocket_connect("/policy") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert (closed.value.code, closed.value.reason) == (4003, "not allowed")


def test_a_receive_that_gets_nothing_times_out_clearly() -> None:
    with TestClient(app, timeout=0.2) as client, client.websocket_connect("/silent") as ws:
        with pytest.raises(TimeoutError, match=r"nothing received from /silent within 0.1 s"):
            ws.receive_text(timeout=0.1)
        with pytest.raises(TimeoutError, match=r"within 0.2 s"):
            ws.receive_text()


def test_the_message_size_limit_closes_with_1009() -> None:
    with TestClient(app) as client, client.websocket_connect("/chat/lobby") as ws:
        ws.receive_json()
        ws.send_text("x" * 101)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1009


def test_http_routes() -> None:
    with TestClient(app) as client:
        ok = client.get("/health")
        assert (ok.status_code, ok.text) == (200, "ok")
        assert ok.headers["content-type"].startswith("text/plain")
        assert client.get("/nowhere").status_code == 404
        upgrade = client.get("/chat/lobby")
        assert upgrade.status_code == 426
        assert client.post("/health").status_code == 405


def test_calls_outside_the_block_say_what_to_do() -> None:
    client = TestClient(app)
    with pytest.raises(RuntimeError, match="inside `with TestClient"):
        client.get("/health")


@pytest.mark.anyio
async def test_the_async_client_offers_the_same_calls() -> None:
    async with AsyncTestClient(app) as client:
        async with client.websocket_connect("/chat/room1?name=bo") as ws:
            assert await ws.receive_json() == {"room": "room1", "name": "bo", "motd": "welcome"}
            await ws.send_text("hi")
            assert await ws.receive_text() == "hi"
        with pytest.raises(WebSocketDenied):
            async with client.websocket_connect("/refused"):
                pass
        assert (await client.get("/health")).text == "ok"


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.text(max_size=25), st.binary(max_size=100)))  # 25 characters: at most 100 bytes
def test_any_message_round_trips(message: str | bytes) -> None:
    with TestClient(app) as client, client.websocket_connect("/chat/lobby") as ws:
        ws.receive_json()
        if isinstance(message, str):
            if message == "quit":
                return
            ws.send_text(message)
            assert ws.receive_text() == message
        else:
            ws.send_bytes(message)
            assert ws.receive_bytes() == message

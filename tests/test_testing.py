"""`fastrapi.testing`: the real core in-process, driven as a client drives it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrapi import (
    FastrAPI,
    LifespanStartupError,
    MessageTypeError,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
)
from fastrapi.testing import AsyncTestClient, TestClient, WebSocketDenied

SHORT = 0.2  # seconds: a timeout meant to run out


@dataclass
class Seen:
    """What the handlers saw, for the test to check afterwards."""

    lifespan: list[str] = field(default_factory=list)
    closes: list[tuple[int, str]] = field(default_factory=list)
    after_deny: list[str] = field(default_factory=list)


def make_app(**settings_: Any) -> tuple[FastrAPI, Seen]:
    seen = Seen()

    @asynccontextmanager
    async def lifespan(app: FastrAPI) -> AsyncIterator[dict[str, str]]:
        seen.lifespan.append("start-up")
        yield {"motd": "welcome"}
        seen.lifespan.append("shutdown")

    app = FastrAPI(lifespan=lifespan, **settings_)

    @app.websocket("/chat/{room}")
    async def chat(ws: WebSocket, room: str) -> None:
        chosen = next((name for name in ws.subprotocols if name.startswith("chat.")), None)
        await ws.accept(subprotocol=chosen, headers={"x-room": room})
        await ws.send_json(
            {
                "room": room,
                "name": ws.query_params.get("name"),
                "token": ws.headers.get("x-token"),
                "motd": app.state.motd,
            }
        )
        try:
            while True:
                message = await ws.receive()
                if message.data == "quit":
                    await ws.close(4000, "asked to quit")
                    return
                await ws.send(message)
        except WebSocketDisconnect as gone:
            seen.closes.append((gone.code, gone.reason))

    @app.websocket("/items/{item:int}")
    async def items(ws: WebSocket, item: int) -> None:
        await ws.accept()
        await ws.send_json({"item": item, "type": type(item).__name__})

    @app.websocket("/refused")
    async def refused(ws: WebSocket) -> None:
        return

    @app.websocket("/denied")
    async def denied(ws: WebSocket) -> None:
        await ws.deny(401, headers={"www-authenticate": "Bearer"}, body=b"log in first")
        await anyio.lowlevel.checkpoint()
        seen.after_deny.append("ran on after deny()")

    @app.websocket("/broken")
    async def broken(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()
        raise LookupError("no such user")

    @app.websocket("/broken-early")
    async def broken_early(ws: WebSocket) -> None:
        raise LookupError("no such room")

    @app.websocket("/policy")
    async def policy(ws: WebSocket) -> None:
        await ws.accept()
        raise WebSocketException(4003, "not allowed")

    @app.websocket("/silent")
    async def silent(ws: WebSocket) -> None:
        await ws.accept()
        await anyio.sleep(3600)

    @app.websocket("/undecided")
    async def undecided(ws: WebSocket) -> None:
        await anyio.sleep(3600)

    @app.websocket("/pinger")
    async def pinger(ws: WebSocket) -> None:
        await ws.accept()
        await ws.ping(b"still there?")
        await ws.send_text("pong came back")
        await ws.receive_text()

    @app.websocket("/fragments")
    async def fragments(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_fragments([b"\x01", b"", b"\x02" * 3])
        await ws.send_fragments(["frag", "ments"])
        await ws.receive_text()

    @app.websocket("/slow-fragments")
    async def slow_fragments(ws: WebSocket) -> None:
        async def halves() -> AsyncIterator[str]:
            yield "first half, "
            await ws.receive_text()  # the rest waits for the client's word
            yield "second half"

        await ws.accept()
        await ws.send_fragments(halves())
        await ws.receive_text()

    @app.get("/health")
    async def health() -> str:
        return "ok"

    @app.get("/slow")
    async def slow() -> str:
        await anyio.sleep(3600)
        return "late"

    @app.get("/status")
    async def status() -> Response:
        return Response(200, [("content-type", "application/json")], b'{"up": true}')

    @app.get("/content-type")
    async def content_type(request: Request) -> str:
        return f"{request.headers.get('content-type')} {request.headers.get('content-length')}"

    @app.post("/orders/{order:int}")
    async def orders(request: Request, order: int) -> dict[str, Any]:
        return {"order": order, "method": request.method, "type": request.headers.get("content-type")}

    return app, seen


# -- messages ------------------------------------------------------------------


def test_text_bytes_and_json_round_trip() -> None:
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/chat/lobby") as ws:
        ws.receive_json()
        ws.send_text("hello")
        assert ws.receive_text() == "hello"
        ws.send_bytes(b"\x00\x01\xff")
        assert ws.receive_bytes() == b"\x00\x01\xff"
        ws.send_json({"a": [1, 2.5, None]})
        assert ws.receive_json() == {"a": [1, 2.5, None]}
        ws.send_json(["binary"], mode="binary")
        assert ws.receive_bytes() == b'["binary"]'
        ws.send_text("any")
        assert ws.receive().data == "any"


def test_a_message_of_the_other_type_is_a_message_type_error() -> None:
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/chat/lobby") as ws:
        ws.receive_json()
        ws.send_bytes(b"raw")
        with pytest.raises(MessageTypeError) as wrong:
            ws.receive_text()
        assert wrong.value.message.data == b"raw"
        ws.send_text("text")
        with pytest.raises(MessageTypeError) as wrong:
            ws.receive_bytes()
        assert wrong.value.message.data == "text"
        with pytest.raises(TypeError, match="use send_bytes"):
            ws.send_text(b"raw")  # type: ignore[arg-type]  # the mistake under test
        with pytest.raises(TypeError, match="use send_text"):
            ws.send_bytes("raw")  # type: ignore[arg-type]  # the mistake under test
        with pytest.raises(ValueError, match="mode"):
            ws.send_json({}, mode="xml")  # type: ignore[arg-type]  # the mistake under test


def test_fragments_from_the_server_arrive_as_one_message() -> None:
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/fragments") as ws:
        assert ws.receive_bytes() == b"\x01\x02\x02\x02"
        assert ws.receive_text() == "fragments"


def test_a_receive_that_times_out_midway_through_a_message_keeps_its_first_fragments() -> None:
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/slow-fragments") as ws:
        with pytest.raises(TimeoutError):
            ws.receive_text(timeout=SHORT)  # the first half came, then nothing
        ws.send_text("go on")
        assert ws.receive_text() == "first half, second half"


def test_the_subprotocol_and_the_101s_headers_come_back() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        with client.websocket_connect("/chat/lobby", subprotocols=["graphql-ws", "chat.v2", "chat.v1"]) as ws:
            assert ws.accepted_subprotocol == "chat.v2"
            assert ws.extra_headers["x-room"] == "lobby"
        with client.websocket_connect("/chat/lobby") as ws:
            assert ws.accepted_subprotocol is None


def test_query_path_params_and_headers_reach_the_handler() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        with client.websocket_connect("/chat/r%C3%A9union?name=ann", headers={"x-token": "secret"}) as ws:
            assert ws.receive_json() == {
                "room": "réunion",
                "name": "ann",
                "token": "secret",
                "motd": "welcome",
            }
        with client.websocket_connect("/items/42") as ws:
            assert ws.receive_json() == {"item": 42, "type": "int"}


def test_the_servers_pings_are_answered_without_the_test_reading() -> None:
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/pinger") as ws:
        assert ws.receive_text() == "pong came back"


# -- refusals ------------------------------------------------------------------


def test_returning_before_accept_is_a_403_denial() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as denial:
            with client.websocket_connect("/refused"):
                pytest.fail("the block ran although the handshake was refused")
    assert denial.value.status == 403
    assert "403" in str(denial.value)


def test_deny_gives_its_status_headers_and_body_and_the_handler_finishes() -> None:
    app, seen = make_app()
    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as denial:
            with client.websocket_connect("/denied"):
                pass
        assert seen.after_deny == ["ran on after deny()"]
    assert denial.value.status == 401
    assert denial.value.headers["www-authenticate"] == "Bearer"
    assert denial.value.body == b"log in first"


def test_no_route_and_a_wrong_param_type_are_404() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        for path in ("/nowhere", "/items/forty-two"):
            with pytest.raises(WebSocketDenied) as denial:
                with client.websocket_connect(path):
                    pass
            assert denial.value.status == 404


def test_the_core_checks_the_handshake_headers() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as denial:
            with client.websocket_connect("/chat/lobby", headers={"sec-websocket-version": "8"}):
                pass
    assert denial.value.status == 426
    assert denial.value.headers["sec-websocket-version"] == "13"


# -- closing ---------------------------------------------------------------------


def test_a_server_close_is_a_disconnect_on_the_next_receive_and_after() -> None:
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/chat/lobby") as ws:
        ws.receive_json()
        ws.send_text("quit")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert (closed.value.code, closed.value.reason) == (4000, "asked to quit")
        assert (ws.close_code, ws.close_reason) == (4000, "asked to quit")
        with pytest.raises(WebSocketDisconnect) as again:
            ws.receive_text()
        assert again.value.code == 4000
        with pytest.raises(WebSocketDisconnect) as sending:
            ws.send_text("anyone?")
        assert sending.value.code == 4000


def test_a_send_after_the_server_closed_is_a_disconnect_before_the_close_is_read() -> None:
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/policy") as ws:
        with pytest.raises(WebSocketDisconnect) as sending:
            for _ in range(100):  # until the session's end reaches the client
                ws.send_text("too late")
        assert (sending.value.code, sending.value.reason) == (4003, "not allowed")
        with pytest.raises(WebSocketDisconnect) as closed:  # the Close is still there to read
            ws.receive_text()
        assert closed.value.code == 4003


def test_the_clients_close_code_and_reason_reach_the_handler() -> None:
    app, seen = make_app()
    with TestClient(app) as client:
        with client.websocket_connect("/chat/lobby") as ws:
            ws.receive_json()
            ws.close(4100, "bye")
            assert ws.close_code == 4100  # the server's answer echoes it
        with client.websocket_connect("/chat/lobby"):
            pass  # the block's end closes with 1000
    assert seen.closes == [(4100, "bye"), (1000, "")]


def test_a_message_over_max_message_size_closes_with_1009() -> None:
    app, _ = make_app(max_message_size=100)
    with TestClient(app) as client, client.websocket_connect("/chat/lobby") as ws:
        ws.receive_json()
        ws.send_text("x" * 100)
        assert ws.receive_text() == "x" * 100
        ws.send_text("x" * 101)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1009


# -- the handler's exceptions --------------------------------------------------


def test_the_handlers_exception_is_raised_when_the_block_ends() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        with pytest.raises(LookupError, match="no such user"):
            with client.websocket_connect("/broken") as ws:
                ws.send_text("go")
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_text()
                assert closed.value.code == 1011


def test_an_exception_before_accept_is_raised_by_websocket_connect() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        with pytest.raises(LookupError, match="no such room"):
            with client.websocket_connect("/broken-early"):
                pytest.fail("the block ran although the handler raised")


def test_without_raise_server_exceptions_the_test_sees_what_a_client_sees() -> None:
    app, _ = make_app()
    with TestClient(app, raise_server_exceptions=False) as client:
        with pytest.raises(WebSocketDenied) as denial:
            with client.websocket_connect("/broken-early"):
                pass
        assert denial.value.status == 500
        with client.websocket_connect("/broken") as ws:
            ws.send_text("go")
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
        assert closed.value.code == 1011


def test_a_websocket_exception_is_a_close_not_an_error() -> None:
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/policy") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (4003, "not allowed")


def test_the_tests_own_exception_goes_through_the_block() -> None:
    app, seen = make_app()
    with TestClient(app) as client:
        with pytest.raises(KeyError, match="from the test"):
            with client.websocket_connect("/chat/lobby"):
                raise KeyError("from the test")
    assert seen.closes == [(1000, "")]


# -- timeouts --------------------------------------------------------------------


def test_a_receive_that_gets_nothing_times_out_and_says_what_it_awaited() -> None:
    app, _ = make_app()
    with TestClient(app, timeout=SHORT) as client, client.websocket_connect("/silent") as ws:
        with pytest.raises(
            TimeoutError, match=r"^receive_text\(\) got no message from /silent within 0.1 s$"
        ):
            ws.receive_text(timeout=0.1)
        with pytest.raises(TimeoutError, match=rf"receive_json\(\) .* within {SHORT} s"):
            ws.receive_json()


def test_a_handshake_nobody_answers_times_out() -> None:
    app, _ = make_app()
    with TestClient(app, timeout=SHORT) as client:
        with pytest.raises(TimeoutError, match=r"websocket_connect\('/undecided'\) got no answer"):
            with client.websocket_connect("/undecided"):
                pass


def test_sending_to_a_handler_that_never_reads_times_out() -> None:
    app, _ = make_app(max_queue=2)
    with TestClient(app, timeout=SHORT) as client, client.websocket_connect("/silent") as ws:
        with pytest.raises(TimeoutError, match="the app is not reading"):
            for _ in range(100):  # the inbox, then the connection's buffer fill up
                ws.send_text("unread")
        with pytest.raises(TimeoutError, match=r"close\(\) to /silent: no Close came back"):
            ws.close()
        assert ws.close_code == 1006


def test_the_handshake_dropped_at_open_timeout_is_a_disconnect() -> None:
    app = FastrAPI(open_timeout=0.05)

    @app.websocket("/slow")
    async def slow(ws: WebSocket) -> None:
        await anyio.sleep(3600)  # outlives its connection: cut when the block ends

    with TestClient(app, timeout=1.0) as client:
        with pytest.raises(WebSocketDisconnect) as dropped:
            with client.websocket_connect("/slow"):
                pass
    assert dropped.value.code == 1006


# -- HTTP ----------------------------------------------------------------------


def test_http_get_head_and_json() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        ok = client.get("/health")
        assert (ok.status_code, ok.text, ok.content) == (200, "ok", b"ok")
        assert ok.headers["content-type"] == "text/plain; charset=utf-8"
        assert ok.headers["content-length"] == "2"
        head = client.head("/health")
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "2")
        assert client.get("/status").json() == {"up": True}


def test_http_errors_404_405_and_426() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        assert client.get("/nowhere").status_code == 404
        refusals = [client.post("/health"), client.put("/health"), client.delete("/health")]
        for refused in [*refusals, client.options("/health")]:
            assert refused.status_code == 405
            assert refused.headers["allow"] == "GET, HEAD"
        upgrade = client.get("/chat/lobby")
        assert upgrade.status_code == 426
        assert upgrade.headers["upgrade"] == "websocket"


def test_each_method_reaches_its_route() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        created = client.post("/orders/7", json={"n": 1})
        assert created.json() == {"order": 7, "method": "POST", "type": "application/json"}
        assert created.headers["content-type"] == "application/json"
        wrong = client.patch("/orders/7", content=b"{}")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")


def test_a_body_sets_its_content_headers() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        assert client.request("GET", "/content-type", json={"a": 1}).text == "application/json 7"
        assert client.request("GET", "/content-type", content="hé").text == "text/plain; charset=utf-8 3"
        assert client.request("GET", "/content-type", content=b"\x00").text == "application/octet-stream 1"
        own = client.request(
            "GET",
            "/content-type",
            headers=[("host", "api.example"), ("content-type", "application/x-ndjson")],
            content="{}",
        )
        assert own.text == "application/x-ndjson 2"
        assert client.get("/content-type").text == "None None"
        with pytest.raises(ValueError, match="not both"):
            client.request("GET", "/content-type", content=b"x", json=1)


# -- the client's life -----------------------------------------------------------


def test_the_lifespan_runs_around_the_client() -> None:
    app, seen = make_app()
    with TestClient(app) as client:
        assert seen.lifespan == ["start-up"]
        assert client.app.state.motd == "welcome"
    assert seen.lifespan == ["start-up", "shutdown"]


def test_a_lifespan_with_a_task_group_starts_and_stops() -> None:
    ticks: list[int] = []

    @asynccontextmanager
    async def lifespan(app: FastrAPI) -> AsyncIterator[None]:
        async def tick() -> None:
            for index in range(1000):  # bounded; cancelled long before
                ticks.append(index)
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            yield
            tasks.cancel_scope.cancel()

    with TestClient(FastrAPI(lifespan=lifespan)):
        pass
    assert ticks[0] == 0


def test_a_failed_start_up_is_raised_on_enter() -> None:
    @asynccontextmanager
    async def lifespan(app: FastrAPI) -> AsyncIterator[None]:
        raise OSError("the database is down")
        yield

    with pytest.raises(LifespanStartupError, match="the database is down"):
        with TestClient(FastrAPI(lifespan=lifespan)):
            pytest.fail("the block ran although the start-up failed")


def test_an_http_handler_that_never_answers_times_out() -> None:
    app, _ = make_app()
    with TestClient(app, timeout=SHORT) as client:
        with pytest.raises(TimeoutError, match=rf"^GET /slow got no response within {SHORT} s$"):
            client.get("/slow")


def test_a_start_up_or_shutdown_that_hangs_times_out_and_a_failed_shutdown_is_raised() -> None:
    @asynccontextmanager
    async def slow_start(app: FastrAPI) -> AsyncIterator[None]:
        await anyio.sleep(3600)
        yield

    @asynccontextmanager
    async def slow_stop(app: FastrAPI) -> AsyncIterator[None]:
        yield
        await anyio.sleep(3600)

    @asynccontextmanager
    async def failed_stop(app: FastrAPI) -> AsyncIterator[None]:
        yield
        raise OSError("could not flush")

    with pytest.raises(TimeoutError, match="lifespan start-up did not finish"):
        with TestClient(FastrAPI(lifespan=slow_start), timeout=SHORT):
            pytest.fail("the block ran before the start-up finished")
    with pytest.raises(TimeoutError, match="lifespan shutdown did not finish"):
        with TestClient(FastrAPI(lifespan=slow_stop), timeout=SHORT):
            pass
    with pytest.raises(OSError, match="could not flush"):
        with TestClient(FastrAPI(lifespan=failed_stop)):
            pass


def test_calls_outside_the_block_say_what_to_do() -> None:
    app, _ = make_app()
    client = TestClient(app)
    with pytest.raises(RuntimeError, match="inside `with TestClient"):
        client.get("/health")


# -- the async client ------------------------------------------------------------


@pytest.mark.anyio
async def test_the_async_client_messages_params_and_subprotocol() -> None:
    app, seen = make_app()
    async with AsyncTestClient(app) as client:
        async with client.websocket_connect("/chat/room1?name=bo", subprotocols=["chat.v1"]) as ws:
            assert ws.accepted_subprotocol == "chat.v1"
            assert ws.extra_headers["x-room"] == "room1"
            assert await ws.receive_json() == {
                "room": "room1",
                "name": "bo",
                "token": None,
                "motd": "welcome",
            }
            await ws.send_text("hi")
            assert await ws.receive_text() == "hi"
            await ws.send_bytes(b"\x02")
            assert await ws.receive_bytes() == b"\x02"
            await ws.close(4200)
        assert (await client.get("/health")).text == "ok"
    assert seen.closes == [(4200, "")]
    assert seen.lifespan == ["start-up", "shutdown"]


@pytest.mark.anyio
async def test_the_async_client_denial_close_and_handler_error() -> None:
    app, _ = make_app()
    async with AsyncTestClient(app) as client:
        with pytest.raises(WebSocketDenied) as denial:
            async with client.websocket_connect("/denied"):
                pass
        assert denial.value.status == 401
        async with client.websocket_connect("/chat/lobby") as ws:
            await ws.receive_json()
            await ws.send_text("quit")
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive()
            assert closed.value.code == 4000
        with pytest.raises(LookupError, match="no such user"):
            async with client.websocket_connect("/broken") as ws:
                await ws.send_text("go")


@pytest.mark.anyio
async def test_the_async_client_http_verbs() -> None:
    app, _ = make_app()
    async with AsyncTestClient(app) as client:
        calls = [
            client.get,
            client.head,
            client.options,
            client.delete,
            client.post,
            client.put,
            client.patch,
        ]
        answers = [await call("/health") for call in calls]
        assert [answer.status_code for answer in answers] == [200, 200, 405, 405, 405, 405, 405]
        assert (answers[0].content, answers[1].content) == (b"ok", b"")
        created = await client.post("/orders/3", json=[1])
        assert created.json() == {"order": 3, "method": "POST", "type": "application/json"}
        assert repr(created) == "<TestResponse 200>"
    with pytest.raises(RuntimeError, match="inside `async with AsyncTestClient"):
        await client.get("/health")


@pytest.mark.anyio
async def test_the_async_client_times_out_and_limits_size() -> None:
    app, _ = make_app(max_message_size=10)
    async with AsyncTestClient(app, timeout=SHORT) as client:
        async with client.websocket_connect("/silent") as ws:
            with pytest.raises(
                TimeoutError, match=rf"receive_bytes\(\) got no message from /silent within {SHORT} s"
            ):
                await ws.receive_bytes()
        async with client.websocket_connect("/chat/lobby") as ws:
            await ws.receive_json()
            await ws.send_bytes(b"x" * 11)
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_bytes()
            assert closed.value.code == 1009


# -- property: any message comes back as it was sent -----------------------------


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.text().filter(lambda text: text != "quit"), st.binary()))  # "quit": the handler's command
def test_any_text_or_bytes_round_trips_through_echo(message: str | bytes) -> None:
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/chat/lobby") as ws:
        ws.receive_json()
        if isinstance(message, str):
            ws.send_text(message)
            assert ws.receive_text() == message
        else:
            ws.send_bytes(message)
            assert ws.receive_bytes() == message

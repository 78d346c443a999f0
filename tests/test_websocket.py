"""The WebSocket API and the session rules, over the in-memory transport."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from fastrapi import (
    BytesMessage,
    ConcurrentReceiveError,
    FastrAPI,
    InvalidJSON,
    MessageTypeError,
    Settings,
    TextMessage,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
    WebSocketState,
    WebSocketStateError,
)
from fastrapi.backends.memory import Accepted, MemoryClient, memory_connection
from fastrapi.core.events import Closed, Ping, Pong
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.transport import Response

pytestmark = pytest.mark.anyio

Handler = Callable[[WebSocket], Awaitable[None]]
GUARD = 5  # seconds: a hang guard, never a timing claim


def app_with(handler: Handler, path: str = "/ws", **settings: Any) -> FastrAPI:
    app = FastrAPI(**settings)
    app.websocket(path)(handler)
    return app


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        message = await ws.receive()
        await ws.send(message)


async def handshake(client: MemoryClient) -> Accepted:
    answer = await client.wait_handshake()
    assert isinstance(answer, Accepted), answer
    return answer


async def refusal(client: MemoryClient) -> Response:
    answer = await client.wait_handshake()
    assert isinstance(answer, Response), answer
    return answer


# -- handshake -----------------------------------------------------------------


async def test_accept_sends_the_chosen_subprotocol_and_headers() -> None:
    seen: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        seen.update(
            state=ws.client_state,
            path=ws.path,
            query=dict(ws.query_params),
            agent=ws.headers["user-agent"],
            client=ws.client,
            offered=ws.subprotocols,
        )
        await ws.accept(subprotocol="graphql-ws", headers={"x-server": "fastrapi"})
        await ws.close()

    app = app_with(handler)
    with anyio.fail_after(GUARD):
        async with memory_connection(
            app, "/ws?room=a%20b&x=1", headers=[("user-agent", "t")], subprotocols=["v1", "graphql-ws"]
        ) as client:
            accepted = await handshake(client)
            assert await client.receive() == Closed(1000, "")
    assert accepted == Accepted("graphql-ws", [("x-server", "fastrapi")])
    assert seen == {
        "state": WebSocketState.CONNECTING,
        "path": "/ws",
        "query": {"room": "a b", "x": "1"},
        "agent": "t",
        "client": ("127.0.0.1", 50000),
        "offered": ["v1", "graphql-ws"],
    }


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"subprotocol": "nope"}, "not offered"),
        ({"headers": {"Sec-WebSocket-Accept": "x"}}, "set by the handshake"),
        ({"headers": [("x-bad", "a\r\nb")]}, "invalid header"),
    ],
)
async def test_accept_refuses_what_the_handshake_cannot_send(kwargs: dict[str, Any], error: str) -> None:
    raised: list[Exception] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.accept(**kwargs)
        except ValueError as exc:
            raised.append(exc)
            await ws.accept()
            await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws", subprotocols=["chat"]) as client:
            await handshake(client)
    assert len(raised) == 1 and error in str(raised[0])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("close", 403),
        ("exception", 403),
        ("crash", 500),
        ("return", 403),
        ("disconnect", 403),
    ],
)
async def test_a_handler_ending_before_accept_refuses_with_http(body: str, status: int) -> None:
    async def handler(ws: WebSocket) -> None:
        if body == "close":
            await ws.close()
        elif body == "exception":
            raise WebSocketException(4003, "no entry")
        elif body == "crash":
            raise KeyError("boom")
        elif body == "disconnect":
            raise WebSocketDisconnect(1000)

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            response = await refusal(client)
    assert response.status == status
    assert client.transport.accepted is None


async def test_crash_before_accept_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: WebSocket) -> None:
        raise KeyError("boom")

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await refusal(client)
    records = [r for r in caplog.records if r.name == "fastrapi.websocket" and r.levelno == logging.ERROR]
    assert records and records[0].exc_info is not None and "KeyError" in repr(records[0].exc_info[1])


async def test_deny_sends_any_http_response() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.deny(401, {"www-authenticate": 'Bearer realm="chat"'}, b"log in first")
        with pytest.raises(WebSocketStateError, match="already closing or closed"):
            await ws.accept()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            response = await refusal(client)
    assert response == Response(401, [("www-authenticate", 'Bearer realm="chat"')], b"log in first")


async def test_deny_checks_its_status() -> None:
    errors: list[Exception] = []

    async def handler(ws: WebSocket) -> None:
        for status in (200, 101, 600):
            try:
                await ws.deny(status)
            except ValueError as error:
                errors.append(error)
        await ws.deny(429, [("retry-after", "5")])

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            assert (await refusal(client)).status == 429
    assert len(errors) == 3 and all("400-599" in str(e) for e in errors)


async def test_no_route_is_404_and_never_101() -> None:
    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(echo), "/elsewhere") as client:
            response = await refusal(client)
    assert response.status == 404


async def test_path_params_are_typed_and_passed_by_name() -> None:
    seen: list[Any] = []
    app = FastrAPI()

    @app.websocket("/rooms/{room}/items/{n:int}")
    async def handler(n: int, socket: WebSocket, room: str) -> None:
        seen.extend([room, n, socket.path_params])
        await socket.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/rooms/caf%C3%A9/items/-7") as client:
            await refusal(client)
    assert seen == ["café", -7, {"room": "café", "n": -7}]


# -- messages ------------------------------------------------------------------


async def test_wrong_message_type_raises_value_error_and_loses_nothing() -> None:
    caught: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_text()
        except ValueError as error:
            assert isinstance(error, MessageTypeError)
            caught.append(error.message)
        try:
            await ws.receive_bytes()
        except MessageTypeError as error:
            caught.append(error.message)
        caught.append(await ws.receive_text())
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            await client.send(BytesMessage(b"\x00\x01"))
            await client.send(TextMessage("text"))
            await client.send(TextMessage("next"))
            assert await client.receive() == Closed(1000, "")
    assert caught == [BytesMessage(b"\x00\x01"), TextMessage("text"), "next"]


async def test_invalid_json_raises_value_error_carrying_the_message() -> None:
    caught: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_json()
        except ValueError as error:
            assert isinstance(error, InvalidJSON)
            caught.append(error.message)
        caught.append(await ws.receive_json())
        caught.append(await ws.receive_json())
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            await client.send(TextMessage("{not json"))
            await client.send(TextMessage('{"a": [1, 2.5, null]}'))
            await client.send(BytesMessage(b'"binary json"'))
            await client.receive()
    assert caught == [TextMessage("{not json"), {"a": [1, 2.5, None]}, "binary json"]


async def test_send_json_modes_and_errors() -> None:
    errors: list[Exception] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json({"k": "é"})
        await ws.send_json([1, 2], mode="binary")
        bad_calls: list[Callable[[], Awaitable[None]]] = [
            lambda: ws.send_json({1}),
            lambda: ws.send_json(1, mode="xml"),  # type: ignore[arg-type]  # the wrong mode on purpose
        ]
        for bad in bad_calls:
            try:
                await bad()
            except (TypeError, ValueError) as error:
                errors.append(error)
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert await client.receive() == TextMessage('{"k":"é"}')
            assert await client.receive() == BytesMessage(b"[1,2]")
            assert await client.receive() == Closed(1000, "")
    assert isinstance(errors[0], TypeError) and "JSON" in str(errors[0])
    assert isinstance(errors[1], ValueError) and "mode" in str(errors[1])


async def test_send_checks_types_with_a_hint() -> None:
    errors: list[str] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        wrong_types: list[Callable[[], Awaitable[None]]] = [
            lambda: ws.send_text(b"x"),  # type: ignore[arg-type]  # the wrong type on purpose
            lambda: ws.send_bytes("x"),  # type: ignore[arg-type]  # the wrong type on purpose
            lambda: ws.send("x"),  # type: ignore[arg-type]  # the wrong type on purpose
        ]
        for call in wrong_types:
            try:
                await call()
            except TypeError as error:
                errors.append(str(error))
        await ws.send_bytes(bytearray(b"ok"))
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert await client.receive() == BytesMessage(b"ok")
    assert "use send_bytes()" in errors[0] and "use send_text()" in errors[1] and "TextMessage" in errors[2]


async def test_fragments_are_joined() -> None:
    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(echo), "/ws") as client:
            await handshake(client)
            await client.send(TextMessage("ab", final=False))
            await client.send(TextMessage("", final=False))
            await client.send(TextMessage("c😀"))
            await client.send(BytesMessage(b"\x00", final=False))
            await client.send(BytesMessage(b"\x01"))
            assert await client.receive() == TextMessage("abc😀")
            assert await client.receive() == BytesMessage(b"\x00\x01")
            await client.close()


async def test_send_fragments_sends_each_fragment_as_it_comes() -> None:
    produced = []

    async def parts() -> AsyncIterator[str]:
        for part in ("stream", "ed ", "😀"):
            produced.append(part)
            yield part

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_fragments(parts())
        bytes_like: list[bytes | bytearray] = [b"\x00", bytearray(b"\x01")]
        await ws.send_fragments(bytes_like)  # a sync iterable, bytes-like
        await ws.send_fragments([])  # nothing at all
        await ws.send_text("whole")
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert await client.receive() == TextMessage("stream", final=False)
            assert await client.receive() == TextMessage("ed ", final=False)
            assert await client.receive() == TextMessage("😀", final=False)
            assert await client.receive() == TextMessage("", final=True)  # the end of the message
            assert await client.receive() == BytesMessage(b"\x00", final=False)
            assert await client.receive() == BytesMessage(b"\x01", final=False)
            assert await client.receive() == BytesMessage(b"", final=True)
            assert await client.receive() == TextMessage("whole")
            assert await client.receive() == Closed(1000)


async def test_other_messages_wait_for_a_fragmented_one_but_pongs_do_not() -> None:
    release = anyio.Event()

    async def parts() -> AsyncIterator[str]:
        yield "first "
        await release.wait()
        yield "second"

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.send_fragments, parts())
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ws.send_text, "after")
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert await client.receive() == TextMessage("first ", final=False)
            await client.send(Ping(b"between"))
            assert await client.receive() == Pong(b"between")  # a control frame between fragments
            release.set()
            assert await client.receive() == TextMessage("second", final=False)
            assert await client.receive() == TextMessage("", final=True)
            assert await client.receive() == TextMessage("after")


async def test_a_fragmented_send_that_raises_midway_closes_with_1011() -> None:
    caught: list[BaseException] = []

    async def parts() -> AsyncIterator[bytes]:
        yield b"half a message"
        raise OSError("the file went away")

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.send_fragments(parts())
        except OSError as error:
            caught.append(error)
        with pytest.raises(WebSocketDisconnect) as ended:  # the message can never be finished
            await ws.send_text("more")
        caught.append(ended.value)

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert await client.receive() == BytesMessage(b"half a message", final=False)
            assert await client.receive() == Closed(1011, "a fragmented message was abandoned")
            await client.close(1011)
    assert isinstance(caught[0], OSError)
    assert isinstance(caught[1], WebSocketDisconnect) and caught[1].code == 1011


async def test_send_fragments_checks_what_it_is_given() -> None:
    errors: list[str] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        for fragments in ("a whole str", b"whole bytes", [1, 2]):
            try:
                await ws.send_fragments(fragments)  # type: ignore[arg-type]
            except TypeError as error:
                errors.append(str(error))
        try:
            await ws.send_fragments(["text", b"then bytes"])  # type: ignore[arg-type]  # mixed on purpose
        except TypeError as error:
            errors.append(str(error))

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert await client.receive() == TextMessage("text", final=False)
            assert await client.receive() == Closed(1011, "a fragmented message was abandoned")
            await client.close(1011)
    assert "use send_text() or send_bytes()" in errors[0] and "single bytes" in errors[1]
    assert "not int" in errors[2] and "all str or all bytes" in errors[3]


@pytest.mark.parametrize("fragmented", [False, True])
async def test_a_message_over_max_message_size_closes_with_1009(fragmented: bool) -> None:
    received: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        received.append(await ws.receive_text())
        try:
            await ws.receive_text()
        except WebSocketDisconnect as end:
            received.append(end.code)

    app = app_with(handler, max_message_size=10)
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/ws") as client:
            await handshake(client)
            await client.send(TextMessage("é" * 5))  # exactly 10 bytes in UTF-8: allowed
            if fragmented:
                await client.send(TextMessage("x" * 6, final=False))
                await client.send(TextMessage("x" * 5, final=False))
            else:
                await client.send(TextMessage("x" * 11))
            closed = await client.receive()
    assert isinstance(closed, Closed) and closed.code == 1009
    assert received == ["é" * 5, 1009]


async def test_iterators_end_on_normal_close_and_raise_on_others() -> None:
    results: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            async for text in ws.iter_text():
                results.append(text)
            results.append("ended")
        except WebSocketDisconnect as end:
            results.append(end.code)

    for code, last in ((1000, "ended"), (1001, "ended"), (4002, 4002)):
        results.clear()
        with anyio.fail_after(GUARD):
            async with memory_connection(app_with(handler), "/ws") as client:
                await handshake(client)
                await client.send(TextMessage("a"))
                await client.send(TextMessage("b"))
                await client.close(code)
        assert results == ["a", "b", last]


async def test_iter_bytes_and_iter_json() -> None:
    results: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        results.extend([item async for item in ws.iter_bytes()])
        results.append("|")

    async def json_handler(ws: WebSocket) -> None:
        await ws.accept()
        results.extend([item async for item in ws.iter_json()])

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            await client.send(BytesMessage(b"1"))
            await client.close()
        async with memory_connection(app_with(json_handler), "/ws") as client:
            await handshake(client)
            await client.send(TextMessage("[1]"))
            await client.close(1001)
    assert results == [b"1", "|", [1]]


# -- closing -------------------------------------------------------------------


async def test_client_close_code_reaches_the_handler() -> None:
    ends: list[WebSocketDisconnect] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_text()
        except ConnectionError as end:  # the seed catches ConnectionError
            assert isinstance(end, WebSocketDisconnect)
            ends.append(end)
        with pytest.raises(WebSocketDisconnect):
            await ws.send_text("too late")
        with pytest.raises(WebSocketDisconnect):
            await ws.receive()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            await client.close(4002, "client bye")
            assert await client.receive() == Closed(4002, "client bye")  # echoed (RFC 6455 5.5.1)
    assert [(e.code, e.reason) for e in ends] == [(4002, "client bye")]


async def test_messages_sent_before_a_close_are_still_delivered() -> None:
    got: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await gate.wait()
        try:
            while True:
                got.append(await ws.receive_text())
        except WebSocketDisconnect as end:
            got.append(end.code)

    gate = anyio.Event()
    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            for text in ("1", "2", "3"):
                await client.send(TextMessage(text))
            await client.close(1000)
            await client.receive()
            gate.set()
    assert got == ["1", "2", "3", 1000]


async def test_close_sends_code_and_reason_and_walks_the_states() -> None:
    states: list[WebSocketState] = []
    sockets: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        sockets.append(ws)
        states.append(ws.client_state)
        await ws.accept()
        states.append(ws.client_state)
        await ws.close(4001, "bye")  # returns once the client answered
        states.append(ws.client_state)
        await ws.close(4001, "bye")  # idempotent

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws", echo_close=False) as client:
            await handshake(client)
            assert await client.receive() == Closed(4001, "bye")
            states.append(sockets[0].client_state)  # Close sent, answer pending
            await client.close(4001, "bye")
    assert states == [0, 1, 2, 3]
    assert client.transport.sent_close == Closed(4001, "bye")


@pytest.mark.parametrize(
    ("code", "reason"), [(1005, ""), (1006, ""), (999, ""), (5000, ""), (2999, ""), (1000, "é" * 62)]
)
async def test_invalid_close_raises_before_anything_is_sent(code: int, reason: str) -> None:
    errors: list[Exception] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.close(code, reason)
        except ValueError as error:
            errors.append(error)
            assert ws.client_state is WebSocketState.CONNECTED
            assert client.transport.sent_close is None
        await ws.close(4000)

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert await client.receive() == Closed(4000, "")
    assert len(errors) == 1


async def test_close_timeout_drops_a_peer_that_never_answers() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.close(1000)
        assert ws.client_state is WebSocketState.DISCONNECTED

    app = app_with(handler, close_timeout=0.05)
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/ws", echo_close=False) as client:
            await handshake(client)
            assert await client.receive() == Closed(1000, "")
            assert await client.receive() == Closed(1006)  # the stream ends: dropped
    assert client.transport.aborted


@pytest.mark.parametrize(
    ("raise_", "expected"),
    [
        (WebSocketException(4004, "not here"), Closed(4004, "not here")),
        (RuntimeError("bug"), Closed(1011, "")),
        (WebSocketException(1005), Closed(1011, "")),
        (None, Closed(1000, "")),
    ],
)
async def test_how_a_handler_ends_after_accept(raise_: Exception | None, expected: Closed) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        if raise_ is not None:
            raise raise_

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert await client.receive() == expected


async def test_disconnect_ending_a_handler_is_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()  # raises WebSocketDisconnect, uncaught

    caplog.set_level(logging.DEBUG, logger="fastrapi")
    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            await client.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("ended by disconnect" in r.getMessage() for r in caplog.records)


async def test_send_after_the_peer_vanished_raises_disconnect() -> None:
    ends: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive_text()
        ends.append(info.value.code)
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.send_text("anyone?")
        ends.append(info.value.code)
        assert ws.client_state is WebSocketState.DISCONNECTED

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            client.drop()
    assert ends == [1006, 1006]


# -- misuse --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ws: ws.receive_text(), "call accept() before receive_text()"),
        (lambda ws: ws.receive_bytes(), "call accept() before receive_bytes()"),
        (lambda ws: ws.receive_json(), "call accept() before receive_json()"),
        (lambda ws: ws.receive(), "call accept() before receive()"),
        (lambda ws: ws.send_text("x"), "call accept() before send_text()"),
        (lambda ws: ws.send_bytes(b"x"), "call accept() before send_bytes()"),
        (lambda ws: ws.send_json(1), "call accept() before send_json()"),
        (lambda ws: ws.ping(), "call accept() before ping()"),
    ],
)
async def test_calls_before_accept_say_what_to_do(
    call: Callable[[WebSocket], Awaitable[Any]], message: str
) -> None:
    errors: list[str] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await call(ws)
        except RuntimeError as error:
            assert isinstance(error, WebSocketStateError)
            errors.append(str(error))
        await ws.accept()
        with pytest.raises(WebSocketStateError, match="already called"):
            await ws.accept()
        with pytest.raises(WebSocketStateError, match="call close"):
            await ws.deny(403)
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
    assert errors == [message]


async def test_a_second_concurrent_receiver_is_an_error() -> None:
    outcome: list[Any] = []
    refused = anyio.Event()
    received = anyio.Event()

    async def first_receiver(ws: WebSocket) -> None:
        outcome.append(await ws.receive_text())
        received.set()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_receiver, ws)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(ConcurrentReceiveError, match="another task"):
                await ws.receive_text()
            outcome.append("refused")
            refused.set()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            await refused.wait()
            await client.send(TextMessage("first"))
            await received.wait()
    assert outcome == ["refused", "first"]


# -- control frames, backpressure, concurrency ------------------------------------


async def test_pings_are_answered_and_ping_waits_for_its_pong() -> None:
    pinged = anyio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.ping(b"hello")
        pinged.set()
        with pytest.raises(ValueError, match="125 bytes"):
            await ws.ping(b"x" * 126)
        await ws.receive_text()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert await client.receive() == Ping(b"hello")
            await client.send(Ping(b"are you there"))
            assert await client.receive() == Pong(b"are you there")
            assert not pinged.is_set()
            await client.send(Pong(b"unsolicited"))
            await client.send(Pong(b"hello"))
            await pinged.wait()
            await client.close()


async def test_ping_raises_disconnect_when_the_peer_leaves_first() -> None:
    ends: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.ping()
        except WebSocketDisconnect as end:
            ends.append(end.code)

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            assert isinstance(await client.receive(), Ping)
            await client.close(1001)
    assert ends == [1001]


async def test_a_slow_handler_stops_reading_at_max_queue() -> None:
    sockets: list[WebSocket] = []
    release = anyio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        sockets.append(ws)
        await release.wait()
        for index in range(40):
            assert await ws.receive_text() == str(index)

    app = app_with(handler, max_queue=4)
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/ws", buffer=2) as client:
            await handshake(client)
            sent = 0
            # The client keeps sending until the server stops taking messages.
            with anyio.move_on_after(0.2):
                for index in range(40):
                    await client.send(TextMessage(str(index)))
                    sent += 1
            channel = sockets[0]._channel
            # max_queue in the handler's inbox, then reading paused: 2 more
            # wait in the transport's buffer, and the next send waits, as a
            # client's does on a full TCP window.
            assert channel.queued == 4
            assert sent == 4 + 2
            release.set()
            for index in range(sent, 40):
                await client.send(TextMessage(str(index)))
            await client.close()


async def test_concurrent_senders_take_turns() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()

        async def sender(name: int) -> None:
            for index in range(20):
                await ws.send_json({"from": name, "n": index})

        async with anyio.create_task_group() as tg:
            for name in range(10):
                tg.start_soon(sender, name)
        await ws.close()

    seen: dict[int, list[int]] = {}
    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws", buffer=1000) as client:
            await handshake(client)
            while True:
                event = await client.receive()
                if isinstance(event, Closed):
                    break
                assert isinstance(event, TextMessage)
                import json

                item = json.loads(event.data)
                seen.setdefault(item["from"], []).append(item["n"])
    assert seen == {name: list(range(20)) for name in range(10)}


async def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        Settings(max_queue=0)
    with pytest.raises(ValueError, match="close_timeout"):
        Settings(close_timeout=-1)
    assert FastrAPI(max_message_size=5).settings.max_message_size == 5


async def test_a_receive_timeout_leaves_the_connection_usable() -> None:
    outcome: list[Any] = []
    timed_out = anyio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        for receive in (ws.receive, ws.receive_text, ws.receive_bytes, ws.receive_json):
            with pytest.raises(TimeoutError):
                await receive(timeout=0.01)
        timed_out.set()
        outcome.append(await ws.receive_text(timeout=GUARD))
        outcome.append(ws.client_state)
        await ws.close()

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws") as client:
            await handshake(client)
            await timed_out.wait()
            await client.send(TextMessage("still here"))
            assert await client.receive() == Closed(1000, "")
    assert outcome == ["still here", WebSocketState.CONNECTED]


KEEPALIVE: dict[str, Any] = {"ping_interval": 0.02, "ping_timeout": 0.05}


async def test_keepalive_closes_a_peer_that_stops_answering_with_1011() -> None:
    ends: list[WebSocketDisconnect] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_text()
        except WebSocketDisconnect as end:
            ends.append(end)

    app = app_with(handler, close_timeout=0.05, **KEEPALIVE)
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/ws", echo_close=False) as client:
            await handshake(client)
            assert isinstance(await client.receive(), Ping)  # and never answered
            assert await client.receive() == Closed(1011, "keepalive ping timeout")
    assert [(end.code, end.reason) for end in ends] == [(1011, "keepalive ping timeout")]


async def test_keepalive_leaves_a_peer_that_answers_alone() -> None:
    got: list[str] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        got.append(await ws.receive_text())
        await ws.close()

    # A generous timeout: only a pong that never comes may close this one.
    app = app_with(handler, ping_interval=0.02, ping_timeout=2.0)
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/ws") as client:
            await handshake(client)
            for _ in range(5):  # five rounds of ping and pong
                ping = await client.receive()
                assert isinstance(ping, Ping)
                await client.send(Pong(ping.data))
            await client.send(TextMessage("alive"))
            while isinstance(event := await client.receive(), Ping):
                await client.send(Pong(event.data))
            assert event == Closed(1000, "")
    assert got == ["alive"]


async def test_keepalive_spares_a_peer_whose_messages_wait_for_a_slow_handler() -> None:
    release = anyio.Event()
    count: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await release.wait()
        count.append(len([text async for text in ws.iter_text()]))

    app = app_with(handler, max_queue=2, ping_interval=0.1, ping_timeout=0.1)
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/ws", buffer=64) as client:
            await handshake(client)
            for index in range(10):  # fills the queue at once; the pump stops reading
                await client.send(TextMessage(str(index)))
            await anyio.sleep(0.6)  # several keepalive periods pass unanswered
            assert client.transport.sent_close is None
            release.set()
            await client.close()
            while isinstance(event := await client.receive(), Ping):
                await client.send(Pong(event.data))
            assert event == Closed(1000, "")
    assert count == [10]


async def test_a_protocol_error_fails_the_connection_after_earlier_messages_are_answered() -> None:
    from fastrapi.core.events import ProtocolError

    ends: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text("echo: " + await ws.receive_text())
        except WebSocketDisconnect as end:
            ends.append(end.code)

    with anyio.fail_after(GUARD):
        async with memory_connection(app_with(handler), "/ws", echo_close=False) as client:
            await handshake(client)
            await client.send(TextMessage("one"))
            await client.send(TextMessage("two"))
            await client.send(ProtocolError(1002, "reserved bits set"))
            assert await client.receive() == TextMessage("echo: one")
            assert await client.receive() == TextMessage("echo: two")
            assert await client.receive() == Closed(1002, "reserved bits set")
            assert await client.receive() == Closed(1006)  # TCP dropped, no wait for an answer
    assert ends == [1002]


async def test_a_protocol_error_waits_at_most_close_timeout_for_a_handler_that_reads_nothing() -> None:
    from fastrapi.core.events import ProtocolError

    done = anyio.Event()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await done.wait()  # reads nothing

    app = app_with(handler, close_timeout=0.05)
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/ws", echo_close=False) as client:
            await handshake(client)
            await client.send(TextMessage("unread"))
            await client.send(ProtocolError(1007, "invalid UTF-8"))
            assert await client.receive() == Closed(1007, "invalid UTF-8")
            assert await client.receive() == Closed(1006)  # dropped
            assert client.transport.aborted
            done.set()


async def test_a_handshake_left_unanswered_past_open_timeout_is_dropped() -> None:
    outcome: list[int] = []
    late = anyio.Event()

    async def handler(ws: WebSocket) -> None:
        await late.wait()
        try:
            await ws.accept()
        except WebSocketDisconnect as end:
            outcome.append(end.code)

    app = app_with(handler, open_timeout=0.05)
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/ws") as client:
            with pytest.raises(TransportClosed):
                await client.wait_handshake()  # dropped without an answer
            assert client.transport.aborted
            late.set()
    assert outcome == [1006]


async def test_idle_timeout_closes_a_quiet_connection_with_1001() -> None:
    ends: list[tuple[int, str]] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except WebSocketDisconnect as end:
            ends.append((end.code, end.reason))

    app = app_with(handler, idle_timeout=0.4, ping_interval=None)
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/ws") as client:
            await handshake(client)
            for index in range(12):  # 0.6 s of traffic, longer than the timeout: activity keeps it open
                await client.send(TextMessage(str(index)))
                assert await client.receive() == TextMessage(str(index))
                await anyio.sleep(0.05)
            assert await client.receive() == Closed(1001, "idle timeout")
    assert ends == [(1001, "idle timeout")]


async def test_each_handshake_gets_an_access_line_when_answered_and_each_session_a_closing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    accepted = anyio.Event()

    async def handler(ws: WebSocket, room: str) -> None:
        if room == "private":
            await ws.deny(401)
            return
        await ws.accept()
        accepted.set()
        await ws.receive_text()
        await ws.close(4000)

    app = FastrAPI()
    app.websocket("/room/{room}")(handler)
    caplog.set_level(logging.INFO, logger="fastrapi")
    with anyio.fail_after(GUARD):
        async with memory_connection(app, "/room/private?x=1") as client:
            await refusal(client)
        async with memory_connection(app, "/room/lobby") as client:
            await handshake(client)
            await accepted.wait()
            # Logged when the 101 went out, not when the session ends.
            access = [r.getMessage() for r in caplog.records if r.name == "fastrapi.access"]
            assert access[0].startswith('127.0.0.1:50000 - "WebSocket /room/private?x=1" 401 ')
            assert access[1].startswith('127.0.0.1:50000 - "WebSocket /room/lobby" 101 ')
            assert access[1].endswith("ms")
            await client.send(TextMessage("bye"))
            assert await client.receive() == Closed(4000)
            await client.close(4000)
    closing = [r.getMessage() for r in caplog.records if r.name == "fastrapi.access"]
    expected = '127.0.0.1:50000 - "WebSocket /room/lobby" closed 4000 after '
    assert any(line.startswith(expected) for line in closing), closing
    # Refused: never open, so never closed.
    assert not any("private" in line and "closed" in line for line in closing)

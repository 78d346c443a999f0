"""The test client is held to what the backends do: the core-level behaviours of
`test_wire.py`, `test_typed_messages.py`, `test_http_routes.py` and
`test_http_bodies.py`, on their apps, through `fastrapi.testing`.

The backends are tested over real sockets; here the same apps run in-process
over the memory transport, and a test written with `TestClient` must see what
a client on the wire sees. What only a wire shows (frame bytes, TCP resets,
head parsing, signals) stays in the socket suites. Each test is named after
its counterpart.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.test_http_bodies import LIMIT, body_app
from conformance.test_http_routes import routes_app
from conformance.test_typed_messages import typed_echo
from conformance.test_wire import PAYLOADS, Record, make_app, message_strategy
from fastrapi import WebSocketDisconnect
from fastrapi.testing import AsyncTestClient, TestClient, WebSocketDenied


def client_for(record: Record, **settings_: Any) -> TestClient:
    # As a client on the wire sees it: a handler's crash is the 500 or the
    # 1011 it causes, not an exception in the test.
    return TestClient(make_app(record, **settings_), raise_server_exceptions=False)


def denied_status(client: TestClient, path: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(WebSocketDenied) as refused:
        with client.websocket_connect(path, headers=headers):
            pass
    return refused.value.status


# -- plain HTTP ------------------------------------------------------------------


def test_http_to_a_websocket_route_is_426_and_elsewhere_404() -> None:
    with client_for(Record()) as client:
        upgrade = client.get("/echo")
        assert upgrade.status_code == 426
        assert upgrade.headers["upgrade"] == "websocket"
        assert "WebSocket" in upgrade.text
        assert client.get("/nowhere").status_code == 404


@pytest.mark.parametrize("method", ["POST", "HEAD"])
def test_other_methods_get_http_answers_too(method: str) -> None:
    with client_for(Record()) as client:
        answer = client.request(method, "/echo", content=b"")
        assert answer.status_code == 426
        assert (answer.content == b"") == (method == "HEAD")
        assert client.request(method, "/nowhere").status_code == 404


def test_a_method_route_answers_json_and_another_method_405() -> None:
    with TestClient(routes_app()) as client:
        deleted = client.delete("/things/lamp")
        wrong = client.put("/things/lamp", content=b"")
    assert deleted.status_code == 200
    assert deleted.content == b'{"method":"DELETE","name":"lamp"}'
    assert deleted.headers["content-type"] == "application/json"
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "DELETE, GET, HEAD"


@pytest.mark.parametrize("size", [11, LIMIT], ids=["small", "at-the-limit"])
def test_a_body_reaches_the_handler_whole(size: int) -> None:
    handled: list[bytes] = []
    body = bytes(ord("a") + index % 26 for index in range(size))
    with TestClient(body_app(handled)) as client:
        echoed = client.post("/echo", content=body)
    assert (echoed.status_code, echoed.content) == (200, body)
    assert handled == [body]


def test_a_json_body_is_parsed_by_request_json() -> None:
    with TestClient(body_app([])) as client:
        assert client.put("/json", json={"n": [1, 2]}).content == b'{"got":{"n":[1,2]}}'


def test_a_body_over_max_body_size_gets_413() -> None:
    handled: list[bytes] = []
    with TestClient(body_app(handled)) as client:
        assert client.post("/echo", content=b"x" * (LIMIT + 1)).status_code == 413
        assert client.post("/echo", headers={"content-length": str(LIMIT + 1)}).status_code == 413
    assert handled == []


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"sec-websocket-key": "c2hvcnQ="}, 400),  # decodes to 5 bytes, not 16
        ({"sec-websocket-version": "8"}, 426),
        ({"connection": "keep-alive"}, 400),
    ],
)
def test_a_broken_handshake_is_refused(change: dict[str, str], status: int) -> None:
    with client_for(Record()) as client:
        assert denied_status(client, "/echo", change) == status


# -- handshake -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [("/nowhere", 404), ("/refuse/close", 403), ("/refuse/exception", 403), ("/refuse/crash", 500)],
)
def test_refusals_are_http_statuses_never_101(path: str, status: int) -> None:
    with client_for(Record()) as client:
        assert denied_status(client, path) == status


def test_deny_sends_status_headers_and_body() -> None:
    with client_for(Record()) as client:
        with pytest.raises(WebSocketDenied) as refused:
            with client.websocket_connect("/refuse/deny"):
                pass
    assert refused.value.status == 401
    assert refused.value.headers["www-authenticate"] == "Basic"
    assert refused.value.body == b"who are you?"


def test_allowed_origins_refuse_other_sites_with_403() -> None:
    with client_for(Record(), allowed_origins=["https://chat.example"]) as client:
        with client.websocket_connect("/echo", headers={"origin": "https://chat.example"}) as ws:
            ws.send_text("same site")
            assert ws.receive_text() == "same site"
        assert denied_status(client, "/echo", {"origin": "https://evil.example"}) == 403
        assert denied_status(client, "/echo") == 403


def test_request_details_subprotocol_and_headers() -> None:
    with client_for(Record()) as client:
        with client.websocket_connect(
            "/items/42?room=a%20b&x=1", subprotocols=["v1.chat", "v2.chat"], headers={"X-Token": "secret"}
        ) as ws:
            assert ws.accepted_subprotocol == "v2.chat"
            assert ws.extra_headers["x-item"] == "42"
            seen = ws.receive_json()
    assert seen == {
        "item": 42,
        "query": {"room": "a b", "x": "1"},
        "header": "secret",
        "client_host": "127.0.0.1",
        "offered": ["v1.chat", "v2.chat"],
    }


def test_a_path_param_of_the_wrong_type_does_not_match() -> None:
    with client_for(Record()) as client:
        assert denied_status(client, "/items/forty-two") == 404


# -- messages --------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"{type(p).__name__}-{len(p)}")
def test_messages_round_trip(payload: str | bytes) -> None:
    with client_for(Record()) as client, client.websocket_connect("/echo") as ws:
        if isinstance(payload, str):
            ws.send_text(payload)
            assert ws.receive_text() == payload
        else:
            ws.send_bytes(payload)
            assert ws.receive_bytes() == payload


def test_a_message_over_max_message_size_closes_with_1009() -> None:
    with client_for(Record(), max_message_size=1000) as client, client.websocket_connect("/echo") as ws:
        ws.send_text("z" * 1000)
        assert ws.receive_text() == "z" * 1000
        ws.send_text("z" * 1001)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1009


def test_a_fragmented_send_arrives_as_one_message() -> None:
    with client_for(Record()) as client, client.websocket_connect("/fragments/ok") as ws:
        assert ws.receive_text() == "fragmented 😀"
        assert ws.receive_text() == "then a whole message " * 20


def test_a_fragmented_send_that_raises_midway_closes_with_1011() -> None:
    with client_for(Record()) as client, client.websocket_connect("/fragments/raise") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (1011, "a fragmented message was abandoned")


def test_a_model_is_echoed_and_an_invalid_one_answered_on_the_same_connection() -> None:
    valid = {"room": "lobby", "text": "hi", "author": {"name": "ann", "id": 7}}
    with TestClient(typed_echo()) as client, client.websocket_connect("/chat") as ws:
        ws.send_json(valid)
        assert ws.receive_json() == {"echo": valid}
        ws.send_text('{"room": "lobby", "author": {"name": "ann", "id": "x"}}')
        answer = ws.receive_json()
        assert [(error["type"], error["loc"]) for error in answer["error"]] == [
            ("missing", ["text"]),
            ("int_parsing", ["author", "id"]),
        ]
        ws.send_text("{not json")
        assert ws.receive_json() == {"error": "not JSON", "raw": "{not json"}
        ws.send_bytes(json.dumps(valid).encode())
        assert ws.receive_json() == {"echo": valid}


# -- closing ---------------------------------------------------------------------


def test_server_close_code_and_reason_reach_the_client() -> None:
    with client_for(Record()) as client, client.websocket_connect("/after/close") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (4001, "bye")


def test_client_close_code_reaches_the_handler() -> None:
    record = Record()
    with client_for(record) as client:
        with client.websocket_connect("/observe") as ws:
            ws.close(4002, "client bye")
            assert (ws.close_code, ws.close_reason) == (4002, "client bye")  # echoed (RFC 6455 5.5.1)
        assert record.done.is_set()  # the block waited for the handler
    assert record.ends == [("receive", 4002), ("send", 4002)]
    assert record.states == [0, 1, 3]


@pytest.mark.parametrize(("code", "answer"), [(1000, 1000), (4002, 4002), (999, 1002), (1006, 1002)])
def test_client_close_codes_are_answered_or_refused(code: int, answer: int) -> None:
    with client_for(Record()) as client, client.websocket_connect("/echo") as ws:
        ws.close(code)
        assert ws.close_code == answer


@pytest.mark.parametrize(("how", "code"), [("crash", 1011), ("exception", 4003)])
def test_handler_errors_after_accept_close_the_connection(how: str, code: int) -> None:
    with client_for(Record()) as client, client.websocket_connect(f"/after/{how}") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == code


# -- control frames and timers ---------------------------------------------------


def test_server_ping_resolves_when_the_pong_arrives() -> None:
    with client_for(Record()) as client, client.websocket_connect("/ping") as ws:
        assert ws.receive_text() == "pong received"


@pytest.mark.anyio
async def test_keepalive_spares_a_peer_that_answers_pings() -> None:
    app = make_app(Record(), ping_interval=0.05, ping_timeout=0.1)
    async with AsyncTestClient(app) as client, client.websocket_connect("/echo") as ws:
        await anyio.sleep(0.5)  # many pings later: each was answered, or this closed with 1011
        await ws.send_text("still alive")
        assert await ws.receive_text() == "still alive"


def test_idle_timeout_closes_a_quiet_connection() -> None:
    with client_for(Record(), idle_timeout=0.3) as client, client.websocket_connect("/echo") as ws:
        ws.send_text("one")
        assert ws.receive_text() == "one"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (1001, "idle timeout")


# -- concurrency -------------------------------------------------------------------


def test_concurrent_senders_never_interleave_frames() -> None:
    tasks, count = 12, 25
    seen: dict[int, list[int]] = {}
    with client_for(Record()) as client, client.websocket_connect(f"/fanout/{tasks}/{count}") as ws:
        for _ in range(tasks * count):
            item = ws.receive_json()
            size = (item["from"] * 7919 + item["n"] * 104729) % 20000
            assert item["fill"] == chr(65 + item["from"] % 26) * size
            seen.setdefault(item["from"], []).append(item["n"])
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1000
    assert seen == {name: list(range(count)) for name in range(tasks)}


# -- property: anything the client sends comes back intact, in order --------------

# The test client sends whole messages; fragments from a client are a wire matter.
whole_messages = message_strategy.filter(lambda message: not isinstance(message, list))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(whole_messages, min_size=1, max_size=6))
def test_random_message_sequences_round_trip(messages: list[str | bytes]) -> None:
    with client_for(Record()) as client, client.websocket_connect("/echo") as ws:
        for message in messages:
            if isinstance(message, str):
                ws.send_text(message)
            else:
                ws.send_bytes(message)
        for message in messages:
            assert (ws.receive_text() if isinstance(message, str) else ws.receive_bytes()) == message

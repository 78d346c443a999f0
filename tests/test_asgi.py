"""The ASGI adapter in-process: what it sends a server for deny() and for
request bodies, recorded by a fake ``send``. Real servers: conformance/test_asgi.py."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import anyio
import pytest

from fastrapi import FastrAPI, Request, WebSocket

pytestmark = pytest.mark.anyio

GUARD = 5
HANDSHAKE = [
    (b"host", b"x"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
]
Message = MutableMapping[str, Any]


def make_app() -> FastrAPI:
    app = FastrAPI(max_body_size=16)

    @app.websocket("/login")
    async def login(ws: WebSocket) -> None:
        await ws.deny(401, {"www-authenticate": "Bearer"}, b"who are you?")

    @app.post("/echo")
    async def echo(request: Request) -> bytes:
        return request.body

    return app


async def call(app: FastrAPI, scope: dict[str, Any], incoming: list[Message]) -> tuple[list[Message], int]:
    """Run one ASGI call; returns what the app sent and how many messages it took."""
    sent: list[Message] = []
    taken = 0

    async def receive() -> Message:
        nonlocal taken
        if taken == len(incoming):
            await anyio.sleep_forever()  # a server waits for the client too
        taken += 1
        return incoming[taken - 1]

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(GUARD):
        await app(scope, receive, send)
    return sent, taken


def websocket_scope(extensions: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": "/login",
        "raw_path": b"/login",
        "query_string": b"",
        "headers": HANDSHAKE,
        "client": ("127.0.0.1", 50000),
        "scheme": "ws",
        "subprotocols": [],
        "extensions": extensions,
    }


async def test_deny_uses_the_http_response_extension_when_the_server_offers_it() -> None:
    sent, _ = await call(
        make_app(), websocket_scope({"websocket.http.response": {}}), [{"type": "websocket.connect"}]
    )
    assert [message["type"] for message in sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert sent[0]["status"] == 401
    assert (b"www-authenticate", b"Bearer") in sent[0]["headers"]
    assert sent[1]["body"] == b"who are you?"


async def test_deny_closes_before_accept_where_the_extension_is_missing() -> None:
    sent, _ = await call(make_app(), websocket_scope({}), [{"type": "websocket.connect"}])
    assert [message["type"] for message in sent] == ["websocket.close"]  # the server answers 403


def http_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "headers": [(b"host", b"x"), *headers],
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
    }


async def test_a_body_in_pieces_reaches_the_handler() -> None:
    pieces: list[Message] = [
        {"type": "http.request", "body": b"in ", "more_body": True},
        {"type": "http.request", "body": b"pieces", "more_body": False},
    ]
    sent, _ = await call(make_app(), http_scope([(b"content-length", b"9")]), pieces)
    assert sent[0]["status"] == 200
    assert (b"content-length", b"9") in sent[0]["headers"]
    assert sent[1]["body"] == b"in pieces"


async def test_a_body_over_max_body_size_gets_413_announced_unread_or_as_it_grows() -> None:
    announced, taken = await call(make_app(), http_scope([(b"content-length", b"17")]), [])
    assert announced[0]["status"] == 413
    assert taken == 0  # not one message of the body was read
    growing: list[Message] = [
        {"type": "http.request", "body": b"x" * 10, "more_body": True},
        {"type": "http.request", "body": b"x" * 10, "more_body": True},
        {"type": "http.request", "body": b"never read", "more_body": False},
    ]
    sent, taken = await call(make_app(), http_scope([]), growing)
    assert sent[0]["status"] == 413
    assert taken == 2  # refused as soon as it grew past the limit

"""Plain HTTP request bodies on every backend, over a real socket: read whole
before the handler runs, bounded by ``max_body_size`` (413 beyond it)."""

from __future__ import annotations

import anyio
import pytest

from conformance.conftest import http_exchange, serving
from fastrapi import FastrAPI, Request

pytestmark = pytest.mark.anyio

GUARD = 10
LIMIT = 64


def body_app(handled: list[bytes], open_timeout: float = 10.0) -> FastrAPI:
    app = FastrAPI(max_body_size=LIMIT, open_timeout=open_timeout)

    @app.post("/echo")
    async def echo(request: Request) -> bytes:
        handled.append(request.body)
        return request.body

    @app.put("/json")
    async def parse(request: Request) -> dict[str, object]:
        handled.append(request.body)
        return {"got": request.json()}

    return app


def post(path: str, framing: str, body: bytes) -> str:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n"
    if framing == "chunked":
        half = len(body) // 2
        chunks = b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:half], body[half:])
        )
        return head + "Transfer-Encoding: chunked\r\n\r\n" + (chunks + b"0\r\n\r\n").decode()
    return head + f"Content-Length: {len(body)}\r\n\r\n" + body.decode()


async def exchange(app: FastrAPI, backend: str, request: str) -> bytes:
    with anyio.fail_after(GUARD):
        async with serving(app, backend) as url:
            return await http_exchange(int(url.rpartition(":")[2]), request)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("size", [11, LIMIT], ids=["small", "at-the-limit"])
async def test_a_body_reaches_the_handler_whole(backend: str, framing: str, size: int) -> None:
    handled: list[bytes] = []
    body = bytes(ord("a") + index % 26 for index in range(size))
    reply = await exchange(body_app(handled), backend, post("/echo", framing, body))
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert reply.endswith(b"\r\n\r\n" + body)
    assert handled == [body]


async def test_a_json_body_is_parsed_by_request_json(backend: str) -> None:
    handled: list[bytes] = []
    request = 'PUT /json HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{"n": [1, 2]}'
    reply = await exchange(body_app(handled), backend, request)
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert reply.endswith(b'{"got":{"n":[1,2]}}')


@pytest.mark.parametrize(
    "request_text",
    [
        # Announced too big, and none of it sent: the answer must not wait for it.
        f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMIT + 1}\r\n\r\n",
        post("/echo", "chunked", b"x" * (LIMIT + 1)),
    ],
    ids=["content-length", "chunked"],
)
async def test_a_body_over_max_body_size_gets_413(backend: str, request_text: str) -> None:
    handled: list[bytes] = []
    reply = await exchange(body_app(handled), backend, request_text)
    assert reply.startswith(b"HTTP/1.1 413 "), reply
    assert handled == []


async def test_a_client_that_expects_100_continue_is_told_to_go_on(backend: str) -> None:
    handled: list[bytes] = []
    body = b"sent after the 100"
    head = (
        f"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with anyio.fail_after(GUARD):
        async with serving(body_app(handled), backend) as url:
            async with await anyio.connect_tcp("127.0.0.1", int(url.rpartition(":")[2])) as stream:
                await stream.send(head)
                interim = b""
                for _ in range(20):  # bounded: the interim response is one short line
                    if b"\r\n\r\n" in interim:
                        break
                    interim += await stream.receive()
                await stream.send(body)
                reply = b""
                for _ in range(100):
                    try:
                        reply += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
    assert interim.startswith(b"HTTP/1.1 100 ") and interim.endswith(b"\r\n\r\n"), interim
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert reply.endswith(body)


async def test_a_body_that_never_comes_loses_the_connection_after_open_timeout(backend: str) -> None:
    handled: list[bytes] = []
    app = body_app(handled, open_timeout=0.3)
    reply = await exchange(app, backend, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
    assert reply == b""  # dropped, unanswered: a slow client holds nothing
    assert handled == []

"""Plain HTTP request bodies on every backend, over a real socket: read whole
before the handler runs, bounded by ``max_body_size`` (413 beyond it)."""

from __future__ import annotations

import logging
import socket
import struct

import anyio
import pytest
from anyio.abc import SocketAttribute

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


CHUNKED_HEAD = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_a_chunked_body_reaches_the_handler_whole_however_it_is_cut(backend: str) -> None:
    handled: list[bytes] = []
    # Upper-case hex, a chunk extension and a trailer, cut inside a chunk-size
    # line, inside chunk data and between CR and LF.
    wire = (CHUNKED_HEAD + "3;name=value\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n").encode()
    cuts = [len(CHUNKED_HEAD) - 2, len(CHUNKED_HEAD) + 1, len(CHUNKED_HEAD) + 16, len(CHUNKED_HEAD) + 18]
    pieces = [wire[start:end] for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    with anyio.fail_after(GUARD):
        async with serving(body_app(handled), backend) as url:
            reply = await http_exchange(int(url.rpartition(":")[2]), pieces)
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert reply.endswith(b"\r\n\r\nabc0123456789")
    assert handled == [b"abc0123456789"]


async def test_a_chunk_claiming_more_than_the_limit_gets_413_once_the_body_grows_past_it(
    backend: str,
) -> None:
    handled: list[bytes] = []
    # The chunk claims 4 GiB and only a little more than the limit is sent:
    # the answer must not wait for the rest.
    request = CHUNKED_HEAD + "FFFFFFFF\r\n" + "x" * (LIMIT + 1)
    reply = await exchange(body_app(handled), backend, request)
    assert reply.startswith(b"HTTP/1.1 413 "), reply
    assert handled == []


MALFORMED_BODIES = {
    "chunk-size-not-hex": CHUNKED_HEAD + "zz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": CHUNKED_HEAD + "-5\r\nhello\r\n0\r\n\r\n",
    "chunk-data-without-crlf": CHUNKED_HEAD + "5\r\nhelloXX0\r\n\r\n",
    "content-length-not-a-number": "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\nhello",
    "content-length-negative": "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nhello",
    "content-lengths-that-disagree": (
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    ),
}


@pytest.mark.parametrize("request_text", list(MALFORMED_BODIES.values()), ids=list(MALFORMED_BODIES))
async def test_a_malformed_body_gets_400_and_no_traceback(
    backend: str, request_text: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    handled: list[bytes] = []
    reply = await exchange(body_app(handled), backend, request_text)
    assert reply.split(b" ", 2)[1] == b"400", reply
    assert handled == []
    # At most one short line (rate-limited, so perhaps none), never a traceback.
    shown = [f"{record.name}: {record.getMessage()}" for record in caplog.records]
    complaints = [record for record in caplog.records if record.name == "fastrapi.http"]
    assert len(complaints) <= 1, shown
    for record in caplog.records:
        assert record.exc_info is None and record.stack_info is None, shown
        assert "\n" not in record.getMessage(), shown
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("leaving", ["closes", "resets"])
async def test_a_client_that_leaves_in_the_middle_of_a_body_leaves_no_traceback(
    backend: str, leaving: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    handled: list[bytes] = []
    with anyio.fail_after(GUARD):
        async with serving(body_app(handled), backend) as url:
            stream = await anyio.connect_tcp("127.0.0.1", int(url.rpartition(":")[2]))
            await stream.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly this much")
            await anyio.sleep(0.1)  # the server is reading the body
            if leaving == "resets":  # RST instead of FIN
                raw = stream.extra(SocketAttribute.raw_socket)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()
            await anyio.sleep(0.2)  # and finds the client gone
    assert handled == []
    shown = [f"{record.name}: {record.getMessage()}" for record in caplog.records]
    for record in caplog.records:
        assert record.exc_info is None, shown
    assert "Traceback" not in caplog.text

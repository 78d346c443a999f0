"""Requests at the edges of HTTP, on every backend: what a library lets through
or logs is the backend's to shape, never the client's to exploit.
"""

from __future__ import annotations

import base64
import json
import logging
import os

import anyio
import pytest

from conformance.rawclient import TEXT, RawClient
from conformance.test_wire import GUARD, client, server

pytestmark = pytest.mark.anyio

MALFORMED_HEADS = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",  # a TLS hello, say
    b"GET /echo HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n",
    b"GET /echo HTTP/7.3\r\nHost: x\r\n\r\n",
    b"GET /echo\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
]
MOST_LINES = 6  # a few lines, and a count of the rest


async def _send_and_read_to_the_end(port: int, data: bytes) -> None:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        try:
            await stream.send(data)
            while True:  # whatever the server answers, it then closes the connection
                await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            pass


async def test_malformed_request_heads_leave_a_few_short_lines_and_no_traceback(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, port, _record):
            caplog.clear()
            for index in range(20):
                await _send_and_read_to_the_end(port, MALFORMED_HEADS[index % len(MALFORMED_HEADS)])
            records = list(caplog.records)
            async with client(f"{url}/echo") as ws:  # and the server is fine
                await ws.send("still here")
                assert await ws.recv() == "still here"
    shown = [f"{record.name}: {record.getMessage()}" for record in records]
    assert len(records) <= MOST_LINES, shown
    for record in records:
        assert record.exc_info is None and record.stack_info is None, shown
        message = record.getMessage()
        assert "\n" not in message and len(message) <= 200, shown
    assert "Traceback" not in caplog.text


def _upgrade(target: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def test_an_absolute_form_target_routes_on_its_path(backend: str) -> None:
    # RFC 9112 section 3.2.2: a server must accept the absolute form too.
    with anyio.fail_after(GUARD):
        async with server(backend) as (_url, port, _record):
            raw, head = await RawClient.open(port, _upgrade(f"http://127.0.0.1:{port}/echo", port))
            async with raw:
                assert head.startswith(b"HTTP/1.1 101 "), head
                await raw.send_frame(TEXT, b"absolute")
                frame = await raw.receive_frame()
                assert (frame.opcode, frame.payload) == (TEXT, b"absolute")
                assert (await raw.close_handshake()).close_code == 1000

            raw, head = await RawClient.open(port, _upgrade(f"http://127.0.0.1:{port}/items/7?tag=a", port))
            async with raw:
                assert head.startswith(b"HTTP/1.1 101 "), head
                frame = await raw.receive_frame()
                seen = json.loads(frame.payload)
                assert (seen["item"], seen["query"]) == (7, {"tag": "a"})

            plain = f"GET http://127.0.0.1:{port}/echo HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            raw, head = await RawClient.open(port, plain)
            async with raw:
                assert head.startswith(b"HTTP/1.1 426 "), head  # the WebSocket route, not a 404


async def _dropped(stream: anyio.abc.SocketStream) -> None:
    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError)):
        while True:  # whatever the server says, it then closes the connection
            await stream.receive()


async def test_each_connection_gets_open_timeout_for_its_head_and_no_more(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend, open_timeout=0.5) as (url, port, _record):
            first = await anyio.connect_tcp("127.0.0.1", port)
            await first.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # and no more
            await anyio.sleep(0.3)
            second = await anyio.connect_tcp("127.0.0.1", port)
            async with first, second, client(f"{url}/echo") as ws:
                await _dropped(first)
                await second.send(b"GET /echo HTTP/1.1\r\n")  # still within its own time
                await _dropped(second)
                await ws.send("its head came in time")  # so it is never dropped
                assert await ws.recv() == "its head came in time"

"""The behaviour suite: one real server per test on loopback, once per backend.

A client cannot tell the backends apart: every test here runs unchanged on
each of them, with the independent `websockets` client or the raw frame
client in `rawclient.py`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conformance.conftest import serving
from conformance.rawclient import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawClient
from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect, WebSocketException

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds: hang guard only
MiB = 1024 * 1024


@dataclass
class Record:
    """What handlers saw, for the test to check after the fact."""

    states: list[int] = field(default_factory=list)
    ends: list[tuple[str, int]] = field(default_factory=list)
    sockets: list[WebSocket] = field(default_factory=list)
    accepted: anyio.Event = field(default_factory=anyio.Event)
    request: dict[str, Any] = field(default_factory=dict)
    done: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)


def make_app(record: Record, **settings_: Any) -> FastrAPI:
    app = FastrAPI(**settings_)

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            await ws.send(await ws.receive())

    @app.websocket("/items/{item:int}")
    async def items(ws: WebSocket, item: int) -> None:
        record.request.update(
            item=item,
            query=dict(ws.query_params),
            header=ws.headers.get("x-token"),
            client_host=ws.client.host if ws.client else None,
            offered=ws.subprotocols,
        )
        await ws.accept(
            subprotocol=ws.subprotocols[-1] if ws.subprotocols else None, headers={"x-item": str(item)}
        )
        await ws.send_json(record.request)
        await ws.close()

    @app.websocket("/refuse/{how}")
    async def refuse(ws: WebSocket, how: str) -> None:
        if how == "close":
            await ws.close()
        elif how == "exception":
            raise WebSocketException(4003, "go away")
        elif how == "crash":
            raise ZeroDivisionError
        elif how == "deny":
            await ws.deny(401, {"www-authenticate": "Basic"}, b"who are you?")

    @app.websocket("/after/{how}")
    async def after(ws: WebSocket, how: str) -> None:
        await ws.accept()
        if how == "crash":
            raise ZeroDivisionError
        if how == "exception":
            raise WebSocketException(4003, "policy")
        if how == "close":
            await ws.close(4001, "bye")

    @app.websocket("/observe")
    async def observe(ws: WebSocket) -> None:
        record.sockets.append(ws)
        record.states.append(ws.client_state)
        await ws.accept()
        record.states.append(ws.client_state)
        try:
            await ws.receive_text()
        except WebSocketDisconnect as end:
            record.ends.append(("receive", end.code))
            record.states.append(ws.client_state)
        try:
            await ws.send_text("after the end")
        except WebSocketDisconnect as end:
            record.ends.append(("send", end.code))
        record.done.set()

    @app.websocket("/server-closes")
    async def server_closes(ws: WebSocket) -> None:
        record.states.append(ws.client_state)
        await ws.accept()
        record.states.append(ws.client_state)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.close, 4001, "bye")
            await anyio.wait_all_tasks_blocked()  # the client holds its answer back
            record.states.append(ws.client_state)  # Close sent, waiting for the answer
            record.release.set()
        record.states.append(ws.client_state)
        record.done.set()

    @app.websocket("/ping")
    async def ping(ws: WebSocket) -> None:
        await ws.accept()
        await ws.ping(b"are you there?")
        await ws.send_text("pong received")
        await ws.receive_text()

    @app.websocket("/fanout/{tasks:int}/{count:int}")
    async def fanout(ws: WebSocket, tasks: int, count: int) -> None:
        await ws.accept()

        async def sender(name: int) -> None:
            for index in range(count):
                size = (name * 7919 + index * 104729) % 20000
                await ws.send_text(json.dumps({"from": name, "n": index, "fill": chr(65 + name % 26) * size}))

        async with anyio.create_task_group() as tg:
            for name in range(tasks):
                tg.start_soon(sender, name)
        await ws.close()

    @app.websocket("/fragments/{how}")
    async def fragments(ws: WebSocket, how: str) -> None:
        async def parts() -> AsyncIterator[str]:
            yield "frag"
            yield "mented 😀"
            if how == "raise":
                raise OSError("the source went away")

        await ws.accept()
        await ws.send_fragments(parts())
        await ws.send_text("then a whole message " * 20)  # compressed, when negotiated
        await ws.receive_text()

    @app.websocket("/slow")
    async def slow(ws: WebSocket) -> None:
        await ws.accept()
        record.sockets.append(ws)
        record.accepted.set()
        await record.release.wait()
        count = 0
        async for _ in ws.iter_bytes():
            count += 1
        record.ends.append(("count", count))
        record.done.set()

    return app


@asynccontextmanager
async def server(backend: str, **settings_: Any) -> AsyncIterator[tuple[str, int, Record]]:
    record = Record()
    async with serving(make_app(record, **settings_), backend) as url:
        yield url, int(url.rsplit(":", 1)[1]), record


def client(url: str, **kwargs: Any) -> Any:
    return connect(url, max_size=None, compression=None, open_timeout=GUARD, close_timeout=GUARD, **kwargs)


async def http_get(port: int, path: str, request: bytes | None = None) -> tuple[bytes, bytes]:
    """Send a plain HTTP request; return the status line and everything after the head."""
    raw, head = await RawClient.open(port, request or f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    body = b""
    try:
        while True:
            body += await raw.reader.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        pass
    finally:
        await raw.aclose()
    return head, body


# -- plain HTTP ------------------------------------------------------------------


async def test_http_to_a_websocket_route_is_426_and_elsewhere_404(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (_, port, _record):
            head, body = await http_get(port, "/echo")
            assert head.startswith(b"HTTP/1.1 426 ")
            assert b"upgrade: websocket" in head.lower()
            assert b"WebSocket" in body
            head, _ = await http_get(port, "/nowhere")
            assert head.startswith(b"HTTP/1.1 404 ")


@pytest.mark.parametrize("method", ["POST", "HEAD"])
async def test_other_methods_get_http_answers_too(backend: str, method: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (_, port, _record):
            request = f"{method} /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
            head, body = await http_get(port, "", request)
            assert head.startswith(b"HTTP/1.1 426 ")
            assert (body == b"") == (method == "HEAD")
            head, _ = await http_get(port, "", request.replace(b"/echo", b"/nowhere"))
            assert head.startswith(b"HTTP/1.1 404 ")


async def test_garbage_instead_of_a_request_gets_400_and_a_closed_connection(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, port, _record):
            head, _ = await http_get(port, "", b"\x16\x03\x01 not http at all\r\n\r\n")
            assert head.split(b" ")[1] == b"400"  # the HTTP version of an error reply may be 1.0
            async with client(f"{url}/echo") as ws:  # the server is still fine
                await ws.send("still here")
                assert await ws.recv() == "still here"


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = {
    "Host": "x",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (f"GET /{'a' * 10_000} HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (f"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 10_000}\r\n\r\n", 431),
        ("GET /echo HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{i}: v\r\n" for i in range(150)) + "\r\n", 431),
        (
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {'dGhlIHNhbXBsZSBub25jZQ=='}\r\nSec-WebSocket-Version: 13\r\n"
            + "".join(f"X-{i}: v\r\n" for i in range(150))
            + "\r\n",
            431,
        ),
    ],
    ids=["long-request-line", "long-header-line", "many-headers", "many-headers-upgrade"],
)
async def test_oversized_request_heads_get_414_or_431(backend: str, request_: str, status: int) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, port, _record):
            head, _ = await http_get(port, "", request_.encode())
            assert head.startswith(f"HTTP/1.1 {status} ".encode())
            async with client(f"{url}/echo") as ws:  # the server is fine
                await ws.send("fine")
                assert await ws.recv() == "fine"


async def test_a_request_that_never_completes_is_dropped_at_open_timeout(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend, open_timeout=0.3) as (url, port, _record):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            async with stream:
                await stream.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # and no more
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    while True:  # whatever the server says, it then closes the connection
                        await stream.receive()
            async with client(f"{url}/echo") as ws:  # others are served meanwhile
                await ws.send("fine")
                assert await ws.recv() == "fine"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"Sec-WebSocket-Key": None}, 400),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, 400),  # decodes to 5 bytes, not 16
        ({"Sec-WebSocket-Version": None}, 400),
        ({"Sec-WebSocket-Version": "8"}, 426),
        ({"Connection": "keep-alive"}, 400),
    ],
)
async def test_a_broken_handshake_is_refused(
    backend: str, change: dict[str, str | None], status: int
) -> None:
    headers = {**GOOD, **change}
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items() if value is not None)
    request = f"GET /echo HTTP/1.1\r\n{lines}\r\n".encode()
    with anyio.fail_after(GUARD):
        async with server(backend) as (_, port, _record):
            head, _ = await http_get(port, "", request)
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    if status == 426:
        assert b"sec-websocket-version: 13" in head.lower()


# -- handshake -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [("/nowhere", 404), ("/refuse/close", 403), ("/refuse/exception", 403), ("/refuse/crash", 500)],
)
async def test_refusals_are_http_statuses_never_101(backend: str, path: str, status: int) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, _, _record):
            with pytest.raises(InvalidStatus) as refused:
                async with client(f"{url}{path}"):
                    pass
    assert refused.value.response.status_code == status


async def test_deny_sends_status_headers_and_body(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, _, _record):
            with pytest.raises(InvalidStatus) as refused:
                async with client(f"{url}/refuse/deny"):
                    pass
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Basic"
    assert response.body == b"who are you?"


async def test_allowed_origins_refuse_other_sites_with_403(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend, allowed_origins=["https://chat.example"]) as (url, _, _record):
            async with client(f"{url}/echo", origin="https://chat.example") as ws:
                await ws.send("same site")
                assert await ws.recv() == "same site"
            for origin in ("https://evil.example", None):
                with pytest.raises(InvalidStatus) as refused:
                    async with client(f"{url}/echo", origin=origin):
                        pass
                assert refused.value.response.status_code == 403


async def test_request_details_subprotocol_and_headers(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, _, _record):
            async with client(
                f"{url}/items/42?room=a%20b&x=1",
                subprotocols=["v1.chat", "v2.chat"],
                additional_headers={"X-Token": "secret"},
            ) as ws:
                assert ws.subprotocol == "v2.chat"
                assert ws.response.headers["x-item"] == "42"
                seen = json.loads(await ws.recv())
    assert seen == {
        "item": 42,
        "query": {"room": "a b", "x": "1"},
        "header": "secret",
        "client_host": "127.0.0.1",
        "offered": ["v1.chat", "v2.chat"],
    }


async def test_a_path_param_of_the_wrong_type_does_not_match(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, _, _record):
            with pytest.raises(InvalidStatus) as refused:
                async with client(f"{url}/items/forty-two"):
                    pass
    assert refused.value.response.status_code == 404


# -- messages --------------------------------------------------------------------

PAYLOADS = [
    "",
    "a",
    "é中😀\U0010fffd",
    "x" * (64 * 1024),
    "y" * MiB,
    b"",
    b"\x00",
    bytes(range(256)) * 256,
    b"\xff" * MiB,
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"{type(p).__name__}-{len(p)}")
async def test_messages_round_trip(backend: str, payload: str | bytes) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, _, _record):
            async with client(f"{url}/echo") as ws:
                await ws.send(payload)
                assert await ws.recv() == payload


async def test_fragmented_messages_from_the_client_are_joined(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, _, _record):
            async with client(f"{url}/echo") as ws:
                await ws.send(["frag", "mented ", "😀", ""])
                assert await ws.recv() == "fragmented 😀"
                await ws.send([b"\x01", b"", b"\x02" * 70000])
                assert await ws.recv() == b"\x01" + b"\x02" * 70000


async def test_a_message_over_max_message_size_closes_with_1009(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend, max_message_size=1000) as (url, _, _record):
            async with client(f"{url}/echo") as ws:
                await ws.send("z" * 1000)
                assert await ws.recv() == "z" * 1000
                await ws.send(["z" * 600, "z" * 600])
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_a_fragmented_send_arrives_as_one_message(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend, compression=True) as (url, port, _record):
            async with connect(f"{url}/fragments/ok", compression="deflate") as ws:
                assert [extension.name for extension in ws.protocol.extensions] == ["permessage-deflate"]
                assert await ws.recv() == "fragmented 😀"
                assert await ws.recv() == "then a whole message " * 20
            async with await RawClient.upgrade(port, "/fragments/ok") as raw:
                frames = [await raw.receive_frame() for _ in range(3)]
                assert [(f.fin, f.opcode) for f in frames] == [(False, TEXT), (False, 0), (True, 0)]
                assert b"".join(f.payload for f in frames).decode() == "fragmented 😀"
                assert (await raw.close_handshake()).close_code == 1000


async def test_a_fragmented_send_that_raises_midway_closes_with_1011(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (_url, port, _record):
            async with await RawClient.upgrade(port, "/fragments/raise") as raw:
                first, second = await raw.receive_frame(), await raw.receive_frame()
                assert (first.fin, first.opcode, second.fin, second.opcode) == (False, TEXT, False, 0)
                close = await raw.receive_frame()
                assert close.opcode == CLOSE
                assert (close.close_code, close.close_reason) == (1011, "a fragmented message was abandoned")


async def test_a_frame_over_max_frame_size_closes_with_1009_from_its_header(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend, max_frame_size=1000) as (url, port, _record):
            async with client(f"{url}/echo") as ws:  # many frames of at most 1000 bytes: fine
                await ws.send([b"\x07" * 1000] * 5)
                assert await ws.recv() == b"\x07" * 5000
            async with await RawClient.upgrade(port, "/echo") as raw:
                await raw.send_frame(BINARY, b"\x08" * 500)
                frame = await raw.receive_frame()
                assert frame.payload == b"\x08" * 500
                # The header of a 1001-byte frame, and none of its payload.
                await raw.stream.send(bytes([0x82, 0xFE]) + (1001).to_bytes(2) + b"mask")
                close = await raw.receive_close()
    assert close.close_code == 1009


async def test_write_limit_is_what_a_reader_that_stalls_makes_the_server_buffer(backend: str) -> None:
    # A client that reads nothing: the handler's sends return while the
    # server may buffer more, then wait. The kernel's socket buffers take
    # their share either way, so compare a small and a large write_limit:
    # the large one lets the handler get megabytes further.
    sent = {}
    for limit in (16 * 1024, 8 * MiB):
        sent[limit] = await _bytes_sent_to_a_stalled_reader(backend, limit)
    assert sent[8 * MiB] - sent[16 * 1024] > 4 * MiB, sent


async def _bytes_sent_to_a_stalled_reader(backend: str, write_limit: int) -> int:
    chunk = b"\x09" * 65536
    progress = [0]
    app = FastrAPI(write_limit=write_limit, ping_interval=None, close_timeout=0.5)

    @app.websocket("/flood")
    async def flood(ws: WebSocket) -> None:
        await ws.accept()
        for _ in range(256):  # 16 MiB at most
            await ws.send_bytes(chunk)
            progress[0] += len(chunk)

    with anyio.fail_after(GUARD * 2):
        async with serving(app, backend) as url:
            port = int(url.rsplit(":", 1)[1])
            async with await RawClient.upgrade(port, "/flood", small_receive_buffer=True):
                last, still = -1, 0
                for _ in range(200):  # until the handler has been stuck for 0.5 s
                    await anyio.sleep(0.05)
                    still = still + 1 if progress[0] == last else 0
                    last = progress[0]
                    if still == 10 or last == 256 * len(chunk):
                        break
                return last


@pytest.mark.parametrize("enabled", [True, False], ids=["compression", "no-compression"])
async def test_compression_is_negotiated_only_when_enabled(backend: str, enabled: bool) -> None:
    text = "a fairly compressible sentence, said again and again. " * 10_000
    with anyio.fail_after(GUARD):
        async with server(backend, compression=enabled) as (url, _, _record):
            async with connect(f"{url}/echo", compression="deflate", max_size=None) as ws:
                negotiated = [extension.name for extension in ws.protocol.extensions]
                assert negotiated == (["permessage-deflate"] if enabled else [])
                for _ in range(3):  # context takeover across messages
                    await ws.send(text)
                    assert await ws.recv() == text
                await ws.send(b"\x00\x01" * 1000)
                assert await ws.recv() == b"\x00\x01" * 1000


async def test_a_decompression_bomb_closes_with_1009(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend, compression=True, max_message_size=MiB) as (url, _, _record):
            async with connect(f"{url}/echo", compression="deflate", max_size=None) as ws:
                await ws.send(b"\x00" * (8 * MiB))  # about 8 KiB on the wire
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# -- protocol violations (raw frames) -------------------------------------------


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([(TEXT, b"\xff\xfe", True, True, 0)], 1007),  # invalid UTF-8 (8.1)
        ([(TEXT, "😀".encode()[:2], False, True, 0), (CONTINUATION, b"\x00", True, True, 0)], 1007),
        ([(0x3, b"", True, True, 0)], 1002),  # reserved opcode (5.2)
        ([(TEXT, b"hi", True, False, 0)], 1002),  # unmasked client frame (5.1)
        ([(TEXT, b"hi", True, True, 4)], 1002),  # RSV1 without an extension (5.2)
        ([(CONTINUATION, b"x", True, True, 0)], 1002),  # continuation with nothing to continue
        ([(PING, b"x" * 126, True, True, 0)], 1002),  # control frame over 125 bytes (5.5)
        ([(PING, b"", False, True, 0)], 1002),  # fragmented control frame (5.5)
    ],
    ids=[
        "invalid-utf8",
        "invalid-utf8-across-fragments",
        "reserved-opcode",
        "unmasked",
        "rsv1-without-extension",
        "orphan-continuation",
        "control-frame-too-long",
        "fragmented-control-frame",
    ],
)
async def test_protocol_violations_close_that_connection_with_the_right_code(
    backend: str, frames: list[tuple[int, bytes, bool, bool, int]], code: int
) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, port, _record):
            async with await RawClient.upgrade(port, "/echo") as raw:
                for opcode, payload, fin, mask, rsv in frames:
                    await raw.send_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv)
                close = await raw.receive_close()
                assert close.close_code == code
                assert await raw.at_eof()
                await raw.aclose()
                async with client(f"{url}/echo") as ws:  # only that connection was closed
                    await ws.send("fine")
                    assert await ws.recv() == "fine"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03\xe8", 1000),
        (b"", 1000),  # no status code: echoed as an empty Close
        (b"\x0f\xa2bye", 4002),
        (b"\x03\xed", 1002),  # 1005 must never be on the wire (7.4.1)
        (b"\x03\xe7", 1002),  # 999 is not a close code
        (b"\x03\xe8\xff", 1007),  # reason not UTF-8
        (b"\x03", 1002),  # one-byte payload
    ],
)
async def test_client_close_frames_are_answered_or_refused(backend: str, payload: bytes, code: int) -> None:
    from conformance.rawclient import CLOSE

    with anyio.fail_after(GUARD):
        async with server(backend) as (_, port, _record):
            async with await RawClient.upgrade(port, "/echo") as raw:
                await raw.send_frame(CLOSE, payload)
                close = await raw.receive_close()
                assert (close.close_code or 1000) == code
                assert await raw.at_eof()
                await raw.aclose()


# -- closing ---------------------------------------------------------------------


async def test_server_close_code_and_reason_reach_the_client(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, _, _record):
            async with client(f"{url}/after/close") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")


async def test_client_close_code_reaches_the_handler_and_tcp_ends(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (_, port, record):
            async with await RawClient.upgrade(port, "/observe") as raw:
                await raw.send_close(4002, "client bye")
                close = await raw.receive_close()
                assert (close.close_code, close.close_reason) == (4002, "client bye")
                assert await raw.at_eof()
                await raw.aclose()
                await record.done.wait()
    assert record.ends == [("receive", 4002), ("send", 4002)]
    assert record.states == [0, 1, 3]


async def test_client_state_walks_0_1_2_3_when_the_server_closes(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (_, port, record):
            async with await RawClient.upgrade(port, "/server-closes") as raw:
                close = await raw.receive_close()
                assert (close.close_code, close.close_reason) == (4001, "bye")
                await record.release.wait()
                await raw.send_close(4001)
                assert await raw.at_eof()
                await raw.aclose()
                await record.done.wait()
    assert record.states == [0, 1, 2, 3]


@pytest.mark.parametrize(("how", "code"), [("crash", 1011), ("exception", 4003)])
async def test_handler_errors_after_accept_close_the_connection(backend: str, how: str, code: int) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, _, _record):
            async with client(f"{url}/after/{how}") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_a_vanished_peer_is_a_disconnect_for_receive_and_send(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (_, port, record):
            async with await RawClient.upgrade(port, "/observe") as raw:
                await raw.reset()
                await record.done.wait()
    assert record.ends == [("receive", 1006), ("send", 1006)]


async def test_shutdown_sends_1001_to_every_open_connection(backend: str) -> None:
    record = Record()
    with anyio.fail_after(GUARD):
        async with AsyncExitStackClients() as clients:
            async with serving(make_app(record), backend) as url:
                for _ in range(3):
                    ws = await clients.open(f"{url}/echo")
                    await ws.send("hi")
                    assert await ws.recv() == "hi"
            codes = []
            for ws in clients.sockets:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
    assert codes == [1001, 1001, 1001]


async def test_the_server_leaves_no_task_and_no_socket_behind(backend: str) -> None:
    import asyncio
    import os

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before_fds = open_fds()
    before_tasks = asyncio.all_tasks()
    with anyio.fail_after(GUARD):
        async with AsyncExitStackClients() as clients:
            async with server(backend) as (url, port, _record):
                for _ in range(3):
                    ws = await clients.open(f"{url}/echo")
                    await ws.send("x")
                    assert await ws.recv() == "x"
                async with await anyio.connect_tcp("127.0.0.1", port) as gone:  # left mid-request
                    await gone.send(b"GET /echo HTTP/1.1\r\n")
                async with await RawClient.upgrade(port, "/echo") as raw:  # reset mid-connection
                    await raw.reset()
    await anyio.sleep(0.1)  # let closed transports finish closing
    assert asyncio.all_tasks() == before_tasks
    assert open_fds() <= before_fds


class AsyncExitStackClients:
    """Clients that outlive the server they connected to."""

    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []

    async def open(self, url: str) -> ClientConnection:
        ws: ClientConnection = await client(url)
        self.sockets.append(ws)
        return ws

    async def __aenter__(self) -> AsyncExitStackClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in self.sockets:
            await ws.close()


# -- control frames --------------------------------------------------------------


async def test_a_client_ping_gets_its_pong(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, port, _record):
            async with client(f"{url}/echo") as ws:
                latency = await (await ws.ping(b"hello"))
                assert latency >= 0
            async with await RawClient.upgrade(port, "/echo") as raw:
                await raw.send_frame(PING, b"raw ping")
                pong = await raw.receive_frame()
                assert (pong.opcode, pong.payload) == (PONG, b"raw ping")
                await raw.aclose()


async def test_keepalive_closes_a_silent_peer_with_1011(backend: str) -> None:
    settings_ = {"ping_interval": 0.1, "ping_timeout": 1.0, "close_timeout": 0.5}
    with anyio.fail_after(GUARD):
        async with server(backend, **settings_) as (url, port, record):
            async with client(f"{url}/echo") as alive:  # answers pings: stays open
                async with await RawClient.upgrade(port, "/observe") as silent:
                    ping = await silent.receive_frame()
                    assert ping.opcode == PING  # never answered
                    close = await silent.receive_close()
                    assert (close.close_code, close.close_reason) == (1011, "keepalive ping timeout")
                    assert await silent.at_eof()
                await record.done.wait()
                await alive.send("still alive")
                assert await alive.recv() == "still alive"
    assert record.ends[0] == ("receive", 1011)


async def test_idle_timeout_closes_a_quiet_connection(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend, idle_timeout=0.3) as (url, _, _record):
            async with client(f"{url}/echo") as ws:
                await ws.send("one")
                assert await ws.recv() == "one"
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "idle timeout")


async def test_server_ping_resolves_when_the_pong_arrives(backend: str) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (_, port, _record):
            async with await RawClient.upgrade(port, "/ping") as raw:
                ping = await raw.receive_frame()
                assert (ping.opcode, ping.payload) == (PING, b"are you there?")
                await raw.send_frame(PONG, b"something else")  # unsolicited: ignored
                await raw.send_frame(PONG, b"are you there?")
                reply = await raw.receive_frame()
                assert (reply.opcode, reply.payload) == (TEXT, b"pong received")
                await raw.aclose()


# -- concurrency and backpressure ---------------------------------------------------

MAX_READ = 256 * 1024  # the most an asyncio socket transport reads at once


async def test_concurrent_senders_never_interleave_frames(backend: str) -> None:
    tasks, count = 12, 25
    seen: dict[int, list[int]] = {}
    with anyio.fail_after(GUARD * 3):
        async with server(backend) as (url, _, _record):
            async with client(f"{url}/fanout/{tasks}/{count}") as ws:
                async for text in ws:
                    item = json.loads(text)
                    size = (item["from"] * 7919 + item["n"] * 104729) % 20000
                    assert item["fill"] == chr(65 + item["from"] % 26) * size
                    seen.setdefault(item["from"], []).append(item["n"])
    assert seen == {name: list(range(count)) for name in range(tasks)}


async def test_a_slow_handler_applies_backpressure(backend: str) -> None:
    total, size, max_queue = 400, 64 * 1024, 8  # 25 MiB: more than socket buffers hold
    sent = 0
    with anyio.fail_after(GUARD * 3):
        async with server(backend, max_queue=max_queue) as (url, port, record):
            async with await RawClient.upgrade(port, "/slow") as raw:
                await record.accepted.wait()
                channel = record.sockets[0]._channel
                finished = anyio.Event()

                async def flood() -> None:
                    nonlocal sent
                    for _ in range(total):
                        await raw.send_frame(BINARY, b"\x00" * size)
                        sent += 1
                    finished.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood)
                    while channel.queued < max_queue:  # noqa: ASYNC110  # no event marks a full queue
                        await anyio.sleep(0.01)
                    await anyio.sleep(0.5)  # let the client push as far as it can
                    # Bounded: reading pauses at max_queue; what the socket read
                    # that filled it held still arrives (asyncio reads up to 256 KiB).
                    queued = channel.queued
                    assert max_queue <= queued <= max_queue + MAX_READ // size + 1
                    await anyio.sleep(0.3)
                    assert channel.queued == queued  # nothing more is read meanwhile
                    assert not finished.is_set()  # TCP pushed back on the client
                    assert sent < total
                    record.release.set()
                    await finished.wait()
                await raw.close_handshake(1000)
                await record.done.wait()
    assert record.ends == [("count", total)]


# -- property: anything the client sends comes back intact, in order --------------

message_strategy = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=300),
    st.binary(max_size=300),
    st.lists(st.text(st.characters(codec="utf-8"), max_size=50), min_size=1, max_size=4),
    st.lists(st.binary(max_size=50), min_size=1, max_size=4),
    st.integers(min_value=0, max_value=200_000).map(lambda n: b"\xab" * n),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(message_strategy, min_size=1, max_size=6))
async def test_random_message_sequences_round_trip(backend: str, messages: list[Any]) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend) as (url, _, _record):
            async with client(f"{url}/echo") as ws:
                for message in messages:
                    await ws.send(message)  # a list is sent as fragments
                for message in messages:
                    expected = message
                    if isinstance(message, list):
                        expected = "".join(message) if isinstance(message[0], str) else b"".join(message)
                    assert await ws.recv() == expected

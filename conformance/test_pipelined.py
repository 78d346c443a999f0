"""Many messages in one read: every one answered, in order, on every backend.

A backend may hold the replies of one turn and write them together (wsproto
does, as its raw library's servers do); nothing may be lost or reordered,
and a Ping among them is still answered.
"""

from __future__ import annotations

import struct

import anyio
import pytest

from conformance.conftest import serving
from conformance.rawclient import RawClient
from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect

pytestmark = pytest.mark.anyio
GUARD = 10.0  # seconds
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def masked(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    length = len(payload)
    header = (
        struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        if length < 126
        else (struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length))
    )
    return header + mask + body


def echo_app() -> FastrAPI:
    app = FastrAPI()

    @app.websocket("/ws")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except WebSocketDisconnect:
            pass

    return app


@pytest.mark.parametrize("size", [8, 2000])
async def test_messages_that_come_in_one_read_are_all_answered_in_order(backend: str, size: int) -> None:
    count = 40
    messages = [f"{n:04d}".encode().ljust(size, b".") for n in range(count)]
    burst = b"".join(masked(TEXT, message) for message in messages[:20])
    burst += masked(PING, b"still there?")
    burst += b"".join(masked(TEXT, message) for message in messages[20:])
    with anyio.fail_after(GUARD):
        async with serving(echo_app(), backend) as url:
            client = await RawClient.upgrade(int(url.rsplit(":", 1)[1]), "/ws")
            await client.stream.send(burst)  # one write: the server reads it in one or a few reads
            echoed: list[bytes] = []
            pongs: list[bytes] = []
            for _ in range(count + 1):
                frame = await client.receive_frame()
                (pongs if frame.opcode == PONG else echoed).append(frame.payload)
            assert echoed == messages
            assert pongs == [b"still there?"]
            assert (await client.close_handshake(1000)).close_code == 1000
            await client.aclose()

"""The websockets backend's own objects, and the frames it holds back until the 101.

The library's `serve()` makes each connection's protocol and stream reader
itself. The backend makes its own of its own classes instead of assigning
``__class__`` on the library's: on CPython 3.11+ an object whose class was
assigned keeps a dict of its own, and every attribute read on it takes the
generic path (4.5 ns a read becomes 19.5; bench/NOTES.md).
"""

from __future__ import annotations

import gc
import struct

import anyio
import pytest

from conformance.conftest import serving
from conformance.rawclient import RawClient
from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect
from fastrapi.backends.websockets import WebsocketsConnection

pytestmark = pytest.mark.anyio
GUARD = 10.0  # seconds
TEXT, CLOSE = 0x1, 0x8
UPGRADE = (
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def masked(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + body


def echo_app(connections: list[object]) -> FastrAPI:
    app = FastrAPI()

    @app.websocket("/ws")
    async def echo(ws: WebSocket) -> None:
        connections.append(ws._transport)
        await ws.accept()
        try:
            async for text in ws.iter_text():
                await ws.send_text(text)
        except WebSocketDisconnect:
            pass

    return app


def own_dict(obj: object) -> bool:
    """Whether ``obj`` has a dict of its own rather than its class's inline values.

    The collector visits a materialised dict as one object; inline values
    one by one. None of the attributes checked here holds a dict."""
    return any(type(referent) is dict for referent in gc.get_referents(obj))


async def test_websockets_protocol_and_reader_are_made_as_their_classes() -> None:
    connections: list[object] = []
    with anyio.fail_after(GUARD):
        async with serving(echo_app(connections), "websockets") as url:
            port = int(url.rsplit(":", 1)[1])
            async with await RawClient.upgrade(port, "/ws") as client:
                await client.send_frame(TEXT, b"hello")
                assert (await client.receive_frame()).payload == b"hello"
                [connection] = connections
                assert isinstance(connection, WebsocketsConnection)
                protocol = connection.protocol
                assert type(protocol) is connection._protocol_class
                assert not own_dict(protocol)
                assert not own_dict(protocol.reader)
                await client.close_handshake(1000)


async def test_frames_sent_with_the_request_are_answered_after_the_101(backend: str) -> None:
    # Held back until the handshake is answered, then read like any later frame.
    request = UPGRADE.encode() + masked(TEXT, b"early") + masked(TEXT, b"\xff")
    with anyio.fail_after(GUARD):
        async with serving(echo_app([]), backend) as url:
            port = int(url.rsplit(":", 1)[1])
            client, head = await RawClient.open(port, request)
            async with client:
                assert head.startswith(b"HTTP/1.1 101"), head
                assert (await client.receive_frame()).payload == b"early"
                close = await client.receive_close()
                assert close.close_code == 1007  # the invalid UTF-8, checked as every later chunk is

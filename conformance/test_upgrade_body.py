"""An upgrade request with a body: one answer on every backend, a 400.

An opening handshake has no body (RFC 6455 section 4.1); what follows the
request on the wire is the client's first frames. Each library used to
answer differently (a 101, or the connection closed without a word).
"""

from __future__ import annotations

import anyio
import pytest

from conformance.conftest import serving
from conformance.rawclient import RawClient
from fastrapi import FastrAPI, WebSocket

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds: hang guard only
UPGRADE = (
    "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@pytest.mark.parametrize(
    "body",
    [
        "Content-Length: 5\r\n\r\nhello",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_an_upgrade_request_with_a_body_gets_400(backend: str, body: str) -> None:
    app = FastrAPI()
    handled: list[str] = []

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        handled.append(ws.path)
        await ws.accept()
        async for text in ws.iter_text():
            await ws.send_text(text)

    with anyio.fail_after(GUARD):
        async with serving(app, backend) as url:
            port = int(url.rsplit(":", 1)[1])
            raw, head = await RawClient.open(port, (UPGRADE + body).encode())
            try:
                rest = b""
                while True:
                    rest += await raw.reader.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass  # the server closed the connection after its answer
            finally:
                await raw.aclose()
    assert head.split(b" ")[1] == b"400", head
    assert handled == []  # the handler never saw the request

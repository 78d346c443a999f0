"""The close code a handler sees is the peer's, on every backend.

A handler blocked in a send when the peer closes must learn the peer's code
(1000 here), not 1006: the closing handshake completed, whatever the
handler was doing when it did.
"""

from __future__ import annotations

import anyio
import pytest
from websockets.asyncio.client import connect

from conformance.conftest import serving
from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect

pytestmark = pytest.mark.anyio

GUARD = 15  # seconds: hang guard only


async def test_a_handler_blocked_in_send_sees_the_peers_close_code(backend: str) -> None:
    app = FastrAPI()
    ends: list[int] = []
    sent: list[int] = []

    @app.websocket("/flood")
    async def flood(ws: WebSocket) -> None:
        await ws.accept()
        try:
            for index in range(200):  # 12.5 MiB: far more than socket buffers hold
                await ws.send_bytes(b"\x00" * 65536)
                sent.append(index)
        except WebSocketDisconnect as end:
            ends.append(end.code)

    with anyio.fail_after(GUARD):
        async with serving(app, backend) as url:
            for _ in range(3):  # the race shows on some connections, not every one
                async with connect(f"{url}/flood", max_size=None, max_queue=None, compression=None) as client:
                    await client.recv()
                    await client.close(1000)
                assert client.close_code == 1000
            while len(ends) < 3:  # noqa: ASYNC110  # the handlers end on their own
                await anyio.sleep(0.01)
    assert ends == [1000, 1000, 1000]
    assert len(sent) < 3 * 200  # each handler was cut short, so each was blocked in a send

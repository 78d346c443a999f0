"""A finished connection is freed by reference counting, on every backend.

Objects caught in a reference cycle wait for the garbage collector, whose
collections then grow with every connection that left such a cycle behind:
under a stream of short connections that cost a sixth of the server's time
(bench/NOTES.md). With the collector off, the core's objects of a connection
must be gone as soon as the connection is.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import anyio
import pytest

from conformance.conftest import serving
from conformance.rawclient import RawClient
from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect
from fastrapi.core.channel import Channel
from fastrapi.core.framecheck import FrameCheck
from fastrapi.core.request import Headers

pytestmark = pytest.mark.anyio
GUARD = 10.0  # seconds


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("ending", ["client closes", "server closes", "client vanishes"])
async def test_a_finished_connection_leaves_no_cycle(backend: str, ending: str, collector_off: None) -> None:
    app = FastrAPI()
    seen: list[weakref.ref[object]] = []  # what can be watched directly
    ended = anyio.Event()

    @app.websocket("/ws")
    async def echo(ws: WebSocket) -> None:
        seen.extend(weakref.ref(part) for part in (ws, ws.request))
        await ws.accept()
        try:
            while True:
                message = await ws.receive_text()
                if message == "bye":
                    await ws.close(1000)
                    return
                await ws.send_text(message)
        except WebSocketDisconnect:
            pass
        finally:
            ended.set()

    before = _core_objects()  # what earlier tests left alive: not this connection's
    with anyio.fail_after(GUARD):
        async with serving(app, backend) as url:
            port = int(url.rsplit(":", 1)[1])
            client = await RawClient.upgrade(port, "/ws")
            await client.send_frame(0x1, b"hello")
            assert (await client.receive_frame()).payload == b"hello"
            if ending == "client closes":
                await client.close_handshake(1000)
            elif ending == "server closes":
                await client.send_frame(0x1, b"bye")
                assert (await client.receive_close()).close_code == 1000
                await client.send_close(1000)
            else:
                await client.reset()
            await ended.wait()
            await client.aclose()
            for _ in range(100):  # the backend lets go within a few turns of the loop
                if all(ref() is None for ref in seen) and not _core_objects() - before:
                    break
                await anyio.sleep(0.01)
    still_alive = [type(ref()).__name__ for ref in seen if ref() is not None]
    assert seen and not still_alive
    assert [type(found.obj).__name__ for found in _core_objects() - before] == []


class _Identity:
    """An object compared by identity, whatever its own ``==`` says."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def _core_objects() -> set[_Identity]:
    """The connection objects of the core that are alive (the collector
    tracks every object that could be in a cycle, slotted ones included)."""
    kinds = (Channel, WebSocket, Headers, FrameCheck)
    return {_Identity(obj) for obj in gc.get_objects() if type(obj) in kinds}

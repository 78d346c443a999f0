"""Attacks from loopback, on every backend: the server survives, stays small, serves others.

Each test starts the server as its own process (so its memory and file
descriptors can be read from /proc), attacks it with raw sockets, and checks
that a well-behaved client connected meanwhile still gets every echo back,
that the server's resident memory stays under a stated bound, and that its
log holds no traceback. Attack sizes are small enough for a 2-core machine.
"""

from __future__ import annotations

import os
import signal
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect

from conformance.conftest import ExampleServer, run_script
from conformance.rawclient import BINARY, CONTINUATION, PING, PONG, RawClient
from conformance.test_wire import server

pytestmark = pytest.mark.anyio

GUARD = 20
MiB = 1024 * 1024
RSS_BOUND = 40 * MiB  # growth allowed over the idle server during an attack

SERVER = """
from fastrapi import FastrAPI, Settings, WebSocketDisconnect

app = FastrAPI(settings=Settings(
    max_message_size=1024 * 1024, compression=True, ping_interval=0.5, ping_timeout=1.0,
    close_timeout=1.0, open_timeout=2.0, shutdown_timeout=1.0,
))

@app.websocket("/")
async def echo(ws):
    await ws.accept()
    try:
        while True:
            await ws.send(await ws.receive())
    except WebSocketDisconnect:
        pass

@app.websocket("/talker")
async def talker(ws):
    await ws.accept()
    chunk = "x" * 65536
    try:
        while True:  # sends to a client that reads nothing
            await ws.send_text(chunk)
    except WebSocketDisconnect as end:
        print("talker: disconnected", end.code, flush=True)

@app.websocket("/half-sent")
async def half_sent(ws):
    async def fragments():
        yield b"the first half"
        raise OSError("the source went away")

    await ws.accept()
    await ws.send_fragments(fragments())  # raises: the handler ends with it

app.serve("127.0.0.1", {port}, backend={backend!r})
"""


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextmanager
def server_process(backend: str, tmp_path: Path) -> Iterator[ExampleServer]:
    def render(port: int) -> str:
        return SERVER.format(port=port, backend=backend)

    with run_script(tmp_path, "server.py", render, stop_signal=signal.SIGTERM) as server:
        yield server
    # Only a handler's own error may show a traceback (logged, as for any handler).
    tracebacks = server.output.count("Traceback")
    assert tracebacks == server.output.count("OSError: the source went away"), server.output


class PeakMemory:
    """Samples the server's RSS while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rss(pid)
        self.peak = self.baseline

    async def sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss(self.pid))
            await anyio.sleep(0.02)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@asynccontextmanager
async def under_attack(server: ExampleServer) -> AsyncIterator[PeakMemory]:
    """Measure memory and prove a well-behaved client is served throughout."""
    async with connect(f"{server.url}/", compression=None, max_size=None) as bystander:
        await _echo_round(bystander, 0)  # warm up before the baseline
        memory = PeakMemory(server.process.pid)
        async with anyio.create_task_group() as tg:
            tg.start_soon(memory.sample)
            yield memory
            for index in range(1, 21):
                await _echo_round(bystander, index)
            tg.cancel_scope.cancel()
    assert memory.growth < RSS_BOUND, f"server grew by {memory.growth / MiB:.1f} MiB"


async def _echo_round(ws: ClientConnection, index: int) -> None:
    message = f"bystander {index} " + "é" * index
    await ws.send(message)
    assert await ws.recv() == message


async def test_an_oversized_frame_is_refused_before_it_is_buffered(backend: str, tmp_path: Path) -> None:
    with server_process(backend, tmp_path) as server:
        with anyio.fail_after(GUARD):
            async with under_attack(server) as memory:
                async with await RawClient.upgrade(server.port, "/") as raw:
                    # A frame announcing 1.5 MiB, over the 1 MiB limit on its own,
                    # and 64 KiB of its payload: the rest never comes, the server
                    # must refuse it from what it has.
                    header = bytes([0x82, 0xFF]) + (3 * MiB // 2).to_bytes(8) + b"mask"
                    await raw.stream.send(header + b"\x00" * 65536)
                    close = await raw.receive_close()
            assert close.close_code == 1009
    print(f"{backend}: oversized frame -> {close.close_code}, peak growth {memory.growth / MiB:.1f} MiB")


async def test_an_oversized_fragmented_message_is_refused(backend: str, tmp_path: Path) -> None:
    with server_process(backend, tmp_path) as server:
        with anyio.fail_after(GUARD):
            async with under_attack(server):
                async with await RawClient.upgrade(server.port, "/") as raw:
                    await raw.send_frame(BINARY, b"\x01" * (600 * 1024), fin=False)
                    await raw.send_frame(CONTINUATION, b"\x02" * (600 * 1024), fin=True)
                    close = await raw.receive_close()
            assert close.close_code == 1009


async def test_a_decompression_bomb_is_refused_with_bounded_memory(backend: str, tmp_path: Path) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * (256 * MiB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    with server_process(backend, tmp_path) as server:
        with anyio.fail_after(GUARD):
            async with under_attack(server) as memory:
                extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                async with await RawClient.upgrade(server.port, "/", extension) as raw:
                    await raw.send_frame(BINARY, bomb[:-4], rsv=4)  # 256 MiB from ~250 KiB
                    close = await raw.receive_close()
            assert close.close_code == 1009
    print(f"{backend}: decompression bomb -> {close.close_code}, peak growth {memory.growth / MiB:.1f} MiB")


async def test_a_ping_flood_is_answered_without_growth(backend: str, tmp_path: Path) -> None:
    with server_process(backend, tmp_path) as server:
        with anyio.fail_after(GUARD):
            async with under_attack(server) as memory:
                async with await RawClient.upgrade(server.port, "/") as raw:
                    for index in range(2000):
                        await raw.send_frame(PING, index.to_bytes(4, "big"))
                    pongs = 0
                    while pongs < 2000:
                        frame = await raw.receive_frame()
                        if frame.opcode == PONG:
                            assert frame.payload == pongs.to_bytes(4, "big")
                            pongs += 1
    print(f"{backend}: 2000 pings -> 2000 pongs, peak growth {memory.growth / MiB:.1f} MiB")


async def test_a_client_that_never_reads_costs_bounded_memory(backend: str, tmp_path: Path) -> None:
    # The handler's sends wait at write_limit; the keepalive ping gets no pong,
    # so the server closes with 1011 and drops the connection by itself, and
    # the waiting send fails with WebSocketDisconnect.
    with server_process(backend, tmp_path) as server:
        pid = server.process.pid
        with anyio.fail_after(GUARD):
            async with under_attack(server) as memory:
                before = fds(pid)
                async with await RawClient.upgrade(server.port, "/talker", small_receive_buffer=True):
                    for _ in range(200):  # ping_interval + ping_timeout + close_timeout = 2.5 s
                        await anyio.sleep(0.05)
                        if fds(pid) <= before:
                            break
                    assert fds(pid) <= before, "the server kept a connection that stopped reading"
    assert "talker: disconnected 1011" in server.output, server.output
    print(f"{backend}: never-reading client -> dropped, peak growth {memory.growth / MiB:.1f} MiB")


async def test_a_handler_raising_midway_through_a_fragmented_send(backend: str, tmp_path: Path) -> None:
    with server_process(backend, tmp_path) as server:
        with anyio.fail_after(GUARD):
            async with under_attack(server):
                for _ in range(20):
                    async with await RawClient.upgrade(server.port, "/half-sent") as raw:
                        fragment = await raw.receive_frame()
                        assert (fragment.fin, fragment.payload) == (False, b"the first half")
                        close = await raw.receive_close()
                        assert close.close_code == 1011
    # The handler's error is logged once per connection, as any handler's crash is.
    assert server.output.count("OSError: the source went away") == 20


async def test_many_connections_dropped_mid_message_leak_nothing(backend: str, tmp_path: Path) -> None:
    with server_process(backend, tmp_path) as server:
        pid = server.process.pid
        with anyio.fail_after(GUARD * 3):
            async with under_attack(server):
                before = fds(pid)
                for _batch in range(20):  # 1,000 connections in all
                    async with anyio.create_task_group() as tg:
                        for _ in range(50):
                            tg.start_soon(_drop_mid_message, server.port)
                for _ in range(100):  # the server closes its side in its own time
                    if fds(pid) <= before:
                        break
                    await anyio.sleep(0.05)
                assert fds(pid) <= before, f"{fds(pid) - before} descriptors left open"


async def _drop_mid_message(port: int) -> None:
    raw = await RawClient.upgrade(port, "/")
    await raw.send_frame(BINARY, b"\x00" * 1000, fin=False)  # half a message...
    await raw.reset()  # ...then a TCP reset


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=2000))
async def test_random_bytes_after_the_handshake_never_hang_or_crash(backend: str, garbage: bytes) -> None:
    with anyio.fail_after(GUARD):
        async with server(backend, close_timeout=0.5, ping_interval=0.2, ping_timeout=0.5) as (url, port, _r):
            async with await RawClient.upgrade(port, "/echo") as raw:
                await raw.stream.send(garbage)
                # Whatever the bytes mean, the connection ends on its own: a
                # protocol error, a keepalive timeout, or an echo and then one.
                while not await raw.at_eof():
                    pass
            async with connect(f"{url}/echo", compression=None) as ws:
                await ws.send("still serving")
                assert await ws.recv() == "still serving"

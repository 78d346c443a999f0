"""Groups across processes: two servers, each its own OS process, sharing one real Redis.

Every backend serves both; the clients are plain WebSocket clients, and each
server's ``/stats`` route shows what its groups counted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect

from conformance.conftest import ExampleServer, http_exchange, run_script
from conformance.rawclient import TEXT, RawClient
from conformance.redis_server import RedisServer

pytestmark = pytest.mark.anyio

GUARD = 30  # seconds: a hang guard, never a timing assertion

SCRIPT = """
from fastrapi import FastrAPI, WebSocketDisconnect
from fastrapi.brokers.redis import RedisBroker

broker = RedisBroker({url!r}, prefix={prefix!r}, reconnect_min_delay=0.02, reconnect_max_delay=0.2)
app = FastrAPI(broker=broker, shutdown_timeout=1)
resyncs = 0


@app.groups.on_reconnect
async def resync():
    # Messages from the other server may have been lost: tell the members
    # here, and only here (a broadcast would reach the other's members too).
    global resyncs
    for name in app.groups.stats().groups:
        for ws in app.groups.members(name):
            await ws.send_text("resync")
    resyncs += 1


@app.websocket("/join/{{name}}")
async def join(ws, name):
    await ws.accept()
    await app.groups.add(name, ws)
    await ws.send_text("joined")
    try:
        async for text in ws.iter_text():  # each message, to the whole group
            await app.groups.send_text(name, text)
    except WebSocketDisconnect:
        pass


@app.get("/stats")
async def stats():
    counted = app.groups.stats()
    return {{
        "groups": counted.groups,
        "members": counted.members,
        "published": counted.published,
        "publish_failures": counted.publish_failures,
        "received": counted.received,
        "connected": counted.broker_connected,
        "reconnects": counted.reconnects,
        "resyncs": resyncs,
    }}


app.serve("127.0.0.1", {port}, backend={backend!r})
"""


@contextmanager
def two_servers(
    tmp_path: Path, backend: str, redis: RedisServer
) -> Iterator[tuple[ExampleServer, ExampleServer, str]]:
    """Servers A and B, each a process of its own, on one Redis; yields them and
    the room's channel (under a prefix of their own). Both must exit cleanly."""
    prefix = f"conformance-{uuid.uuid4().hex[:12]}:"

    def render(port: int) -> str:
        return SCRIPT.format(url=redis.url, prefix=prefix, port=port, backend=backend)

    with script_server(tmp_path, "a.py", render) as a, script_server(tmp_path, "b.py", render) as b:
        yield a, b, f"{prefix}room"
    for server in (a, b):
        assert server.process.returncode == 0, server.output
        assert "Traceback" not in server.output, server.output


@contextmanager
def script_server(tmp_path: Path, name: str, render: Callable[[int], str]) -> Iterator[ExampleServer]:
    """`run_script`, on another free port if the one picked was taken meanwhile.

    A server connects to Redis before it listens, and those connections may
    take the very ephemeral port that free_port() had just let go.
    """
    for attempt in range(3):
        stack = ExitStack()
        try:
            server = stack.enter_context(run_script(tmp_path, name, render))
        except RuntimeError:
            log = (tmp_path / f"{name}.log").read_text(errors="replace")
            if attempt == 2 or "address already in use" not in log:
                raise
            continue
        with stack:
            yield server
        return


async def stats(server: ExampleServer) -> dict[str, Any]:
    request = "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    reply = await http_exchange(server.port, request)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply
    answer: dict[str, Any] = json.loads(body)
    return answer


async def until(server: ExampleServer, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The server's stats once ``condition`` holds for them (polled, bounded)."""
    for _ in range(1000):
        counted = await stats(server)
        if condition(counted):
            return counted
        await anyio.sleep(0.01)
    raise AssertionError(f"never held; the stats are {counted}")


async def until_subscribers(redis: RedisServer, channel: str, count: int) -> None:
    for _ in range(1000):
        if redis.numsub(channel) == count:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"{channel} has {redis.numsub(channel)} subscribers, not {count}")


@asynccontextmanager
async def members(server: ExampleServer, count: int) -> AsyncIterator[list[ClientConnection]]:
    """``count`` clients in server's group "room"."""
    async with AsyncExitStack() as stack:
        opened = []
        for _ in range(count):
            ws = await stack.enter_async_context(connect(f"{server.url}/join/room"))
            assert await ws.recv() == "joined"  # added, and Redis confirmed the subscription
            opened.append(ws)
        yield opened


async def received(ws: ClientConnection, count: int) -> list[str | bytes]:
    return [await ws.recv() for _ in range(count)]


async def test_a_broadcast_reaches_each_member_of_both_servers_once(
    backend: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    with two_servers(tmp_path, backend, redis_server) as (a, b, channel), anyio.fail_after(GUARD):
        async with members(a, 2) as (a1, a2):
            async with members(b, 1) as (b1,):
                assert redis_server.numsub(channel) == 2  # one subscription per server, not per member
                await a1.send("hello")
                assert await b1.recv() == "hello"  # through Redis
                # B answers through Redis: had A's own broadcast come back to
                # A's members, it would reach them before this (one order in Redis).
                await b1.send("sentinel")
                assert await received(a1, 2) == ["hello", "sentinel"]
                assert await received(a2, 2) == ["hello", "sentinel"]
                assert await b1.recv() == "sentinel"
                counted_a = await until(a, lambda counted: counted["published"] == 1)
                counted_b = await until(b, lambda counted: counted["published"] == 1)
                assert (counted_a["received"], counted_b["received"]) == (1, 1)
                assert counted_a["groups"] == {"room": 2} and counted_b["groups"] == {"room": 1}
                assert counted_a["publish_failures"] == counted_b["publish_failures"] == 0

            # b1 left, B's last member: B no longer listens to the room.
            await until(b, lambda counted: counted["members"] == 0)
            await until_subscribers(redis_server, channel, 1)
            assert redis_server.channels(channel.replace("room", "*")) == [channel]

            # A member that vanishes without a Close (a TCP reset) is cleaned up as well.
            raw = await RawClient.upgrade(b.port, "/join/room")
            frame = await raw.receive_frame()
            assert (frame.opcode, frame.payload) == (TEXT, b"joined")
            await until_subscribers(redis_server, channel, 2)
            await raw.reset()
            await until(b, lambda counted: counted["members"] == 0 and counted["groups"] == {})
            await until_subscribers(redis_server, channel, 1)

            await a2.send("still here")
            assert await received(a1, 1) == await received(a2, 1) == ["still here"]
        await until(a, lambda counted: counted["groups"] == {})
        await until_subscribers(redis_server, channel, 0)


async def test_a_redis_restart_is_survived(backend: str, tmp_path: Path, redis_server: RedisServer) -> None:
    with two_servers(tmp_path, backend, redis_server) as (a, b, channel), anyio.fail_after(GUARD):
        async with members(a, 1) as (a1,), members(b, 1) as (b1,):
            redis_server.kill()
            try:
                await until(a, lambda counted: not counted["connected"])
                await until(b, lambda counted: not counted["connected"])
                # Redis is down: A's own member gets it, B's cannot, and A says so.
                await a1.send("during the outage")
                assert await a1.recv() == "during the outage"
                counted = await until(a, lambda counted: counted["publish_failures"] == 1)
                assert counted["published"] == 0
            finally:
                redis_server.start()  # empty, as after a crash, on the same port
            # Both reconnect, subscribe again, then run their hook, which
            # tells their members they may have missed something.
            for server in (a, b):
                counted = await until(server, lambda counted: counted["resyncs"] == 1)
                assert (counted["connected"], counted["reconnects"]) == (True, 1)
            assert await a1.recv() == "resync"
            assert await b1.recv() == "resync"  # and nothing from the outage
            assert redis_server.numsub(channel) == 2
            await a1.send("after")
            assert await b1.recv() == "after"
            await b1.send("back")
            assert await received(a1, 2) == ["after", "back"]
            assert await b1.recv() == "back"
            counted = await until(a, lambda counted: counted["published"] == 1)
            assert counted["publish_failures"] == 1

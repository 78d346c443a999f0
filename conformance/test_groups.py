"""Groups and broadcast over real sockets, on every backend, seen by the raw client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from conformance.conftest import serving
from conformance.rawclient import BINARY, CLOSE, TEXT, Frame, RawClient
from fastrapi import FastrAPI, WebSocket
from fastrapi.core.groups import Overflow
from tests.test_groups import group_app

pytestmark = pytest.mark.anyio

GUARD = 20  # seconds: a hang guard, never a timing assertion
# 400 messages of 16 KiB: 6.4 MiB, more than the kernel holds for a reader
# that never reads (the server's send buffer autotunes up to tcp_wmem's
# maximum, 4 MiB by default; 400 of 4 KiB fit in it whole on loopback).
MESSAGES = 400
PAYLOAD = b"\x5a" * 16384


def numbered(number: int) -> bytes:
    return number.to_bytes(4, "big") + PAYLOAD[4:]


def number_of(frame: Frame) -> int:
    assert frame.opcode == BINARY
    return int.from_bytes(frame.payload[:4], "big")


def overflow_app(overflow: Overflow = "drop_newest") -> tuple[FastrAPI, list[WebSocket]]:
    """tests/test_groups.py's app, with a small write limit so that a member that never reads overflows."""
    return group_app(group_overflow=overflow, write_limit=16 * 1024, ping_interval=None, close_timeout=1)


@asynccontextmanager
async def clients(port: int, name: str, count: int, small: int = 0) -> AsyncIterator[list[RawClient]]:
    """``count`` raw clients in group ``name``; the first ``small`` with a small receive buffer."""
    async with AsyncExitStack() as stack:
        opened = []
        for index in range(count):
            client = await RawClient.upgrade(port, f"/join/{name}", small_receive_buffer=index < small)
            await stack.enter_async_context(client)
            frame = await client.receive_frame()
            assert (frame.opcode, frame.payload) == (TEXT, b"joined")  # the handler added it
            opened.append(client)
        yield opened


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_three_members_get_each_broadcast_once(backend: str) -> None:
    app, sockets = overflow_app()
    groups = app.groups
    with anyio.fail_after(GUARD):
        async with serving(app, backend) as url, clients(port_of(url), "room", 3) as (a, b, c):
            assert groups.count("room") == 3
            assert await groups.send_text("room", "to all ✨") == 3
            assert await groups.send_bytes("room", b"not to b", exclude=sockets[1]) == 2
            assert await groups.send_json("room", {"n": 3}) == 3
            for client, expected in (
                (a, [(TEXT, "to all ✨".encode()), (BINARY, b"not to b"), (TEXT, b'{"n":3}')]),
                (b, [(TEXT, "to all ✨".encode()), (TEXT, b'{"n":3}')]),
                (c, [(TEXT, "to all ✨".encode()), (BINARY, b"not to b"), (TEXT, b'{"n":3}')]),
            ):
                for opcode, payload in expected:
                    frame = await client.receive_frame()
                    assert (frame.opcode, frame.payload) == (opcode, payload)
            stats = groups.stats()
            assert (stats.members, stats.groups, stats.sent, stats.dropped) == (3, {"room": 3}, 8, 0)

            # b vanishes without a Close: it is gone from the group once its session ends.
            await b.reset()
            for _ in range(2000):  # bounded: the loss is seen within a few loop turns
                if groups.count("room") == 2:
                    break
                await anyio.sleep(0.005)
            assert groups.members("room") == [sockets[0], sockets[2]]
            assert await groups.send_text("room", "after b") == 2
            for client in (a, c):
                frame = await client.receive_frame()
                assert (frame.opcode, frame.payload) == (TEXT, b"after b")
    assert groups.stats().members == 0


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest", "close_1008", "close_1013"])
async def test_a_member_that_never_reads_holds_up_nobody(backend: str, overflow: Overflow) -> None:
    app, sockets = overflow_app(overflow)
    groups = app.groups
    with anyio.fail_after(GUARD):
        async with serving(app, backend) as url, clients(port_of(url), "room", 3, small=1) as members:
            readers = members[1:]
            received = [0, 0]
            for number in range(MESSAGES):
                payload = numbered(number)
                assert await groups.send_bytes("room", payload) >= 2
                # The readers read as they go, so only the first member's
                # buffer grows: it never reads.
                for index, reader in enumerate(readers):
                    frame = await reader.receive_frame()
                    assert (frame.opcode, frame.payload) == (BINARY, payload)
                    received[index] += 1
            assert received == [MESSAGES, MESSAGES]
            stats = groups.stats()
            if overflow.startswith("drop_"):
                # The stuck member got what its buffers and outbox took, and missed the rest.
                assert 0 < stats.dropped < MESSAGES
                assert stats.drops == {overflow: stats.dropped}
                assert stats.sent == 3 * MESSAGES - stats.dropped
                assert stats.overflow_closes == 0
                # It reads at last: what it got is in order, and under
                # drop_oldest it ends with the newest message.
                numbers = [
                    number_of(await members[0].receive_frame()) for _ in range(MESSAGES - stats.dropped)
                ]
                assert numbers == sorted(numbers)
                assert (numbers[-1] == MESSAGES - 1) is (overflow == "drop_oldest")
            else:
                code = int(overflow[-4:])
                assert stats.overflow_closes == 1
                assert stats.drops == {overflow: 1}  # the message that found its outbox full
                assert sockets[0].close_code == code
                # What it was sent before, then the Close with the policy's code.
                for _ in range(MESSAGES + 1):  # bounded: at most every message, then the Close
                    frame = await members[0].receive_frame()
                    if frame.opcode == CLOSE:
                        break
                    assert frame.payload[4:] == PAYLOAD[4:]
                assert (frame.opcode, frame.close_code) == (CLOSE, code)

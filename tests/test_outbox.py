"""A member's outbox (`Channel.offer`): what a broadcast does to a connection that is behind.

Driven against a model with a transport that reports a full buffer when told
to, so every interleaving of offers, drains and fragmented sends is covered;
the same paths over real sockets are in ``conformance/test_groups.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrapi.core.channel import Channel, Offered
from fastrapi.core.exceptions import TransportClosed
from fastrapi.core.settings import Settings
from fastrapi.core.state import ConnectionState, Transition, WebSocketState

pytestmark = pytest.mark.anyio


class BufferTransport:
    """Takes every write; reports "over the limit" once ``limit`` writes are unflushed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.wire: list[str | bytes] = []  # whole messages and fragments, in write order
        self.unflushed = 0
        self.pending: asyncio.Future[None] | None = None
        self.closed = False
        self.close_frames: list[int] = []

    def send(self, data: str | bytes) -> asyncio.Future[None] | None:
        if self.closed:
            raise TransportClosed
        self.wire.append(data)
        self.unflushed += 1
        if self.unflushed <= self.limit:
            return None
        if self.pending is None:
            self.pending = asyncio.get_running_loop().create_future()
        return self.pending

    def flush(self) -> None:
        """The network took everything: a waiting sender may go on."""
        self.unflushed = 0
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.set_result(None)

    def lose(self) -> None:
        self.closed = True
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.set_exception(TransportClosed())

    async def send_fragment(self, data: str | bytes, first: bool, final: bool) -> None:
        self.wire.append(f"fragment:{data!s}")

    def send_close(self, code: int, reason: str) -> None:
        self.close_frames.append(code)

    def send_ping(self, data: bytes) -> None: ...
    def send_pong(self, data: bytes) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def abort(self) -> None: ...


def open_channel(transport: BufferTransport) -> Channel:
    state = ConnectionState()
    state.apply(Transition.ACCEPT)
    assert state.state is WebSocketState.CONNECTED
    settings = Settings(ping_interval=None)
    return Channel(transport, settings, state)  # type: ignore[arg-type]  # a structural stand-in


async def turn() -> None:
    """Let the loop run the callbacks a flush scheduled (a drained write's)."""
    for _ in range(3):
        await asyncio.sleep(0)


steps = st.lists(st.sampled_from(["offer", "offer", "offer", "flush"]), max_size=80)


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(1, 4), st.integers(0, 5), st.booleans())
def test_offers_follow_the_model(script: list[str], limit: int, room: int, displace: bool) -> None:
    async def run() -> None:
        transport = BufferTransport(limit)
        channel = open_channel(transport)
        unflushed = 0  # the model: writes the network has not taken
        blocked = False  # a write left the buffer over its limit
        outbox: list[str] = []
        dropped = 0
        for index, step in enumerate(script):
            if step == "flush":
                transport.flush()
                await turn()
                # The channel wrote its outbox until the buffer was full again.
                unflushed, blocked = 0, False
                while outbox and not blocked:
                    outbox.pop(0)
                    unflushed += 1
                    blocked = unflushed > limit
                continue
            message = str(index)
            offered = channel.offer(message, room, displace)
            if not blocked and not outbox:
                assert offered is Offered.WRITTEN
                unflushed += 1
                blocked = unflushed > limit
            elif len(outbox) < room:
                assert offered is Offered.QUEUED
                outbox.append(message)
            elif displace and outbox:
                assert offered is Offered.DISPLACED
                outbox.pop(0)
                outbox.append(message)
                dropped += 1
            else:
                assert offered is Offered.FULL
                dropped += 1
            assert channel.outbox_size == len(outbox) <= room
            assert channel.congested is blocked
            assert transport.unflushed == unflushed
        # Whatever is still queued goes out, in order, once the network takes it.
        for _ in range(len(script) + 1):
            transport.flush()
            await turn()
        assert channel.outbox_size == 0
        offers = [str(index) for index, step in enumerate(script) if step == "offer"]
        assert transport.wire == sorted(set(transport.wire), key=int)  # in order, never twice
        assert set(transport.wire) <= set(offers)
        assert len(transport.wire) + dropped == len(offers)

    asyncio.run(run())


async def test_broadcasts_wait_for_a_fragmented_message_to_end() -> None:
    transport = BufferTransport(limit=100)
    channel = open_channel(transport)
    first_out, go_on = anyio.Event(), anyio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield "a"
        first_out.set()  # asked for the next one: the first frame went out
        await go_on.wait()
        yield "b"

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(channel.send_fragments, fragments())
            await first_out.wait()
            # Nothing may come between a message's frames (RFC 6455 section 5.4).
            assert channel.offer("news", 4) is Offered.QUEUED
            go_on.set()
    assert transport.wire == ["fragment:a", "fragment:b", "fragment:", "news"]
    assert channel.outbox_size == 0


async def test_the_outbox_is_dropped_at_our_close_and_when_the_connection_is_lost() -> None:
    transport = BufferTransport(limit=1)
    channel = open_channel(transport)
    assert [channel.offer(str(n), 4) for n in range(4)] == [
        Offered.WRITTEN,
        Offered.WRITTEN,  # this write went over the limit
        Offered.QUEUED,
        Offered.QUEUED,
    ]
    channel.start_close(1000, "bye")
    assert channel.outbox_size == 0
    assert channel.offer("late", 4) is Offered.CLOSED
    transport.flush()
    await turn()
    assert transport.wire == ["0", "1"]  # nothing after our Close
    assert transport.close_frames == [1000]

    transport = BufferTransport(limit=0)
    channel = open_channel(transport)
    assert channel.offer("0", 4) is Offered.WRITTEN
    assert channel.offer("1", 4) is Offered.QUEUED
    transport.lose()  # the pending write fails: the outbox is not written to a dead transport
    await turn()
    assert transport.wire == ["0"]
    assert not channel.congested
    channel.release()
    assert channel.outbox_size == 0

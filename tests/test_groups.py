"""Groups and broadcast (`fastrapi.core.groups`) over the in-memory test client.

The same behaviours over real sockets on every backend are in
``conformance/test_groups.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrapi import FastrAPI, WebSocket, WebSocketDisconnect, WebSocketState
from fastrapi.core import json as core_json
from fastrapi.core.groups import Groups
from fastrapi.testing import AsyncTestClient, AsyncTestWebSocket

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds: a hang guard, never a timing assertion


def group_app(**options: Any) -> tuple[FastrAPI, list[WebSocket]]:
    """An app whose /join/{name} joins group ``name``, says "joined", then reads
    until the end; the conformance suite serves the same app on every backend."""
    app = FastrAPI(**options)
    sockets: list[WebSocket] = []

    @app.websocket("/join/{name}")
    async def join(ws: WebSocket, name: str) -> None:
        await ws.accept()
        assert await app.groups.add(name, ws)
        sockets.append(ws)
        await ws.send_text("joined")
        try:
            while True:
                await ws.receive()  # anything: the conformance suite sends both kinds
        except WebSocketDisconnect:
            pass

    return app, sockets


@asynccontextmanager
async def members(client: AsyncTestClient, name: str, count: int) -> AsyncIterator[list[AsyncTestWebSocket]]:
    async with AsyncExitStack() as stack:
        opened = []
        for _ in range(count):
            ws = await stack.enter_async_context(client.websocket_connect(f"/join/{name}"))
            assert await ws.receive_text() == "joined"  # the handler has added it
            opened.append(ws)
        yield opened


async def test_each_member_gets_each_broadcast_once() -> None:
    app, sockets = group_app()
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, members(client, "room", 3) as clients:
            groups = app.groups
            assert groups.count("room") == 3
            assert groups.members("room") == sockets
            assert await groups.send_text("room", "one") == 3
            assert await groups.send_bytes("room", b"two", exclude=sockets[0]) == 2
            assert await groups.send_json("room", {"n": 3}) == 3
            assert await groups.send_json("room", [4], mode="binary", exclude=sockets[2]) == 2
            assert await groups.send_text("elsewhere", "nobody") == 0
            got: list[list[Any]] = []
            for index, ws in enumerate(clients):
                got.append([await ws.receive_text()])
                if index != 0:
                    got[-1].append(await ws.receive_bytes())
                got[-1].append(await ws.receive_json())
                if index != 2:
                    got[-1].append(await ws.receive_bytes())
            assert got == [
                ["one", {"n": 3}, b"[4]"],
                ["one", b"two", {"n": 3}, b"[4]"],
                ["one", b"two", {"n": 3}],
            ]
            stats = groups.stats()
            assert (stats.members, stats.groups, stats.sent, stats.dropped) == (3, {"room": 3}, 10, 0)
    # Every session ended: nobody is left in any group.
    assert app.groups.stats().members == 0
    assert app.groups.count("room") == 0


async def test_a_thousand_members_all_get_a_broadcast() -> None:
    app, _ = group_app()
    with anyio.fail_after(GUARD * 6):
        async with AsyncTestClient(app) as client, members(client, "big", 1000) as clients:
            assert await app.groups.send_json("big", {"hello": "everyone"}) == 1000
            received = [await ws.receive_json() for ws in clients]
    assert received == [{"hello": "everyone"}] * 1000


async def test_json_is_serialised_once_per_broadcast(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = group_app()
    calls: list[Any] = []
    dumps = core_json.dumps

    def counting(value: Any) -> bytes:
        calls.append(value)
        return dumps(value)

    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, members(client, "room", 5) as clients:
            monkeypatch.setattr(core_json, "dumps", counting)
            assert await app.groups.send_json("room", {"once": True}) == 5
            monkeypatch.undo()
            assert [await ws.receive_json() for ws in clients] == [{"once": True}] * 5
    assert calls == [{"once": True}]


async def test_a_member_leaves_when_its_connection_ends() -> None:
    app, sockets = group_app()
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, members(client, "room", 2) as clients:
            await app.groups.add("other", sockets[0])
            async with client.websocket_connect("/join/room") as leaving:
                assert await leaving.receive_text() == "joined"
                assert app.groups.count("room") == 3
            # The block waited for the session's end, which took it out.
            assert app.groups.members("room") == sockets[:2]
            assert app.groups.stats().groups == {"room": 2, "other": 1}
            await clients[0].close()
            for _ in range(1000):  # bounded: the session ends within a few loop turns
                if app.groups.count("other") == 0:
                    break
                await anyio.sleep(0.001)
            assert app.groups.stats().groups == {"room": 1}
            # A closed connection is not added again.
            assert sockets[0].client_state is WebSocketState.DISCONNECTED
            assert not await app.groups.add("room", sockets[0])
            assert app.groups.members("room") == [sockets[1]]


# The memory transport holds 16 unread messages and takes a 17th that then
# waits to be written (its write_limit); the outbox holds 16 more.
IN_TRANSPORT = 17
TAKEN = IN_TRANSPORT + 16


async def stuck_room(app: FastrAPI, clients: list[AsyncTestWebSocket], count: int) -> None:
    """Broadcast ``count`` messages; every member but the first reads each as it comes."""
    for index in range(count):
        assert await app.groups.send_text("room", str(index)) >= len(clients) - 1
        for ws in clients[1:]:
            assert await ws.receive_text() == str(index)


async def wait_drained(ws: WebSocket) -> None:
    for _ in range(1000):  # bounded: its buffer drains within a few loop turns
        if not ws._channel.congested and ws._channel.outbox_size == 0:
            return
        await anyio.sleep(0.001)
    raise AssertionError("the member's buffer never drained")


async def test_a_stuck_member_misses_the_newest_and_the_others_get_all() -> None:
    app, sockets = group_app()
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, members(client, "room", 3) as clients:
            stuck = sockets[0]
            await stuck_room(app, clients, 100)
            assert stuck._channel.outbox_size == 16
            stats = app.groups.stats()
            assert stats.dropped == 100 - TAKEN
            assert stats.drops == {"drop_newest": 100 - TAKEN}
            assert stats.sent == 2 * 100 + TAKEN
            assert stuck.client_state is WebSocketState.CONNECTED
            # The stuck member reads again: it gets the first messages, in
            # order, the outbox's last, and none that was dropped.
            assert [await clients[0].receive_text() for _ in range(TAKEN)] == [str(n) for n in range(TAKEN)]
            await wait_drained(stuck)
            assert await app.groups.send_text("room", "again") == 3
            assert [await ws.receive_text() for ws in clients] == ["again"] * 3


async def test_drop_oldest_keeps_the_latest_messages_for_a_stuck_member() -> None:
    app, sockets = group_app(group_overflow="drop_oldest")
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, members(client, "room", 3) as clients:
            stuck = sockets[0]
            await stuck_room(app, clients, 100)
            stats = app.groups.stats()
            assert stats.dropped == 100 - TAKEN
            assert stats.drops == {"drop_oldest": 100 - TAKEN}
            assert stats.sent == 2 * 100 + TAKEN
            # What was in the transport already, then the 16 newest: the outbox
            # gave up its oldest for each message that came while it was full.
            expected = [*range(IN_TRANSPORT), *range(100 - 16, 100)]
            assert [await clients[0].receive_text() for _ in range(TAKEN)] == [str(n) for n in expected]
            await wait_drained(stuck)
            assert await app.groups.send_text("room", "again") == 3
            assert [await ws.receive_text() for ws in clients] == ["again"] * 3


async def test_an_outbox_of_zero_applies_the_policy_at_the_write_limit() -> None:
    app, sockets = group_app(group_outbox=0, group_overflow="drop_oldest")
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, members(client, "room", 2) as clients:
            await stuck_room(app, clients, 30)
            assert sockets[0]._channel.outbox_size == 0
            assert app.groups.stats().dropped == 30 - IN_TRANSPORT
            assert [await clients[0].receive_text() for _ in range(IN_TRANSPORT)] == [
                str(n) for n in range(IN_TRANSPORT)
            ]


@pytest.mark.parametrize(("policy", "code"), [("close_1008", 1008), ("close_1013", 1013)])
async def test_a_close_policy_closes_the_stuck_member(policy: str, code: int) -> None:
    app, sockets = group_app(group_overflow=policy)
    with anyio.fail_after(GUARD):
        async with AsyncTestClient(app) as client, members(client, "room", 2) as clients:
            await stuck_room(app, clients, TAKEN)
            assert sockets[0].client_state is WebSocketState.CONNECTED  # behind, within bounds
            await stuck_room(app, clients, 10)
            assert sockets[0].close_code == code
            stats = app.groups.stats()
            assert (stats.overflow_closes, stats.dropped, stats.drops) == (1, 1, {policy: 1})
            # What reached its buffer before the close, then the close itself:
            # the outbox's messages are never sent after it.
            assert [await clients[0].receive_text() for _ in range(IN_TRANSPORT)] == [
                str(n) for n in range(IN_TRANSPORT)
            ]
            with pytest.raises(WebSocketDisconnect) as ended:
                await clients[0].receive_text()
            assert ended.value.code == code


def test_unknown_policies_and_outboxes_are_refused() -> None:
    with pytest.raises(ValueError, match="drop_newest, drop_oldest, close_1008, close_1013"):
        Groups(overflow="drop_all")  # type: ignore[arg-type]  # what this checks
    groups = Groups()
    assert groups.overflow == "drop_newest"
    with pytest.raises(ValueError, match="close_1013"):
        groups.overflow = "close"  # type: ignore[assignment]  # what this checks
    with pytest.raises(ValueError, match="outbox"):
        Groups(outbox=-1)


async def test_messages_of_the_wrong_type_are_refused() -> None:
    groups = Groups()
    with pytest.raises(TypeError, match="str"):
        await groups.send_text("room", b"bytes")  # type: ignore[arg-type]  # what this checks
    with pytest.raises(TypeError, match="bytes"):
        await groups.send_bytes("room", "text")  # type: ignore[arg-type]  # what this checks
    with pytest.raises(TypeError, match="JSON"):
        await groups.send_json("room", {1j})
    with pytest.raises(ValueError, match="mode"):
        await groups.send_json("room", {}, mode="xml")  # type: ignore[arg-type]  # what this checks
    with pytest.raises(TypeError, match="name"):
        await groups.add(1, cast(WebSocket, Member()))  # type: ignore[arg-type]  # what this checks


# -- membership against a model ------------------------------------------------


class Member:
    """What membership looks at: an open connection, compared by identity."""

    client_state = WebSocketState.CONNECTED


NAMES = ["a", "b", "c"]
operations = st.lists(
    st.tuples(st.sampled_from(["add", "discard", "forget"]), st.sampled_from(NAMES), st.integers(0, 4)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_membership_follows_a_model(steps: list[tuple[str, str, int]]) -> None:
    people = [cast(WebSocket, Member()) for _ in range(5)]
    model: dict[str, list[WebSocket]] = {}
    groups = Groups()

    async def run() -> None:
        for operation, name, who in steps:
            ws = people[who]
            if operation == "add":
                assert await groups.add(name, ws)
                if ws not in model.setdefault(name, []):
                    model[name].append(ws)
            elif operation == "discard":
                groups.discard(name, ws)
                if ws in model.get(name, []):
                    model[name].remove(ws)
            else:
                groups.forget(ws)
                for joined in model.values():
                    if ws in joined:
                        joined.remove(ws)
            for group in NAMES:
                assert groups.members(group) == model.get(group, [])
                assert groups.count(group) == len(model.get(group, []))
            stats = groups.stats()
            assert stats.groups == {group: len(joined) for group, joined in model.items() if joined}
            assert stats.members == len({id(ws) for joined in model.values() for ws in joined})

    anyio.run(run)

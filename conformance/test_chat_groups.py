"""examples/chat_groups.py, the chat written with groups, on every backend.

Served in-process so the test can look at ``app.groups``; driven by the
independent ``websockets`` client, plus the raw client for a member whose
kernel buffers are small and who never reads.
"""

from __future__ import annotations

import json

import anyio
import pytest
from websockets.asyncio.client import connect

from conformance.conftest import serving
from conformance.rawclient import TEXT, RawClient
from conformance.test_seed_examples import http_get, load_example, message, recv_json

pytestmark = pytest.mark.anyio

GUARD = 20  # seconds: a hang guard around every wait, never a timing assertion


async def test_rooms_names_and_leaving(backend: str) -> None:
    example = load_example("chat_groups")
    groups = example.app.groups
    async with serving(example.app, backend) as url:
        with anyio.fail_after(GUARD):
            async with (
                connect(f"{url}/chat/lobby?name=Ada") as ada,
                connect(f"{url}/chat/caf%C3%A9?name=Eve") as eve,
            ):
                await ada.send("Ada is here")
                assert await recv_json(ada) == message("Ada", "Ada is here")
                async with connect(f"{url}/chat/lobby?name=J%C3%BCrgen%20%26%20co") as jurgen:
                    assert await recv_json(ada) == {
                        "type": "user_joined",
                        "username": "Jürgen & co",
                        "room": "lobby",
                    }
                    assert groups.count("room:lobby") == 2
                    await jurgen.send("hallo <b>Ada</b>")
                    for ws in (jurgen, ada):
                        assert await recv_json(ws) == message("Jürgen & co", "hallo <b>Ada</b>")
                assert await recv_json(ada) == {"type": "user_left", "username": "Jürgen & co"}
                # Nothing from the lobby reached café.
                await eve.send("bye")
                assert await recv_json(eve) == message("Eve", "bye")
                status, headers, body = await http_get(int(url.rsplit(":", 1)[1]), "/stats")
                assert (status, headers["content-type"]) == (200, "application/json")
                assert json.loads(body)["rooms"] == {"room:lobby": 1, "room:café": 1}
    assert groups.stats().members == 0  # everyone left every group


async def test_a_member_that_never_reads_holds_up_nobody(backend: str) -> None:
    example = load_example("chat_groups")
    app = example.app
    groups = app.groups
    chatter = "x" * 32768
    rounds = 400  # 12.8 MiB to a member whose kernel buffers hold at most 4 MiB or so
    async with serving(app, backend) as url:
        port = int(url.rsplit(":", 1)[1])
        with anyio.fail_after(GUARD):
            stuck = await RawClient.upgrade(port, "/chat/lobby?name=Stuck", small_receive_buffer=True)
            async with stuck, connect(f"{url}/chat/lobby?name=Ada") as ada:
                got = 0
                for _ in range(rounds):
                    await ada.send(chatter)
                    assert json.loads(await ada.recv())["message"] == chatter
                    got += 1
                # Ada got every one of her messages back, while the stuck
                # member missed what did not fit in its buffers and outbox.
                assert got == rounds
                stats = groups.stats()
                assert 0 < stats.dropped < rounds
                assert stats.drops == {"drop_newest": stats.dropped}
                # It reads at last: its messages, in order, then nothing it missed.
                frame = await stuck.receive_frame()
                assert frame.opcode == TEXT
                assert json.loads(frame.payload)["type"] == "user_joined"  # Ada's arrival
                for _ in range(rounds - stats.dropped):
                    frame = await stuck.receive_frame()
                    assert json.loads(frame.payload) == message("Ada", chatter)
            # Stuck vanished without a Close: it left the room all the same.
            for _ in range(2000):  # bounded: the loss is seen within a few loop turns
                if groups.stats().members == 0:
                    break
                await anyio.sleep(0.005)
            assert groups.stats().members == 0

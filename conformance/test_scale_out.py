"""One app, two worker processes, one Redis: a group's broadcast reaches every member once.

The server is conformance/scale_app.py run as a user runs it,
``serve(workers=2)`` with a `RedisBroker`, in a process group of its own that
is killed whole after the test whatever happened; Redis is the session's
real redis-server. Every wait is a bounded hang guard, never a timing
assertion.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect

from conformance.conftest import ROOT, http_exchange
from conformance.redis_server import RedisServer
from conformance.test_workers import (
    CLIENTS,
    GUARD,
    POLL,
    Served,
    assert_going_away,
    serving,
    still_there,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes are forked"),
]

APP = ROOT / "conformance" / "scale_app.py"
Client = tuple[ClientConnection, int]  # a member and the pid of the worker serving it


async def join(stack: AsyncExitStack, served: Served) -> Client:
    """A member of "room", kept open until ``stack`` closes, and its worker's pid
    (sent once the worker is subscribed to the room)."""
    url = f"ws://127.0.0.1:{served.port}/room"
    ws = await stack.enter_async_context(connect(url, open_timeout=GUARD, close_timeout=GUARD))
    pid = await ws.recv()
    assert isinstance(pid, str)
    return ws, int(pid)


async def stats_of(served: Served, pids: set[int]) -> dict[int, dict[str, Any]]:
    """Each worker's group stats, by pid: requests until each of ``pids`` answered one."""
    request = "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    found: dict[int, dict[str, Any]] = {}
    while set(found) != pids:  # the caller bounds it: which worker answers is the kernel's pick
        reply = await http_exchange(served.port, request)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), reply
        counted = json.loads(body)
        found[counted["pid"]] = counted
    return found


async def broadcast_round(clients: list[Client], tag: str) -> None:
    """A member of one worker broadcasts; once a member of the other has it, that
    one sends a sentinel. Every member gets exactly the two, in that order.

    The sentinel goes through Redis after the broadcast came through it: a
    copy of the broadcast coming back to its own worker's members, or
    reaching the other's twice, would reach a member before the sentinel.
    """
    by_worker: dict[int, list[ClientConnection]] = {}
    for ws, pid in clients:
        by_worker.setdefault(pid, []).append(ws)
    assert len(by_worker) == 2, f"members on {sorted(by_worker)}"
    (sender, *_), (answerer, *_) = by_worker.values()
    broadcast, sentinel = f"broadcast {tag}", f"sentinel {tag}"
    await sender.send(broadcast)
    assert await answerer.recv() == broadcast
    await answerer.send(sentinel)
    for ws, pid in clients:
        got = [await ws.recv()]
        while got[-1] != sentinel:
            assert len(got) < 3, f"a member of worker {pid} got {got}"
            got.append(await ws.recv())
        expected = [sentinel] if ws is answerer else [broadcast, sentinel]
        assert got == expected, f"a member of worker {pid} got {got}"


async def test_a_broadcast_reaches_every_member_of_two_workers_once_and_a_killed_worker_is_replaced(
    backend: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    prefix = f"scale-{uuid.uuid4().hex[:12]}:"
    channel = f"{prefix}room"
    with serving(tmp_path, str(APP), "0", backend, "2", redis_server.url, prefix) as served:
        server = await served.started()
        supervisor = server.process.pid
        async with AsyncExitStack() as stack:
            with anyio.fail_after(6 * GUARD):
                clients = [await join(stack, server) for _ in range(CLIENTS)]
                workers = {pid for _, pid in clients}
                assert len(workers) == 2 and supervisor not in workers, "1 in 2**39 by chance"
                assert redis_server.numsub(channel) == 2  # one subscription per worker

                await broadcast_round(clients, "1")
                counted = await stats_of(server, workers)
                # Each member was written each message once: none twice, none missed.
                assert sum(worker["sent"] for worker in counted.values()) == 2 * CLIENTS
                assert sum(worker["members"] for worker in counted.values()) == CLIENTS
                assert [worker["received"] for worker in counted.values()] == [1, 1]
                assert [worker["publish_failures"] for worker in counted.values()] == [0, 0]

                victim, survivor = sorted(workers)
                os.kill(victim, signal.SIGKILL)
                assert await still_there({victim}) == set()  # the supervisor reaped it
                live = [(ws, pid) for ws, pid in clients if pid == survivor]
                for _ in range(int(GUARD / POLL)):  # its subscription went with its connection
                    if redis_server.numsub(channel) == 1:
                        break
                    await anyio.sleep(POLL)
                assert redis_server.numsub(channel) == 1

                # The cut-off clients come back, as a page that reconnects
                # would, to whichever worker the kernel picks; until the
                # replacement listens, that is the survivor.
                while len(live) < CLIENTS or len({pid for _, pid in live}) < 2:
                    live.append(await join(stack, server))
                    if live[-1][1] == survivor:
                        await anyio.sleep(POLL)  # the replacement may not listen yet
                replacement = next(pid for _, pid in live if pid != survivor)
                assert replacement not in (victim, supervisor)
                # It subscribed when its first member joined.
                assert redis_server.numsub(channel) == 2

                await broadcast_round(live, "2")
                counted = await stats_of(server, {survivor, replacement})
                assert sum(worker["members"] for worker in counted.values()) == len(live)
                assert counted[replacement]["received"] == 1
                assert counted[replacement]["sent"] == 2 * sum(pid == replacement for _, pid in live)

                server.process.send_signal(signal.SIGTERM)
                for ws, _ in live:  # nothing more before the Close: no late copy either
                    await assert_going_away(ws)
        assert await server.exit_code() == 0
        assert await still_there({survivor, replacement}) == set()
        with pytest.raises(ProcessLookupError):  # nothing of the process group remains
            os.killpg(supervisor, 0)
    output = server.output()
    assert f"worker {victim} ended unexpectedly (killed by SIGKILL); starting another" in output
    assert f"worker {replacement} started" in output
    assert "app.groups are per process" not in output
    assert "Traceback" not in output
    assert redis_server.numsub(channel) == 0


async def test_the_in_memory_broker_with_two_workers_warns_that_groups_are_per_process(
    backend: str, tmp_path: Path
) -> None:
    with serving(tmp_path, str(APP), "0", backend, "2", "memory") as served:
        server = await served.started()
        async with AsyncExitStack() as stack:
            with anyio.fail_after(3 * GUARD):
                clients = [await join(stack, server) for _ in range(CLIENTS)]
                workers = {pid for _, pid in clients}
                assert len(workers) == 2
                # What the warning says: a broadcast stays in its worker.
                sender = clients[0]
                await sender[0].send("only here")
                for ws, pid in clients:
                    if pid == sender[1]:
                        assert await ws.recv() == "only here"
                server.process.send_signal(signal.SIGTERM)
                for ws, _ in clients:
                    await assert_going_away(ws)  # the other worker's members got nothing
        assert await server.exit_code() == 0
        assert await still_there(workers) == set()
    output = server.output()
    assert output.count("app.groups are per process: with 2 workers") == 1, output
    assert "WARNING fastrapi.server" in output
    assert 'FastrAPI(broker="redis://...")' in output
    assert "Traceback" not in output

"""``serve(workers=N)`` as a user runs it: worker processes sharing one port, on every backend.

Each server runs conformance/workers_app.py (or ``fastrapi run``) in a
process group of its own, killed whole after the test whatever happened.
Every wait is a bounded hang guard, never a timing assertion.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from conformance.conftest import ROOT, STARTUP_TIMEOUT, STOP_TIMEOUT

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes are forked"),
]

GUARD = 10.0  # seconds; a hang guard for one step
POLL = 0.05  # seconds between two looks at what another process did
APP = ROOT / "conformance" / "workers_app.py"
SERVING = re.compile(r"fastrapi serving on http://127\.0\.0\.1:(\d+) \(backend (\w+), (\d+) workers\)")
# SO_REUSEPORT picks a worker by a hash of the client's address and port: 40
# connections all on one of two workers is a chance of 1 in 2**39.
CLIENTS = 40
GOING_AWAY = (1001, "server shutting down")


@dataclass
class Served:
    """A server process (the supervisor, with workers) and its log."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/pid"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, pattern: str | re.Pattern[str]) -> re.Match[str]:
        """The first match of ``pattern`` in the log, once it is there."""
        with anyio.move_on_after(STARTUP_TIMEOUT):
            while (found := re.search(pattern, self.output())) is None:
                if self.process.poll() is not None:
                    break
                await anyio.sleep(POLL)
            else:
                return found
        raise AssertionError(f"no {pattern!r} in the server's log:\n{self.output()}")

    async def started(self) -> Served:
        """Once it says where it serves: with the port it serves on."""
        self.port = int((await self.wait_for(SERVING))[1])
        return self

    async def exit_code(self) -> int:
        return await anyio.to_thread.run_sync(lambda: self.process.wait(timeout=STOP_TIMEOUT))


@contextmanager
def serving(tmp_path: Path, *arguments: str) -> Iterator[Served]:
    """Run ``python arguments`` from the repository's root in a process group
    of its own; on exit, SIGKILL whatever of the group still runs."""
    log = tmp_path / "server.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, *arguments],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Served(process, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)


def exists(pid: int) -> bool:
    """Whether ``pid`` is still a process (a zombie not yet reaped is one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def still_there(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still exist after a bounded wait for them to go."""
    for _ in range(int(GUARD / POLL)):  # another process's children: nothing to wait on but time
        if not any(exists(pid) for pid in pids):
            break
        await anyio.sleep(POLL)
    return {pid for pid in pids if exists(pid)}


def running(pid: int) -> bool:
    """Whether ``pid`` still runs: a zombie does not (an orphan's waits for
    whichever process reaps orphans here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return exists(pid)  # gone, or no /proc here
    return state != "Z"


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def open_client(stack: AsyncExitStack, url: str) -> tuple[ClientConnection, int]:
    """A connection kept open until ``stack`` closes, and the pid of the worker serving it."""
    ws = await stack.enter_async_context(connect(url, open_timeout=GUARD, close_timeout=GUARD))
    pid = await ws.recv()
    assert isinstance(pid, str)
    return ws, int(pid)


async def open_client_of_a_new_worker(
    stack: AsyncExitStack, url: str, known: set[int]
) -> tuple[ClientConnection, int]:
    """A connection to a worker not in ``known`` (one started since), kept open
    until ``stack`` closes; the caller bounds the wait for it to listen."""
    while True:
        async with AsyncExitStack() as attempt:
            ws, pid = await open_client(attempt, url)
            if pid not in known:
                stack.push_async_exit(attempt.pop_all())
                return ws, pid
        await anyio.sleep(POLL)  # the new worker does not listen yet


async def assert_going_away(ws: ClientConnection) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == GOING_AWAY


async def test_workers_share_the_port_a_killed_one_is_replaced_and_sigterm_closes_all_with_1001(
    backend: str, tmp_path: Path
) -> None:
    with serving(tmp_path, str(APP), "0", backend, "2") as served:
        server = await served.started()
        supervisor = server.process.pid
        async with AsyncExitStack() as stack:
            with anyio.fail_after(3 * GUARD):
                clients = [await open_client(stack, server.url) for _ in range(CLIENTS)]
                workers = {pid for _, pid in clients}
                assert len(workers) == 2 and supervisor not in workers
                victim, survivor = sorted(workers)

                os.kill(victim, signal.SIGKILL)
                assert await still_there({victim}) == set()  # the supervisor reaped it
                for ws, pid in clients:
                    if pid == victim:  # cut off without a Close
                        with pytest.raises(ConnectionClosed) as cut:
                            await ws.recv()
                        assert cut.value.rcvd is None
                live = [(ws, pid) for ws, pid in clients if pid == survivor]
                for ws, _ in live:  # the other worker's connections carry on
                    await ws.send("still here")
                    assert await ws.recv() == f"{survivor}: still here"

                # New connections reach the replacement once it listens.
                ws, replacement = await open_client_of_a_new_worker(stack, server.url, {survivor})
                live.append((ws, replacement))
                assert replacement not in (victim, supervisor)

                server.process.send_signal(signal.SIGTERM)
                for ws, _ in live:
                    await assert_going_away(ws)
        assert await server.exit_code() == 0
        assert await still_there({survivor, replacement}) == set()
    output = server.output()
    assert SERVING.findall(output) == [(str(server.port), backend, "2")], output
    assert f"worker {victim} ended unexpectedly (killed by SIGKILL); starting another" in output
    assert f"worker {replacement} started" in output
    assert "SIGTERM received; stopping the workers" in output
    assert "Traceback" not in output


async def test_the_workers_of_a_killed_supervisor_stop_by_themselves_with_1001(tmp_path: Path) -> None:
    with serving(tmp_path, str(APP), "0", "wsproto", "2") as served:
        server = await served.started()
        async with AsyncExitStack() as stack:
            with anyio.fail_after(3 * GUARD):
                clients = [await open_client(stack, server.url) for _ in range(CLIENTS)]
                os.kill(server.process.pid, signal.SIGKILL)  # it cannot pass anything on
                for ws, _ in clients:
                    await assert_going_away(ws)
        workers = {pid for _, pid in clients}
        for _ in range(int(GUARD / POLL)):
            if not any(running(pid) for pid in workers):
                break
            await anyio.sleep(POLL)
        assert {pid for pid in workers if running(pid)} == set()
    output = server.output()
    for pid in workers:
        assert f"worker {pid}: its supervisor {server.process.pid} is gone; stopping" in output


async def test_without_reuse_port_the_workers_accept_on_one_shared_socket(
    backend: str, tmp_path: Path
) -> None:
    with serving(tmp_path, str(APP), "0", backend, "2", "shared") as served:
        server = await served.started()
        async with AsyncExitStack() as stack:
            with anyio.fail_after(3 * GUARD):
                # Whichever worker's accept() comes first takes a connection:
                # new ones until both have.
                clients = [await open_client(stack, server.url)]
                while len({pid for _, pid in clients}) < 2:
                    clients.append(await open_client(stack, server.url))
                server.process.send_signal(signal.SIGINT)
                for ws, _ in clients:
                    await assert_going_away(ws)
        assert await server.exit_code() == 0
        assert await still_there({pid for _, pid in clients}) == set()
    assert "Traceback" not in server.output()


async def test_fastrapi_run_with_workers_serves_from_that_many_processes(tmp_path: Path) -> None:
    arguments = ("-m", "fastrapi", "run", "conformance.workers_app:app", "--port", "0", "--workers", "3")
    with serving(tmp_path, *arguments) as served:
        server = await served.started()
        async with AsyncExitStack() as stack:
            with anyio.fail_after(3 * GUARD):
                clients = [await open_client(stack, server.url) for _ in range(CLIENTS)]
                workers = {pid for _, pid in clients}
                assert len(workers) == 3, "1 in 2 * 1.5**39 to happen by chance"
                server.process.send_signal(signal.SIGINT)
                for ws, _ in clients:
                    await assert_going_away(ws)
        assert await server.exit_code() == 0
        assert await still_there(workers) == set()
    output = server.output()
    supervisor = server.process.pid
    # Every line says which process wrote it.
    assert f"INFO fastrapi.server [{supervisor}]: fastrapi serving on http://127.0.0.1:" in output
    for pid in workers:
        assert f"INFO fastrapi.server [{pid}]: worker {pid} serving" in output
    assert "app.groups are per process: with 3 workers" in output
    assert "Traceback" not in output


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes in /proc")
async def test_one_worker_serves_in_the_process_itself(tmp_path: Path) -> None:
    with serving(tmp_path, str(APP), "0", "wsproto", "1") as server:
        found = await server.wait_for(r"fastrapi serving on http://127\.0\.0\.1:(\d+) \(backend wsproto\);")
        server.port = int(found[1])
        async with AsyncExitStack() as stack:
            with anyio.fail_after(GUARD):
                _, pid = await open_client(stack, server.url)
                assert pid == server.process.pid
                assert children(server.process.pid) == []
                server.process.send_signal(signal.SIGTERM)
        assert await server.exit_code() == 0
    assert "worker" not in server.output()


FAILING_START = """
import os
from contextlib import asynccontextmanager
from fastrapi import FastrAPI

@asynccontextmanager
async def lifespan(app):
    {failure}
    yield

FastrAPI(lifespan=lifespan).serve("127.0.0.1", 0, workers=2)
"""


@pytest.mark.parametrize(
    ("failure", "messages"),
    [
        (
            "raise RuntimeError('no database')",
            ["lifespan start-up failed: RuntimeError: no database; not serving", "failed; not serving"],
        ),
        (
            "os._exit(7)",
            ["workers keep ending as soon as they start (5 in a row, ", "exit status 7); giving up"],
        ),
    ],
    ids=["lifespan-raises", "worker-exits"],
)
async def test_workers_that_cannot_start_end_the_server_with_status_1(
    tmp_path: Path, failure: str, messages: list[str]
) -> None:
    script = tmp_path / "failing.py"
    script.write_text(FAILING_START.format(failure=failure))
    with serving(tmp_path, str(script)) as server:
        assert await server.exit_code() == 1
        with pytest.raises(ProcessLookupError):  # no worker outlived the supervisor
            os.killpg(server.process.pid, 0)
    output = server.output()
    for message in messages:
        assert message in output
    assert "fastrapi serving on" not in output


STUCK_SHUTDOWN = """
import time
from contextlib import asynccontextmanager
from fastrapi import FastrAPI

@asynccontextmanager
async def lifespan(app):
    yield
    print("worker shutting down", flush=True)
    time.sleep(3600)  # blocks its event loop: nothing but SIGKILL ends it

app = FastrAPI(lifespan=lifespan, shutdown_timeout=0.1, close_timeout=0.1)
app.serve("127.0.0.1", 0, workers=2)
"""


@pytest.mark.slow
async def test_a_worker_that_does_not_stop_is_killed_after_the_stop_timeout(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_SHUTDOWN)
    with serving(tmp_path, str(script)) as served:
        server = await served.started()
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_code() == 0  # past 0.1 + 0.1 + 5 s
        with pytest.raises(ProcessLookupError):
            os.killpg(server.process.pid, 0)
    output = server.output()
    assert output.count("worker shutting down") == 2
    assert len(re.findall(r"worker \d+ still running 5\.2 s after the stop; killing it", output)) == 2

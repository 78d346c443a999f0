"""Fixtures for the conformance suite: real servers, real loopback sockets.

Every test that takes the ``backend`` fixture runs once per registered
backend, so a new backend is tested by everything here automatically.
"""

from __future__ import annotations

import functools
import gc
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from fastrapi import FastrAPI
from fastrapi.backends import BACKENDS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
STARTUP_TIMEOUT = 15.0  # seconds for a subprocess server to accept connections
STOP_TIMEOUT = 15.0  # seconds for it to exit after SIGINT


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    # Anything a test leaves unclosed is reported against that test, not a later one.
    yield
    gc.collect()


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# What the library under a backend cannot do, with the limitation named:
# (backend, test, case) -> reason, where case is the test's parameter id
# without the backend ("" for every case). Each entry marks that test as a
# strict xfail on that backend only, so test ids stay the same everywhere
# and a library that gets fixed shows up as a failing XPASS.
LIBRARY_LIMITATIONS: dict[tuple[str, str, str], str] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "backend" not in callspec.params:
            continue
        backend = str(callspec.params["backend"])
        case = "-".join(part for part in callspec.id.split("-") if part != backend)
        name = getattr(item, "originalname", item.name)
        reason = LIBRARY_LIMITATIONS.get((backend, name, "")) or LIBRARY_LIMITATIONS.get(
            (backend, name, case)
        )
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


@asynccontextmanager
async def serving(app: FastrAPI, backend: str) -> AsyncIterator[str]:
    """Run ``app`` in this process on a free loopback port; yields ``ws://host:port``."""
    async with app.run_server("127.0.0.1", 0, backend=backend) as server:
        address = server.addresses[0]
        yield f"ws://{address.host}:{address.port}"


async def http_exchange(port: int, request: str | list[bytes], tls: ssl.SSLContext | None = None) -> bytes:
    """Send one raw HTTP request to 127.0.0.1:``port`` (over TLS with ``tls``)
    and return everything the server answers until it closes. A list is sent
    piece by piece, each in a write of its own."""
    stream: anyio.abc.ByteStream
    if tls is None:
        stream = await anyio.connect_tcp("127.0.0.1", port)
    else:
        stream = await anyio.connect_tcp("127.0.0.1", port, tls=True, ssl_context=tls)
    async with stream:
        for piece in [request.encode()] if isinstance(request, str) else request:
            await stream.send(piece)
        reply = b""
        for _ in range(100):  # bounded: a short reply comes in a few reads
            try:
                reply += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    return reply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@dataclass
class ExampleServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path  # stdout and stderr go to a file: a pipe nobody reads would fill and block the server
    output: str = ""  # the log, once stopped

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send ``signum``, wait for the exit, collect the output; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self.output = self.log.read_text(errors="replace")
        return self.process.returncode


_SERVE_ARGS = re.compile(r"app\.serve\((?:host=)?\"0\.0\.0\.0\",\s*(?:port=)?8000\)")


def example_source(name: str, port: int) -> str:
    """An example's source with only its host and port substituted."""
    source = (EXAMPLES / name).read_text()
    substituted, count = _SERVE_ARGS.subn(f'app.serve("127.0.0.1", {port})', source)
    if count != 1:
        raise AssertionError(f"{name} should call app.serve(...) exactly once on 0.0.0.0:8000")
    return substituted


@contextmanager
def run_script(
    tmp_path: Path,
    name: str,
    render: Callable[[int], str],
    env: dict[str, str] | None = None,
    stop_signal: int = signal.SIGINT,
) -> Iterator[ExampleServer]:
    """Write ``render(port)`` to ``tmp_path/name`` on a free port, run it, and
    yield once it accepts connections; on exit it is stopped with ``stop_signal``.

    A free port is free only when `free_port` looked: on a machine running
    other tests something else may bind it first, and the script then exits
    with "address already in use". It is started again on another port then,
    twice at most.
    """
    for attempt in range(3):
        server = _start_script(tmp_path, name, render, env)
        try:
            wait_for_port(server.port, server.process)
            break
        except RuntimeError:  # it exited
            said = server.log.read_text(errors="replace")
            if attempt == 2 or "address already in use" not in said.lower():
                server.output = said
                raise
        except BaseException:  # still running, but not listening: stop it
            server.process.kill()
            server.process.wait()
            raise
    process = server.process
    try:
        yield server
    finally:
        if process.poll() is None:
            try:
                server.stop(stop_signal)
            except subprocess.TimeoutExpired:
                pass
        else:  # exited by itself: keep what it said
            server.output = server.log.read_text(errors="replace")


def _start_script(
    tmp_path: Path, name: str, render: Callable[[int], str], env: dict[str, str] | None
) -> ExampleServer:
    port = free_port()
    script = tmp_path / name
    script.write_text(render(port))
    log = tmp_path / f"{name}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return ExampleServer(process, port, log)


@contextmanager
def run_example(name: str, backend: str, tmp_path: Path) -> Iterator[ExampleServer]:
    """Start ``examples/<name>`` as a subprocess on ``backend``; stop it on exit."""
    render = functools.partial(example_source, name)
    with run_script(tmp_path, name, render, {"FASTRAPI_BACKEND": backend}) as server:
        yield server

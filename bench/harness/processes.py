"""Starting, pinning and stopping the harness's processes: servers, the load client, a Redis server."""

from __future__ import annotations

import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent.parent
ECHO_SERVER = BENCH / "echo_server.py"
FANOUT_SERVER = BENCH / "fanout_server.py"


class MeasurementError(Exception):
    """A server or the client failed one measurement; the run goes on."""


def raise_open_file_limit() -> None:
    # Children inherit the limit: the idle shape holds thousands of sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cores() -> tuple[int, int]:
    """The server's core and the client's: the first two this process may use."""
    usable = sorted(os.sched_getaffinity(0))
    return usable[0], usable[1] if len(usable) > 1 else usable[0]


Cores = int | frozenset[int]  # one core, or a set of them (a server with workers)


def pinned_to(core: Cores) -> Callable[[], None]:
    # Set between fork and exec, so that every thread the program starts
    # inherits it; setting it afterwards from outside would race with them.
    allowed = {core} if isinstance(core, int) else set(core)
    return lambda: os.sched_setaffinity(0, allowed)


def all_cores() -> frozenset[int]:
    """Every core this process may use: for a server whose workers must not share one core."""
    return frozenset(os.sched_getaffinity(0))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# asyncio reads a socket into a fresh 256 KiB buffer on every read. glibc
# serves an allocation that big from mmap (and the shrink and the free with
# mremap and munmap: three system calls a read) until some earlier free of a
# big block has raised its threshold, which depends on the process's history:
# the same server measured 30k or 58k messages a second from one start to the
# next. The threshold fixed for every server makes each run the same (and
# the trim threshold with it, as glibc's own adjustment does: else the heap
# shrinks and grows again, two system calls a read).
SERVER_ENVIRONMENT = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=8388608"
}


class EchoServer:
    """One echo server of bench/echo_server.py, in its own process, pinned to one core.

    ``script`` and ``path`` are the file that has the server (run as
    ``script NAME PORT *options``) and the WebSocket path of its URL.
    """

    script = ECHO_SERVER
    path = "/ws"

    def __init__(self, name: str, core: Cores, log_path: Path, options: tuple[str, ...] = ()) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_path
        with log_path.open("ab") as log:
            log.write(f"--- {name} on port {self.port}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, str(self.script), name, str(self.port), *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=pinned_to(core),
                env={**os.environ, **SERVER_ENVIRONMENT},
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return self.url_for(self.path)

    def url_for(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise MeasurementError(f"exited with {self.process.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise MeasurementError(f"not listening after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return " | ".join(line.strip() for line in tail) or "(no output)"

    def last_error(self) -> str:
        """The last line of this server's output that names an exception, else its last line."""
        marker = f"--- {self.name} on port {self.port}"  # where this server's output starts
        output = self.log_path.read_text(errors="replace").rpartition(marker)[2]
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Exit|Interrupt)\b", line)]
        return (errors or lines or ["(no output)"])[-1]

    def stop(self) -> None:
        stop(self.process)


class FanoutProcess(EchoServer):
    """One process of a broadcast server of bench/fanout_server.py."""

    script = FANOUT_SERVER
    path = "/sub"


class RedisServer:
    """A throwaway redis-server on a free port: no persistence, pinned to one core, stopped with the run."""

    def __init__(self, core: Cores, log_path: Path, executable: str = "redis-server") -> None:
        self.port = free_port()
        self.log_path = log_path
        command = [
            executable,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),  # nothing on disk: it lives as long as the run
        ]
        with log_path.open("ab") as log:
            log.write(f"--- redis-server on port {self.port}\n".encode())
            log.flush()
            try:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    preexec_fn=pinned_to(core),
                )
            except FileNotFoundError:
                raise MeasurementError(f"no {executable}: install Debian's redis-server") from None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until it answers PING (it listens a little before it serves)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MeasurementError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise MeasurementError(f"redis-server not answering after {timeout:.0f} s")

    def stop(self) -> None:
        stop(self.process)


class ClientProcess:
    """The load client: JSON lines out, and (idle mode) lines in to step it along."""

    def __init__(self, argv: list[str], core: Cores) -> None:
        self.argv = argv
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # a Go panic shows up in the error message
            preexec_fn=pinned_to(core),
        )
        self._buffer = b""
        self._noise: list[str] = []  # lines that are not JSON

    def next_event(self, timeout: float) -> dict[str, Any]:
        """The next JSON line; an {"error": ...} line, silence or an exit raise MeasurementError."""
        deadline = time.monotonic() + timeout
        stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                try:
                    event: dict[str, Any] = json.loads(line)
                except ValueError:
                    self._noise.append(line.decode(errors="replace").strip())
                    continue
                if "error" in event:
                    raise MeasurementError(f"client: {event['error']}")
                return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MeasurementError(f"client: no output within {timeout:.0f} s")
            ready, _, _ = select.select([stdout], [], [], remaining)
            if ready:
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    noise = " | ".join(self._noise[-3:])
                    raise MeasurementError(f"client exited ({self.process.wait()}) {noise}".strip())
                self._buffer += chunk

    def step(self) -> None:
        self.send_line("")

    def send_line(self, line: str) -> None:
        stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    def end_input(self) -> None:
        """Close the client's stdin: a stepped mode stops at its next step and winds down."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()

    def finish(self, timeout: float = 10.0) -> None:
        """Wait for a clean exit; kill the client if it lingers."""
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

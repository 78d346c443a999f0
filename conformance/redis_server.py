"""A real redis-server for the broker tests, on a free loopback port.

One server serves the whole test session (the ``redis_server`` fixture of
the top-level conftest.py); a test may `RedisServer.kill` it and
`RedisServer.start` it again on the same port to play an outage. Nothing is
persisted, so a restart starts empty, as after a crash.

A test of the secure paths starts one of its own with a ``password``
(``--requirepass``) and/or ``tls=True``: then ``port`` is the TLS port, the
plain one is closed, and a CA of the test's own (``ca_file``) signed the
server's certificate for 127.0.0.1, so that only a client told to trust that
CA connects.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from io import BufferedReader
from pathlib import Path

STARTUP_TIMEOUT = 10.0  # seconds for redis-server to answer PING
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port``, started and stopped by the tests."""

    def __init__(self, port: int, directory: Path, *, password: str | None = None, tls: bool = False) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(
                "redis-server is not installed; the broker tests need a real one "
                "(apt-get install redis-server; .ci/run installs it)"
            )
        self.executable = executable
        self.port = port
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.password = password
        self.ca_file: Path | None = None
        self._tls_options: list[str] = []
        if tls:
            self._tls_options = self._issue_certificates()

    def _issue_certificates(self) -> list[str]:
        # Imported here: only the TLS tests need trustme.
        import trustme

        ca = trustme.CA()
        certificate = ca.issue_cert("127.0.0.1")
        self.ca_file = self.directory / "ca.pem"
        cert_file, key_file = self.directory / "server.pem", self.directory / "server.key"
        ca.cert_pem.write_to_path(str(self.ca_file))
        certificate.cert_chain_pems[0].write_to_path(str(cert_file))
        certificate.private_key_pem.write_to_path(str(key_file))
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(cert_file),
            "--tls-key-file",
            str(key_file),
            "--tls-ca-cert-file",
            str(self.ca_file),
            # Clients show no certificate of their own: the tests check the server's.
            "--tls-auth-clients",
            "no",
        ]

    @property
    def url(self) -> str:
        scheme = "rediss" if self._tls_options else "redis"
        credentials = f":{self.password}@" if self.password is not None else ""
        return f"{scheme}://{credentials}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and return once it answers PING."""
        assert self.process is None or self.process.poll() is not None, "already running"
        log = (self.directory / "redis.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [
                    self.executable,
                    *(self._tls_options or ["--port", str(self.port)]),
                    *(["--requirepass", self.password] if self.password is not None else []),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log()}")
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"redis-server did not answer PING within {STARTUP_TIMEOUT} s")

    def kill(self) -> None:
        """SIGKILL: the clients' connections drop at once, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return (self.directory / "redis.log").read_text(errors="replace")

    def command(self, *args: str) -> str | int | list[str | int]:
        """One command over a socket of its own (inline RESP, short replies only)."""
        request = _pack(*args)
        if self.password is not None:
            request = _pack("AUTH", self.password) + request
        with socket.create_connection(("127.0.0.1", self.port), timeout=STARTUP_TIMEOUT) as plain:
            sock = plain
            if self.ca_file is not None:
                context = ssl.create_default_context(cafile=str(self.ca_file))
                sock = context.wrap_socket(plain, server_hostname="127.0.0.1")
            with sock:
                sock.sendall(request)
                reader = sock.makefile("rb")
                if self.password is not None:
                    _read_reply(reader)  # +OK, or an error raised
                return _read_reply(reader)

    def numsub(self, channel: str) -> int:
        """How many connections are subscribed to ``channel`` (PUBSUB NUMSUB)."""
        reply = self.command("PUBSUB", "NUMSUB", channel)
        assert isinstance(reply, list)
        return int(reply[1])

    def channels(self, pattern: str) -> list[str]:
        """The channels matching ``pattern`` that have a subscriber (PUBSUB CHANNELS)."""
        reply = self.command("PUBSUB", "CHANNELS", pattern)
        assert isinstance(reply, list)
        return sorted(str(channel) for channel in reply)


def _pack(*args: str) -> bytes:
    return b"".join(
        [f"*{len(args)}\r\n".encode()]
        + [f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n" for arg in args]
    )


def _read_reply(reader: BufferedReader) -> str | int | list[str | int]:
    line = reader.readline()
    if not line:
        raise ConnectionError("redis-server closed the connection")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(f"redis-server: {rest}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return ""
        data = reader.read(size + 2)
        return str(data[:-2].decode())
    if kind == b"*":
        items = []
        for _ in range(int(rest)):
            item = _read_reply(reader)
            assert not isinstance(item, list)
            items.append(item)
        return items
    raise RuntimeError(f"unexpected reply from redis-server: {line!r}")

"""Instructions per operation of echo servers, counted by callgrind.

    .venv/bin/python bench/instructions.py SERVER [SERVER ...] [--shapes rr_text_32B latency handshake]

A throughput figure on a shared machine moves by 10-20% between runs; an
instruction count repeats to within about 1%. Each server
(bench/echo_server.py) runs under ``valgrind --tool=callgrind
--instr-atstart=no``, and the load client runs each measurement against it
(bench/harness/shapes.py) with instrumentation on only over the client's
timed window: ``callgrind_control -i on`` when the client opens it, ``-i off``
when it reports, then ``-d``. The dump's total Ir over the operations the
client counted in the window is the figure: user space only, the kernel's
share of each operation is not in it. Needs valgrind; the client is built on
first use, as for bench/run.py. Dumps are kept in bench/.build/callgrind/
for callgrind_annotate.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from echo_server import SERVERS
from harness import loadgen, shapes
from harness.processes import (
    BENCH,
    ECHO_SERVER,
    SERVER_ENVIRONMENT,
    ClientProcess,
    EchoServer,
    MeasurementError,
    cores,
    free_port,
    pinned_to,
    raise_open_file_limit,
)

DUMPS = BENCH / ".build" / "callgrind"
DEFAULT_SHAPES = ["rr_text_32B", "latency", "handshake"]
# Under callgrind a server runs some 50 times slower: long windows, and
# patience for any one reply.
TIMING = shapes.Timing(warmup=3.0, duration=15.0, idle_conns=0, idle_settle=0.0)
REPLY_TIMEOUT = "60s"


class CallgrindServer(EchoServer):
    """An echo server under callgrind, instrumentation off until asked."""

    def __init__(self, name: str, core: int, log_path: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_path
        self.out = DUMPS / f"{name}.out"
        for old in DUMPS.glob(f"{name}.out*"):
            old.unlink()
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={self.out}"]
        argv += [sys.executable, str(ECHO_SERVER), name, str(self.port)]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=pinned_to(core),
                env={**os.environ, **SERVER_ENVIRONMENT},
            )

    def control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.pid)], check=True, capture_output=True)

    def dumps(self) -> set[Path]:
        return set(DUMPS.glob(f"{self.out.name}.*"))


def total_ir(dump: Path) -> int:
    totals = [line for line in dump.read_text().splitlines() if line.startswith("totals:")]
    if not totals:
        raise MeasurementError(f"no totals in {dump}")
    return int(totals[-1].split()[1])


def count(server: CallgrindServer, measurement: shapes.Measurement, client_core: int) -> tuple[int, int]:
    """Instructions over the client's timed window, and the operations it counted in it."""
    before = server.dumps()
    argv = [
        str(loadgen.BINARY),
        "-mode",
        measurement.shape,
        "-url",
        server.url,
        *measurement.args,
        "-warmup",
        f"{TIMING.warmup}s",
        "-duration",
        f"{TIMING.duration}s",
        "-timeout",
        REPLY_TIMEOUT,
    ]
    client = ClientProcess(argv, client_core)
    try:
        window = client.next_event(TIMING.warmup + 60)
        if window.get("event") != "window":
            raise MeasurementError(f"client: expected the window, got {window}")
        server.control("-i", "on")
        try:
            result = client.next_event(TIMING.duration + 60)
        finally:
            server.control("-i", "off")
    finally:
        client.finish(timeout=60)
    server.control("-d", measurement.name)
    deadline = time.monotonic() + 30
    while not (new := server.dumps() - before):
        if time.monotonic() > deadline:
            raise MeasurementError("callgrind wrote no dump")
        time.sleep(0.2)
    return sum(total_ir(dump) for dump in new), int(result["count"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("servers", nargs="+", metavar="SERVER", choices=sorted(SERVERS))
    parser.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="measurements or shapes")
    options = parser.parse_args()
    loadgen.build_client()
    raise_open_file_limit()
    DUMPS.mkdir(parents=True, exist_ok=True)
    measurements = [m for m in shapes.select(options.shapes) if m.shape != "idle"]
    server_core, client_core = cores()
    print("| server | measurement | instructions per operation | operations |")
    print("|---|---|--:|--:|")
    failed = False
    for name in options.servers:
        server = CallgrindServer(name, server_core, DUMPS / f"{name}.log")
        try:
            server.wait_listening(timeout=120)
            for measurement in measurements:
                try:
                    instructions, operations = count(server, measurement, client_core)
                except MeasurementError as error:
                    print(f"| {name} | {measurement.name} | failed: {error} | |", flush=True)
                    failed = True
                    continue
                per = instructions / operations
                print(f"| {name} | {measurement.name} | {per:,.0f} | {operations:,} |", flush=True)
        finally:
            server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

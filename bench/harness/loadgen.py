"""The compiled load client (bench/loadgen, Go): building it, and running one measurement with it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.processes import BENCH, ClientProcess, EchoServer, MeasurementError
from harness.procstat import CpuSample, cpu_percentages, rss_kib
from harness.shapes import Measurement, Timing

SOURCE = BENCH / "loadgen"
BUILD = BENCH / ".build"
BINARY = BUILD / "loadgen"
# Debian's golang-github-gorilla-websocket-dev puts gorilla/websocket here; a
# GOPATH-mode build finds it without fetching anything.
GOPATH = "/usr/share/gocode"


class ClientBuildError(Exception):
    pass


def build_client() -> Path:
    """Build the client unless the binary is newer than every source file."""
    sources = sorted(SOURCE.glob("*.go"))
    if BINARY.exists() and all(s.stat().st_mtime < BINARY.stat().st_mtime for s in sources):
        return BINARY
    BUILD.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": os.environ.get("LOADGEN_GOPATH", GOPATH),
        "GOCACHE": str(BUILD / "gocache"),
    }
    command = ["go", "build", "-o", str(BINARY), "."]
    try:
        done = subprocess.run(command, cwd=SOURCE, env=env, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise ClientBuildError(
            "no `go` command: install golang-go and golang-github-gorilla-websocket-dev"
        ) from None
    if done.returncode != 0:
        raise ClientBuildError(f"`{' '.join(command)}` failed:\n{done.stderr}")
    return BINARY


def measure(measurement: Measurement, server: EchoServer, timing: Timing, client_core: int) -> dict[str, Any]:
    """Run the client once against ``server``; its result, with the harness's own numbers added."""
    argv = [str(BINARY), "-mode", measurement.shape, "-url", server.url, *measurement.args]
    if measurement.shape == "idle":
        argv += ["-conns", str(timing.idle_conns)]
        run = _idle
    else:
        argv += ["-warmup", f"{timing.warmup}s", "-duration", f"{timing.duration}s"]
        run = _timed
    client = ClientProcess(argv, client_core)
    try:
        return run(client, server, timing)
    finally:
        client.finish()


def _timed(client: ClientProcess, server: EchoServer, timing: Timing) -> dict[str, Any]:
    patience = timing.warmup + 30  # the client gives up on a silent server after 10 s itself
    _expect(client.next_event(patience), "window")
    start = CpuSample.now(server.pid, time.monotonic())
    result = client.next_event(timing.duration + 30)
    end = CpuSample.now(server.pid, time.monotonic())
    return {**result, **cpu_percentages(start, end, result["client_cpu_s"])}


def _idle(client: ClientProcess, server: EchoServer, timing: Timing) -> dict[str, Any]:
    _expect(client.next_event(30), "warm")
    time.sleep(timing.idle_settle)
    before = rss_kib(server.pid)
    client.step()
    opened = _expect(client.next_event(120), "open")
    time.sleep(timing.idle_settle)
    after = rss_kib(server.pid)
    client.step()
    result = client.next_event(60)
    return {
        **result,
        "rss_before_kib": before,
        "rss_open_kib": after,
        "kib_per_conn": round((after - before) / opened["conns"], 2),
    }


def _expect(event: dict[str, Any], name: str) -> dict[str, Any]:
    if event.get("event") != name:
        raise MeasurementError(f"client: expected a {name!r} event, got {event}")
    return event

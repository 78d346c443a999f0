"""What a report says about the run: the machine, the toolchain, the libraries and fastrapi's commit."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from typing import Any

from harness.processes import BENCH, cores


def command_output(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return ""


def describe(packages: tuple[str, ...]) -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    repo = str(BENCH.parent)
    commit = command_output("git", "-C", repo, "rev-parse", "--short", "HEAD") or "unknown"
    if command_output("git", "-C", repo, "status", "--porcelain", "--", "fastrapi"):
        commit += " with uncommitted changes in fastrapi/"
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    gorilla = command_output("dpkg-query", "-W", "-f=${Version}", "golang-github-gorilla-websocket-dev")
    server_core, client_core = cores()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "go": command_output("go", "version"),
        "gorilla_websocket": gorilla or None,
        "versions": versions,
        "commit": commit,
        "server_core": server_core,
        "client_core": client_core,
    }

"""Echo servers side by side, loaded the way real clients load a server, by a compiled client.

    .venv/bin/python bench/run.py [--rounds 3] [--quick] [--servers ...] [--shapes ...] [--plot]

Each server (bench/echo_server.py) runs in its own process pinned to core 0;
the load client (bench/loadgen, Go, built on first use into bench/.build/)
runs pinned to core 1. In each round every server is started afresh and meets
every shape once; rounds rotate the order of the servers. The report gives
the median of the rounds per server and shape, ratios of each fastrapi backend
to its raw library and of the best backend to Starlette on uvicorn, and the
CPU that the server, the client and the rest of the machine used over each
timed window. See bench/README.md.

Exit status: 2 if the harness itself is broken (the client does not build, or
a reference server could not be measured at all); 1 if anything failed and
--strict (implied by --quick) was given; else 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from echo_server import SERVERS
from harness import loadgen, machine, shapes
from harness.processes import (
    BENCH,
    Cores,
    EchoServer,
    MeasurementError,
    all_cores,
    cores,
    raise_open_file_limit,
)
from harness.report import markdown, summarize, write_json
from harness.shapes import Measurement, Timing

# Each fastrapi backend next to its raw library, then the two references.
SERVER_ORDER = [
    "fastrapi-wsproto",
    "wsproto",
    "fastrapi-websockets",
    "websockets",
    "fastrapi-aiohttp",
    "aiohttp",
    "starlette-uvicorn",
    "picows",
]
# Only when named with --servers: app.serve(workers=2) is not an echo server
# of its own but fastrapi-aiohttp on two processes, set beside it.
EXTRA_SERVERS = ["fastrapi-aiohttp-w2"]
assert sorted(SERVER_ORDER + EXTRA_SERVERS) == sorted(SERVERS)
PACKAGES = ("fastrapi", "wsproto", "websockets", "aiohttp", "uvicorn", "starlette", "picows")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds of every server and shape (default 3; 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="one short round of everything, for CI")
    parser.add_argument(
        "--servers",
        nargs="+",
        metavar="SERVER",
        help=f"a subset of: {', '.join(SERVER_ORDER)}; or of those and {', '.join(EXTRA_SERVERS)}",
    )
    parser.add_argument(
        "--shapes", nargs="+", metavar="SHAPE", help=f"shapes ({', '.join(shapes.SHAPES)}) or measurements"
    )
    parser.add_argument("--out", type=Path, help="the JSON file; the .md and .png go beside it")
    parser.add_argument("--plot", action="store_true", help="also write a PNG bar chart")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any server failed any shape")
    parser.add_argument("--warmup", type=float, help="seconds of load before each timed window")
    parser.add_argument("--duration", type=float, help="seconds of each timed window")
    parser.add_argument("--idle-conns", type=int, help="connections the idle shape holds")
    parser.add_argument("--build-client", action="store_true", help="only build the load client")
    options = parser.parse_args()
    options.servers = _names(options.servers)
    options.shapes = _names(options.shapes)
    unknown = [server for server in options.servers or [] if server not in SERVERS]
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {', '.join(SERVER_ORDER + EXTRA_SERVERS)}")
    return options


def _names(values: list[str] | None) -> list[str] | None:
    # Both "--servers a b" and "--servers a,b".
    return None if values is None else [name for value in values for name in value.split(",") if name]


def timing_from(options: argparse.Namespace) -> Timing:
    base = shapes.QUICK if options.quick else shapes.FULL
    return Timing(
        warmup=options.warmup if options.warmup is not None else base.warmup,
        duration=options.duration if options.duration is not None else base.duration,
        idle_conns=options.idle_conns or base.idle_conns,
        idle_settle=base.idle_settle,
    )


def run_server(
    name: str, measurements: list[Measurement], timing: Timing, round_number: int, log: Path
) -> list[dict[str, Any]]:
    """Every measurement against one server; a fresh server after a failure or a crash."""
    server_core, client_core = cores()
    # Workers pinned to one core would only take turns on it: they may use
    # every core, the client's included (the report's client column shows it).
    server_cores: Cores = all_cores() if name in EXTRA_SERVERS else server_core
    records: list[dict[str, Any]] = []
    server: EchoServer | None = None
    # Idle first: its baseline is then a fresh server's, not memory that the
    # other shapes left behind for the new connections to reuse.
    measurements = sorted(measurements, key=lambda measurement: measurement.shape != "idle")
    try:
        for index, measurement in enumerate(measurements):
            record: dict[str, Any] = {"round": round_number, "server": name, "measurement": measurement.name}
            try:
                if server is None:
                    server = EchoServer(name, server_cores, log)
                    try:
                        server.wait_listening()
                    except MeasurementError as error:
                        # It will not start: the rest of this round fails the same way, at once.
                        for rest in measurements[index:]:
                            records.append(_failed(round_number, name, rest, f"did not start: {error}"))
                            report_progress(records[-1])
                        return records
                result = loadgen.measure(measurement, server, timing, client_core)
                if not server.alive():
                    raise MeasurementError(
                        f"the server exited ({server.process.returncode}): {server.log_tail()}"
                    )
                record.update(ok=True, error=None, result=result)
            except MeasurementError as error:
                detail = str(error)
                if server is not None:  # what it was left doing must not slow the next shape
                    detail += f" [server log: {server.last_error()}]"
                    server.stop()
                    server = None
                record.update(ok=False, error=detail, result=None)
            records.append(record)
            report_progress(record)
    finally:
        if server is not None:
            server.stop()
    return records


def _failed(round_number: int, server: str, measurement: Measurement, error: str) -> dict[str, Any]:
    return {
        "round": round_number,
        "server": server,
        "measurement": measurement.name,
        "ok": False,
        "error": error,
        "result": None,
    }


def report_progress(record: dict[str, Any]) -> None:
    heading = f"[round {record['round']}] {record['server']:20} {record['measurement']:15}"
    if not record["ok"]:
        print(f"{heading} FAILED: {record['error']}", flush=True)
        return
    result = record["result"]
    measurement = next(m for m in shapes.MEASUREMENTS if m.name == record["measurement"])
    numbers = ", ".join(f"{result[m.field]:,.1f} {m.unit}" for m in measurement.metrics)
    if "server_cpu_pct" in result:
        numbers += (
            f"  (CPU % server {result['server_cpu_pct']:.0f}, client {result['client_cpu_pct']:.0f}, "
            f"kernel {result['kernel_threads_pct']:.0f}, other {result['other_load_pct']:.0f})"
        )
    print(f"{heading} {numbers}", flush=True)


def describe_machine(options: argparse.Namespace, timing: Timing, rounds: int) -> dict[str, Any]:
    return {
        **machine.describe(PACKAGES),
        "quick": options.quick,
        "rounds": rounds,
        "rounds_text": "1 round" if rounds == 1 else f"median of {rounds} rounds",
        "timing": vars(timing),
    }


def stop_on_sigterm() -> None:
    # SIGTERM (make interrupted, CI timeout) unwinds like Ctrl+C, through the
    # finally blocks that stop the servers and the client.
    def raise_interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


def main() -> int:
    options = parse_arguments()
    stop_on_sigterm()
    raise_open_file_limit()
    try:
        loadgen.build_client()
    except loadgen.ClientBuildError as error:
        print(f"the load client did not build: {error}", file=sys.stderr)
        return 2
    if options.build_client:
        return 0
    known = SERVER_ORDER + EXTRA_SERVERS
    servers = [server for server in known if server in (options.servers or SERVER_ORDER)]
    try:
        measurements = shapes.select(options.shapes)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    timing = timing_from(options)
    rounds = options.rounds or (1 if options.quick else 3)
    default_out = loadgen.BUILD / "quick.json" if options.quick else BENCH / "results" / "latest.json"
    out: Path = options.out or default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    log = loadgen.BUILD / "servers.log"  # every server's output, for the errors the report quotes
    log.write_text("")
    meta = describe_machine(options, timing, rounds)

    started = time.monotonic()
    records: list[dict[str, Any]] = []
    for round_number in range(1, rounds + 1):
        shift = (round_number - 1) % len(servers)  # no server always goes first, or last
        for server in servers[shift:] + servers[:shift]:
            records += run_server(server, measurements, timing, round_number, log)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)

    summary = summarize(records, servers)
    write_json(out, meta, summary, records)
    report = markdown(meta, summary, servers)
    out.with_suffix(".md").write_text(report)
    print()
    print(report)
    if options.plot:
        from harness.plot import plot

        plot(out.with_suffix(".png"), summary, servers, f"Echo servers side by side, {meta['date']}")
    print(f"{len(records)} measurements in {meta['elapsed_s']:.0f} s; wrote {out} and its .md", flush=True)

    unmeasured = [s for s in servers if not s.startswith("fastrapi-") and not summary["values"][s]]
    if unmeasured:
        print(f"the harness is broken: no measurement of {', '.join(unmeasured)} succeeded", file=sys.stderr)
        return 2
    if summary["failures"] and (options.strict or options.quick):
        print(f"{len(summary['failures'])} measurements failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the finally blocks have stopped every process by now
        print("interrupted", file=sys.stderr)
        sys.exit(130)

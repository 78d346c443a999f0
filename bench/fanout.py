"""Broadcast fan-out side by side: fastrapi's groups on each backend, websockets' broadcast, the guide's loop.

    .venv/bin/python bench/fanout.py [--conns 1000 10000] [--rounds 5] [--quick] [--servers ...]

Each server (bench/fanout_server.py) runs pinned to core 0, the load client
(bench/loadgen, Go, its fanout mode) pinned to core 1. N subscribers connect
to the server's /sub, one publisher to its /pub; the publisher sends a 32 B
message, the server broadcasts it to all N, and the client records, per
broadcast, how long each subscriber waited for it. Two shapes:

- fan-out latency: for each subscriber count, each server started afresh
  (the order of the servers rotated each round); the time until the last
  subscriber had each broadcast (p50, p95) and the median subscriber's;
- shootout: subscribers added step by step to one server (1,000 ... 19,000)
  until fewer than 95% of a step's broadcasts reach every one within 500 ms.
  The last step, 19,000, is what the open-file limit of 20,000 leaves.

Exit status: 2 if the harness itself is broken (the client does not build, a
mode is asked for that this fastrapi lacks, or websockets' broadcast could
not be measured at all); 1 if anything failed and --strict (implied by
--quick) was given; else 0. No speed is ever asserted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from fanout_server import SERVERS, Unsupported, check_options
from harness import fanout_phases, loadgen, machine
from harness.fanout import (
    NOISY_PCT,
    REFERENCE,
    FanoutServer,
    Plan,
    Topology,
    finite,
    markdown,
    measure,
    step_stats,
    summarize,
)
from harness.processes import BENCH, Cores, MeasurementError, all_cores, cores, raise_open_file_limit
from harness.report import write_json
from run import stop_on_sigterm

# fastrapi's groups on each backend, the default first; then the reference and the guide's loop.
SERVER_ORDER = [
    "fastrapi-groups-aiohttp",
    "fastrapi-groups-websockets",
    "fastrapi-groups-wsproto",
    "websockets-broadcast",
    "fastrapi-guide-loop",
]
assert sorted(SERVER_ORDER) == sorted(SERVERS)
PACKAGES = ("fastrapi", "websockets", "aiohttp", "wsproto")
# The last just under the open-file limit of this machine (20,000) for either process.
NOISY_RETRIES = 2  # a shootout step that fails on a busy machine is measured this many times more
SHOOTOUT_STEPS = [1000, 2000, 5000, 10000, 15000, 19000]
PHASES = ("latency", "shootout", "broker", "workers", "stall")
STALL_EVERY = 100  # one subscriber in 100 stops reading
STALL_SIZE = 16 * 1024  # bytes a broadcast: a stalled member's buffers fill within a few hundred
STALL_GIVE_UP = 3  # broadcasts in a row that did not complete: the server is stuck


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--servers", nargs="+", metavar="SERVER", help=f"a subset of: {', '.join(SERVER_ORDER)}"
    )
    parser.add_argument(
        "--conns", nargs="+", type=int, help="subscriber counts of the latency shape (default 1000 10000)"
    )
    parser.add_argument("--rounds", type=int, help="rounds of the latency shape (default 5)")
    parser.add_argument(
        "--broadcasts", type=int, help="measured broadcasts per server, round and step (default 10)"
    )
    parser.add_argument(
        "--warmup-broadcasts", type=int, default=3, help="broadcasts before the measured ones (default 3)"
    )
    parser.add_argument(
        "--gap", type=float, default=0.05, help="seconds between a broadcast's end and the next"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds after which a broadcast has not reached everyone"
    )
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=PHASES,
        help="latency and shootout: one process each; broker, workers, stall: see bench/README.md "
        "(default: all; with --quick: latency and shootout)",
    )
    parser.add_argument(
        "--broker-conns",
        nargs="+",
        type=int,
        help="subscriber counts of the broker phase (default 1000 10000)",
    )
    parser.add_argument(
        "--workers-conns", nargs="+", type=int, help="subscriber counts of the workers phase (default 10000)"
    )
    parser.add_argument(
        "--phase-rounds", type=int, default=3, help="rounds of the broker and workers phases (default 3)"
    )
    parser.add_argument("--stall-conns", type=int, default=1000, help="subscribers of the stall phase")
    parser.add_argument(
        "--stall-broadcasts", type=int, default=400, help="broadcasts of the stall phase (default 400)"
    )
    parser.add_argument(
        "--stall-bound",
        type=float,
        default=5.0,
        help="seconds after which a stall broadcast did not complete",
    )
    parser.add_argument(
        "--shootout-steps", nargs="+", type=int, help="subscriber counts, growing (default 1000 ... 19000)"
    )
    parser.add_argument(
        "--shootout-broadcasts",
        type=int,
        help="measured broadcasts per shootout step (default 20: one slow broadcast in 20 still passes)",
    )
    parser.add_argument("--limit-ms", type=float, default=500.0, help="the shootout's bound on time to all")
    parser.add_argument("--share", type=float, default=0.95, help="share of a step's broadcasts within it")
    parser.add_argument("--all-steps", action="store_true", help="go on after the first step that fails")
    parser.add_argument(
        "--processes", type=int, default=1, help="server processes, each on its own port (needs --broker)"
    )
    parser.add_argument("--workers", type=int, default=1, help="app.serve(workers=N) (needs --broker)")
    parser.add_argument(
        "--broker", choices=("redis",), help="start a redis-server and pass its URL to FastrAPI(broker=...)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds, 50 subscribers")
    parser.add_argument("--strict", action="store_true", help="exit 1 if anything failed")
    parser.add_argument("--out", type=Path, help="the JSON file; the .md goes beside it")
    parser.add_argument(
        "--report", type=Path, metavar="JSON", help="only write the report again from a run's JSON file"
    )
    options = parser.parse_args()
    options.servers = [name for value in options.servers or [] for name in value.split(",") if name] or None
    unknown = [server for server in options.servers or [] if server not in SERVERS]
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {', '.join(SERVER_ORDER)}")
    if options.quick:
        options.conns = options.conns or [50]
        options.rounds = options.rounds or 1
        options.broadcasts = options.broadcasts or 5
        options.warmup_broadcasts = min(options.warmup_broadcasts, 1)
        options.gap = min(options.gap, 0.01)
        options.shootout_steps = options.shootout_steps or [20, 50]
        options.shootout_broadcasts = options.shootout_broadcasts or 5
    options.phases = options.phases or (["latency", "shootout"] if options.quick else list(PHASES))
    options.broker_conns = options.broker_conns or [1000, 10000]
    options.workers_conns = options.workers_conns or [10000]
    options.conns = options.conns or [1000, 10000]
    options.rounds = options.rounds or 5
    options.broadcasts = options.broadcasts or 10
    options.shootout_broadcasts = options.shootout_broadcasts or 20
    options.shootout_steps = sorted(set(options.shootout_steps or SHOOTOUT_STEPS))
    return options


def topology_from(options: argparse.Namespace) -> Topology:
    topology = Topology(options.processes, options.workers, options.broker)
    if (topology.processes > 1 or topology.workers > 1) and topology.broker is None:
        raise Unsupported(
            "with more than one process, a broadcast made in one reaches only that process's "
            "subscribers: give --broker redis"
        )
    if topology.broker == "redis" and shutil.which("redis-server") is None:
        raise Unsupported("--broker redis starts a redis-server: install Debian's redis-server")
    return topology


def servers_for(options: argparse.Namespace, topology: Topology) -> list[str]:
    """The servers to run: as asked, else every one that can run in this topology."""
    if options.servers:
        return [server for server in SERVER_ORDER if server in options.servers]
    if topology.single:
        return list(SERVER_ORDER)
    return [server for server in SERVER_ORDER if server.startswith("fastrapi-groups-")]


def run_once(
    name: str,
    phase: str,
    round_number: int,
    steps: list[int],
    topology: Topology,
    plan: Plan,
    options: argparse.Namespace,
    log: Path,
    config: str | None = None,
    server_cores: Cores | None = None,
) -> dict[str, Any]:
    """One server started afresh, one client run through ``steps``."""
    server_core, client_core = cores()
    record: dict[str, Any] = {
        "phase": phase,
        "round": round_number,
        "server": name,
        "config": config,
        "topology": topology.describe(),
        "steps": [],
        "error": None,
    }

    attempts: dict[int, int] = {}

    def decide(step: dict[str, Any]) -> str:
        # The shootout: on to the next step while this one passes; a failure while
        # other work took a quarter of a core or more is measured again, twice at most.
        report_step(record, step)
        if phase != "shootout":
            return "next"
        stats = step_stats([step], options.limit_ms)
        if stats["within_limit"] >= options.share or options.all_steps:
            return "next"
        attempts[step["conns"]] = attempts.get(step["conns"], 0) + 1
        if step["other_load_pct"] >= NOISY_PCT and attempts[step["conns"]] <= NOISY_RETRIES:
            return "again"
        return "stop"

    server: FanoutServer | None = None
    try:
        server = FanoutServer(name, topology, server_core if server_cores is None else server_cores, log)
        server.wait_listening()
        retries = NOISY_RETRIES * len(steps) if phase == "shootout" else 0
        record["steps"], record["error"] = measure(server, steps, plan, client_core, decide, retries)
    except MeasurementError as error:
        record["error"] = f"did not start: {error}"
    finally:
        if server is not None:
            server.stop()
    if record["error"] is not None:
        print(f"[{phase} {round_number}] {config or name:28} FAILED: {record['error']}", flush=True)
    return record


def report_step(record: dict[str, Any], step: dict[str, Any]) -> None:
    stats = step_stats([step])
    print(
        f"[{record['phase']} {record['round']}] {record['config'] or record['server']:28} "
        f"{step['conns']:>6,} subscribers: "
        f"time to all p50 {stats['all_p50_ms']:8.1f} ms, p95 {stats['all_p95_ms']:8.1f} ms, "
        f"median subscriber {stats['subscriber_median_ms']:7.1f} ms, "
        f"{stats['complete']}/{stats['broadcasts']} complete  (server CPU "
        f"{stats['server_cpu_ms_per_broadcast']:.1f} ms a broadcast, other {stats['other_load_pct']:.0f}%)",
        flush=True,
    )


def run_broker_phase(
    records: list[dict[str, Any]], plan: Plan, options: argparse.Namespace, log: Path
) -> list[float]:
    """Groups in one process against two through Redis, in each round; the bare Redis round trips."""
    server_core, _ = cores()
    configs = fanout_phases.BROKER_CONFIGS
    rtts: list[float] = []
    for round_number in range(1, options.phase_rounds + 1):
        shift = (round_number - 1) % len(configs)
        for n in options.broker_conns:
            for label, server, topology in configs[shift:] + configs[:shift]:
                records.append(
                    run_once(server, "broker", round_number, [n], topology, plan, options, log, label)
                )
        try:
            rtts += fanout_phases.redis_round_trips(server_core, log)
        except (MeasurementError, subprocess.SubprocessError, ValueError, KeyError) as error:
            print(f"[broker {round_number}] the bare Redis round trip FAILED: {error}", flush=True)
    if rtts:
        print(
            f"[broker] bare Redis PUBLISH -> message: p50 {sorted(rtts)[len(rtts) // 2]:.0f} µs", flush=True
        )
    return rtts


def run_workers_phase(
    records: list[dict[str, Any]], plan: Plan, options: argparse.Namespace, log: Path
) -> None:
    """app.serve(workers=2) against workers=1, both with Redis, on every core."""
    configs = fanout_phases.WORKER_CONFIGS
    for round_number in range(1, options.phase_rounds + 1):
        shift = (round_number - 1) % len(configs)
        for n in options.workers_conns:
            for label, server, topology in configs[shift:] + configs[:shift]:
                records.append(
                    run_once(
                        server, "workers", round_number, [n], topology, plan, options, log, label, all_cores()
                    )
                )


def run_stall_phase(
    records: list[dict[str, Any]], plan: Plan, options: argparse.Namespace, log: Path
) -> None:
    """Groups against the guide's loop with one subscriber in 100 that stops reading."""
    stall_plan = replace(
        plan,
        broadcasts=options.stall_broadcasts,
        warmup=0,
        gap=min(plan.gap, 0.02),
        timeout=options.stall_bound,
        size=STALL_SIZE,
        stall_every=STALL_EVERY,
        give_up=STALL_GIVE_UP,
    )
    for server in fanout_phases.STALL_SERVERS:
        record = run_once(server, "stall", 1, [options.stall_conns], Topology(), stall_plan, options, log)
        record["planned"] = options.stall_broadcasts
        records.append(record)


def summarize_phases(
    records: list[dict[str, Any]], meta: dict[str, Any], rtts: list[float]
) -> dict[str, Any]:
    phases = meta["phases"]
    summary: dict[str, Any] = {}
    if "broker" in phases:
        summary["broker"] = fanout_phases.summarize_broker(records, meta["broker"]["conns"], rtts)
        summary["redis_rtt_us"] = rtts  # kept whole, so that --report can summarize again
    if "workers" in phases:
        summary["workers"] = fanout_phases.summarize_workers(records, meta["workers"]["conns"])
    if "stall" in phases:
        summary["stall"] = fanout_phases.summarize_stall(records, meta["stall"]["bound_s"])
    return summary


def phases_markdown(summary: dict[str, Any]) -> str:
    lines: list[str] = []
    if "broker" in summary:
        lines += fanout_phases.broker_section(summary["broker"])
    if "workers" in summary:
        lines += fanout_phases.workers_section(summary["workers"])
    if "stall" in summary:
        lines += fanout_phases.stall_section(summary["stall"])
    return "\n".join(lines) + "\n" if lines else ""


def report_again(path: Path) -> int:
    """The summary and the .md of a recorded run, as this version of the report has them."""
    document = json.loads(path.read_text())
    meta, records = document["meta"], document["records"]
    servers = [server for server in SERVER_ORDER if any(r["server"] == server for r in records)]
    shootout = meta["shootout"]
    summary = summarize(records, servers, meta["conns"], shootout["limit_ms"], shootout["share"])
    summary.update(summarize_phases(records, meta, document.get("redis_rtt_us", [])))
    write_json(path, meta, finite(summary), records)
    path.with_suffix(".md").write_text(markdown(meta, summary, servers) + phases_markdown(summary))
    print(f"wrote {path} and its .md again")
    return 0


def main() -> int:
    options = parse_arguments()
    if options.report is not None:
        return report_again(options.report)
    stop_on_sigterm()
    raise_open_file_limit()
    try:
        topology = topology_from(options)
        servers = servers_for(options, topology)
        for server in servers:
            check_options(server, "redis://" if topology.broker else None, topology.workers)
        if {"broker", "workers"} & set(options.phases):
            if not topology.single:
                raise Unsupported(
                    "the broker and workers phases choose their own topology: "
                    "give no --processes, --workers or --broker"
                )
            if shutil.which("redis-server") is None:
                raise Unsupported(
                    "the broker and workers phases start a redis-server: install Debian's redis-server"
                )
            check_options(fanout_phases.DEFAULT_GROUPS, "redis://", 2)
    except Unsupported as error:
        print(f"cannot run this: {error}", file=sys.stderr)
        return 2
    try:
        loadgen.build_client()
    except loadgen.ClientBuildError as error:
        print(f"the load client did not build: {error}", file=sys.stderr)
        return 2
    plan = Plan(options.broadcasts, options.warmup_broadcasts, options.gap, options.timeout)
    default_out = loadgen.BUILD / "fanout-quick.json" if options.quick else BENCH / "results" / "fanout.json"
    out: Path = options.out or default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    log = loadgen.BUILD / "fanout-servers.log"
    log.write_text("")
    meta = {
        **machine.describe(PACKAGES),
        "quick": options.quick,
        "phases": options.phases,
        "topology": topology.describe(),
        "conns": options.conns,
        "rounds": options.rounds,
        "rounds_text": "1 round" if options.rounds == 1 else f"{options.rounds} rounds",
        "plan": vars(plan),
        "shootout": {
            "steps": options.shootout_steps,
            "broadcasts": options.shootout_broadcasts,
            "limit_ms": options.limit_ms,
            "share": options.share,
        },
        "broker": {"conns": options.broker_conns, "rounds": options.phase_rounds},
        "workers": {"conns": options.workers_conns, "rounds": options.phase_rounds},
        "stall": {
            "conns": options.stall_conns,
            "stall_every": STALL_EVERY,
            "size": STALL_SIZE,
            "broadcasts": options.stall_broadcasts,
            "bound_s": options.stall_bound,
            "give_up": STALL_GIVE_UP,
        },
    }

    started = time.monotonic()
    records: list[dict[str, Any]] = []
    if "latency" in options.phases:
        for round_number in range(1, options.rounds + 1):
            shift = (round_number - 1) % len(servers)  # no server always goes first, or last
            for n in options.conns:
                for server in servers[shift:] + servers[:shift]:
                    records.append(
                        run_once(server, "latency", round_number, [n], topology, plan, options, log)
                    )
    if "shootout" in options.phases:
        shootout_plan = replace(plan, broadcasts=options.shootout_broadcasts)
        for server in servers:
            steps = options.shootout_steps
            records.append(run_once(server, "shootout", 1, steps, topology, shootout_plan, options, log))
    rtts: list[float] = []
    if "broker" in options.phases:
        rtts = run_broker_phase(records, plan, options, log)
    if "workers" in options.phases:
        run_workers_phase(records, plan, options, log)
    if "stall" in options.phases:
        run_stall_phase(records, plan, options, log)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)

    summary = summarize(records, servers, options.conns, options.limit_ms, options.share)
    summary.update(summarize_phases(records, meta, rtts))
    write_json(out, meta, finite(summary), records)
    report = markdown(meta, summary, servers) + phases_markdown(summary)
    out.with_suffix(".md").write_text(report)
    print()
    print(report)
    print(f"{len(records)} runs in {meta['elapsed_s']:.0f} s; wrote {out} and its .md", flush=True)

    one_process = {"latency", "shootout"} & set(options.phases)
    if (
        one_process
        and REFERENCE in servers
        and not any(r["steps"] for r in records if r["server"] == REFERENCE)
    ):
        print(f"the harness is broken: no run of {REFERENCE} succeeded", file=sys.stderr)
        return 2
    if summary["failures"] and (options.strict or options.quick):
        print(f"{len(summary['failures'])} runs failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the finally blocks have stopped every process by now
        print("interrupted", file=sys.stderr)
        sys.exit(130)

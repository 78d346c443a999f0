"""The fan-out benchmark's phases beyond one process (bench/fanout.py): through Redis, workers, and a
stalled subscriber; their summaries and report sections.

- broker: fastrapi's groups (aiohttp) as one process without a broker, and as
  two processes sharing a redis-server, side by side in each round; the
  subscribers of the two-process server alternate between the processes and
  the publisher is on the first, so the client's per-URL times tell the
  subscribers reached directly from those reached through Redis. A bare
  redis.asyncio PUBLISH -> message round trip is measured in each round too.
- workers: ``app.serve(workers=2)`` against ``workers=1``, both with the
  Redis broker, on every core (workers pinned to one core would only take
  turns on it).
- stall: groups against the guide's loop, with one subscriber in 100 that
  stops reading (a small SO_RCVBUF, never read) and 16 KiB broadcasts: the
  time until every other subscriber had each broadcast.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.fanout import (
    CLIENT_BOUND_PCT,
    DEFAULT_GROUPS,
    GUIDE_LOOP,
    NOISY_PCT,
    Topology,
    _ms,
    _percent,
    _row,
    nearest_rank,
    step_stats,
    time_to_all_ms,
)
from harness.processes import BENCH, Cores, MeasurementError, RedisServer, pinned_to

IN_PROCESS = "one process, no broker"
TWO_PROCESSES = "2 processes + Redis"
WORKERS_1 = "workers=1 + Redis"
WORKERS_2 = "workers=2 + Redis"
# Each configuration of a phase: (label, server, topology).
BROKER_CONFIGS = [
    (IN_PROCESS, DEFAULT_GROUPS, Topology()),
    (TWO_PROCESSES, DEFAULT_GROUPS, Topology(processes=2, broker="redis")),
]
WORKER_CONFIGS = [
    (WORKERS_1, DEFAULT_GROUPS, Topology(workers=1, broker="redis")),
    (WORKERS_2, DEFAULT_GROUPS, Topology(workers=2, broker="redis")),
]
STALL_SERVERS = [DEFAULT_GROUPS, GUIDE_LOOP]
STALL_TARGET = 5.0  # groups at least 5x faster than the guide's loop with a stalled member
LATENCY_TARGET_MS = 2.0  # through Redis: at most 1-2 ms added to a broadcast on loopback
REDIS_RTT = BENCH / "harness" / "redis_rtt.py"


def redis_round_trips(core: Cores, log: Path, count: int = 300) -> list[float]:
    """The bare PUBLISH -> message round trips (µs) on a redis-server of their own, pinned as the servers."""
    redis = RedisServer(core, log)
    try:
        redis.wait_ready()
        done = subprocess.run(
            [sys.executable, str(REDIS_RTT), str(redis.port), "--count", str(count)],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=pinned_to(core),
        )
        if done.returncode != 0:
            raise MeasurementError(f"redis_rtt.py failed: {done.stderr.strip().splitlines()[-1:]}")
        times: list[float] = json.loads(done.stdout)["round_trips_us"]
        return times
    finally:
        redis.stop()


# -- summaries ------------------------------------------------------------------


def _steps(records: list[dict[str, Any]], phase: str, config: str, n: int, round_number: int | None = None):
    return [
        step
        for record in records
        if record["phase"] == phase
        and record.get("config") == config
        and (round_number is None or record["round"] == round_number)
        for step in record["steps"]
        if step["conns"] == n
    ]


def _by_url(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Subscribers on the publisher's process (URL 0) against those on the other (URL 1)."""
    broadcasts = [b for step in steps for b in step["broadcasts"] if len(b.get("by_url") or []) == 2]
    if not broadcasts:
        return None
    local = [b["by_url"][0] for b in broadcasts]
    remote = [b["by_url"][1] for b in broadcasts]
    # The hop: from the last subscriber reached directly to the first reached through Redis; the
    # publishing process writes to its own members, then publishes.
    hops = [
        r["first_us"] - lo["all_us"] for lo, r in zip(local, remote, strict=True) if lo["all_us"] is not None
    ]
    return {
        "local_median_ms": statistics.median(part["median_us"] for part in local) / 1000,
        "remote_median_ms": statistics.median(part["median_us"] for part in remote) / 1000,
        "local_all_p50_ms": nearest_rank(time_to_all_ms(local), 0.5),
        "remote_all_p50_ms": nearest_rank(time_to_all_ms(remote), 0.5),
        "remote_first_median_ms": statistics.median(part["first_us"] for part in remote) / 1000,
        "hop_median_ms": statistics.median(hops) / 1000 if hops else None,
        "hop_p95_ms": nearest_rank(hops, 0.95) / 1000 if hops else None,
    }


def summarize_broker(records: list[dict[str, Any]], conns: list[int], rtts: list[float]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    rounds = sorted({r["round"] for r in records if r["phase"] == "broker"})
    for n in conns:
        row: dict[str, Any] = {}
        for label, _, _ in BROKER_CONFIGS:
            steps = _steps(records, "broker", label, n)
            if steps:
                row[label] = step_stats(steps)
        two = _steps(records, "broker", TWO_PROCESSES, n)
        if two:
            row["by_url"] = _by_url(two)
        if IN_PROCESS in row and TWO_PROCESSES in row:
            one, both = row[IN_PROCESS], row[TWO_PROCESSES]
            row["added_all_p50_ms"] = both["all_p50_ms"] - one["all_p50_ms"]
            row["added_subscriber_median_ms"] = both["subscriber_median_ms"] - one["subscriber_median_ms"]
            # Paired within each round: the two ran minutes apart at most.
            per_round = []
            for number in rounds:
                a = _steps(records, "broker", IN_PROCESS, n, number)
                b = _steps(records, "broker", TWO_PROCESSES, n, number)
                if a and b:
                    per_round.append(step_stats(b)["all_p50_ms"] - step_stats(a)["all_p50_ms"])
            row["added_all_p50_per_round_ms"] = per_round
        rows[str(n)] = row
    rtt = None
    if rtts:
        rtt = {
            "count": len(rtts),
            "p50_ms": nearest_rank(rtts, 0.5) / 1000,
            "p95_ms": nearest_rank(rtts, 0.95) / 1000,
            "min_ms": min(rtts) / 1000,
        }
    return {"conns": rows, "redis_rtt": rtt}


def summarize_workers(records: list[dict[str, Any]], conns: list[int]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for n in conns:
        row = {}
        for label, _, _ in WORKER_CONFIGS:
            steps = _steps(records, "workers", label, n)
            if steps:
                row[label] = step_stats(steps)
        if WORKERS_1 in row and WORKERS_2 in row:
            row["speedup_p50"] = _ratio(row[WORKERS_1]["all_p50_ms"], row[WORKERS_2]["all_p50_ms"])
            row["speedup_p95"] = _ratio(row[WORKERS_1]["all_p95_ms"], row[WORKERS_2]["all_p95_ms"])
        rows[str(n)] = row
    return rows


def summarize_stall(records: list[dict[str, Any]], bound_s: float) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for record in records:
        if record["phase"] != "stall" or not record["steps"]:
            continue
        step = record["steps"][0]
        planned = record["planned"]
        times = time_to_all_ms(step["broadcasts"])
        # Broadcasts the client gave up on sending never reached anyone: they count as incomplete.
        times += [math.inf] * (planned - len(times))
        complete = [t for t in times if t < math.inf]
        first_missed = next((i for i, t in enumerate(times) if t == math.inf), None)
        servers[record["server"]] = {
            "conns": step["conns"],
            "stalled": step["stalled"],
            "planned": planned,
            "sent": len(step["broadcasts"]),
            "within_bound": len(complete),
            "gave_up": step["gave_up"],
            "first_incomplete": first_missed,
            "all_p50_ms": nearest_rank(times, 0.5),
            "all_p95_ms": nearest_rank(times, 0.95),
            "complete_p50_ms": nearest_rank(complete, 0.5) if complete else None,
            "complete_max_ms": max(complete) if complete else None,
            "server_cpu_s": step["server_cpu_s"],
            "other_load_pct": step["other_load_pct"],
        }
    ratio: dict[str, Any] = {}
    groups, loop = servers.get(DEFAULT_GROUPS), servers.get(GUIDE_LOOP)
    if groups and loop:
        for key in ("all_p50_ms", "all_p95_ms"):
            mine, theirs = groups[key], loop[key]
            if math.isinf(theirs) and not math.isinf(mine):
                # The loop's broadcast never completed within the bound: a lower limit.
                ratio[key] = {"at_least": round(bound_s * 1000 / mine, 1)}
            else:
                ratio[key] = {"value": _ratio(theirs, mine)}
    return {"servers": servers, "ratio": ratio, "bound_s": bound_s, "target": STALL_TARGET}


def _ratio(theirs: float, mine: float) -> float | None:
    if math.isinf(theirs) or math.isinf(mine) or not mine:
        return None
    return round(theirs / mine, 3)


# -- report sections ----------------------------------------------------------------


def broker_section(summary: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Through Redis: two processes against one",
        "",
        "fastrapi's groups on aiohttp as one process without a broker, and as two processes on "
        "ports of their own sharing one redis-server (started for the run on a free loopback port), "
        "side by side in each round. Every server process and the redis-server are pinned to the "
        "server's core, the client to its own: the two processes get the one core the single "
        "process has. Subscribers alternate between the two processes; the publisher is on the "
        "first, whose members get each broadcast directly, the second's through Redis.",
        "",
        _row(
            [
                "subscribers",
                "server",
                "time to all p50 (ms)",
                "p95 (ms)",
                "p50 per round (ms)",
                "median subscriber (ms)",
                "server CPU per message (µs)",
                "Redis CPU per broadcast (ms)",
                "other",
            ]
        ),
        _row(["---:", "---", *["---:"] * 7]),
    ]
    for n, row in summary["conns"].items():
        for label, _, _ in BROKER_CONFIGS:
            stats = row.get(label)
            if stats is None:
                lines.append(_row([f"{int(n):,}", label, "FAIL", *["–"] * 6]))
                continue
            lines.append(
                _row(
                    [
                        f"{int(n):,}",
                        label,
                        _ms(stats["all_p50_ms"]),
                        _ms(stats["all_p95_ms"]),
                        " / ".join(_ms(v) for v in stats["per_run_p50_ms"]),
                        _ms(stats["subscriber_median_ms"]),
                        _ms(stats["server_cpu_us_per_delivery"]),
                        _ms(stats.get("broker_cpu_ms_per_broadcast")),
                        f"{stats['other_load_pct']:.0f}%"
                        + (" N" if stats["other_load_pct"] >= NOISY_PCT else ""),
                    ]
                )
            )
    lines += [
        "",
        "What Redis adds (ms). Time to all: the two-process p50 less the one-process p50 (pooled, "
        "and paired within each round). By process, in the two-process server: the median "
        "subscriber on the publisher's process (local) and on the other (remote), and the hop, "
        "from the last local subscriber to the first remote one (median over broadcasts): the "
        "publisher's process writes to its own members, then publishes.",
        "",
        _row(
            [
                "subscribers",
                "added to time to all p50",
                "per round",
                "added to the median subscriber",
                "local median subscriber",
                "remote median subscriber",
                "hop p50",
                "hop p95",
            ]
        ),
        _row(["---:", *["---:"] * 7]),
    ]
    for n, row in summary["conns"].items():
        by_url = row.get("by_url") or {}
        lines.append(
            _row(
                [
                    f"{int(n):,}",
                    _signed(row.get("added_all_p50_ms")),
                    " / ".join(_signed(v) for v in row.get("added_all_p50_per_round_ms", [])),
                    _signed(row.get("added_subscriber_median_ms")),
                    _ms(by_url.get("local_median_ms")),
                    _ms(by_url.get("remote_median_ms")),
                    _ms(by_url.get("hop_median_ms")),
                    _ms(by_url.get("hop_p95_ms")),
                ]
            )
        )
    rtt = summary["redis_rtt"]
    if rtt:
        lines += [
            "",
            f"A bare PUBLISH -> message round trip with redis.asyncio (one process, two connections, "
            f"one message in flight, 49 B as a 32 B broadcast's envelope, pinned as the servers), "
            f"{rtt['count']} in the same run: p50 {_ms(rtt['p50_ms'])} ms, p95 {_ms(rtt['p95_ms'])} ms, "
            f"least {_ms(rtt['min_ms'])} ms. Target: at most {LATENCY_TARGET_MS:.0f} ms added.",
        ]
    return lines


def workers_section(rows: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Workers: app.serve(workers=2) against workers=1",
        "",
        "Both with the Redis broker; the server (supervisor and workers) and the redis-server may "
        "use every core, the client is pinned to the second: the workers share the cores with the "
        "client and with each other. The kernel spreads the subscribers over the workers by their "
        "address and port; the publisher is on one of them, the other worker's members get each "
        "broadcast through Redis.",
        "",
        _row(
            [
                "subscribers",
                "server",
                "time to all p50 (ms)",
                "p95 (ms)",
                "p50 per round (ms)",
                "median subscriber (ms)",
                "server CPU per message (µs)",
                "server busy",
                "client busy",
                "other",
            ]
        ),
        _row(["---:", "---", *["---:"] * 8]),
    ]
    for n, row in rows.items():
        for label, _, _ in WORKER_CONFIGS:
            stats = row.get(label)
            if stats is None:
                lines.append(_row([f"{int(n):,}", label, "FAIL", *["–"] * 7]))
                continue
            busy = stats["client_busy_pct"]
            lines.append(
                _row(
                    [
                        f"{int(n):,}",
                        label,
                        _ms(stats["all_p50_ms"]),
                        _ms(stats["all_p95_ms"]),
                        " / ".join(_ms(v) for v in stats["per_run_p50_ms"]),
                        _ms(stats["subscriber_median_ms"]),
                        _ms(stats["server_cpu_us_per_delivery"]),
                        _percent(stats["server_busy_pct"]),
                        "–" if busy is None else f"{busy:.0f}%" + (" C" if busy >= CLIENT_BOUND_PCT else ""),
                        f"{stats['other_load_pct']:.0f}%"
                        + (" N" if stats["other_load_pct"] >= NOISY_PCT else ""),
                    ]
                )
            )
        if "speedup_p50" in row:
            lines.append(
                f"\n{int(n):,} subscribers: workers=2 is {_times(row['speedup_p50'])} workers=1 by the p50 "
                f"time to all, {_times(row['speedup_p95'])} by the p95 (workers=1's time ÷ workers=2's)."
            )
    return lines


def stall_section(summary: dict[str, Any]) -> list[str]:
    bound = summary["bound_s"]
    servers = summary["servers"]
    any_server = next(iter(servers.values()), None)
    if any_server is None:
        return []
    lines = [
        "",
        "## A stalled subscriber",
        "",
        f"{any_server['conns']:,} subscribers, of which {any_server['stalled']} (one in 100) stop "
        'reading after "ready" (SO_RCVBUF 4 KiB, never read); broadcasts of 16 KiB. Time to all '
        f"the others: until every subscriber that reads had the broadcast; one that took more than "
        f"{bound:.0f} s did not complete, and after 3 such in a row the client stops (the rest count as "
        "not complete: the server is stuck, and each would only add the bound).",
        "",
        _row(
            [
                "server",
                "broadcasts",
                f"complete within {bound:.0f} s",
                "first incomplete",
                "time to all others p50 (ms)",
                "p95 (ms)",
                "slowest complete (ms)",
                "other",
            ]
        ),
        _row(["---", *["---:"] * 7]),
    ]
    for server in STALL_SERVERS:
        stats = servers.get(server)
        if stats is None:
            lines.append(_row([server, "FAIL", *["–"] * 6]))
            continue
        first = stats["first_incomplete"]
        sent = f" ({stats['sent']} sent)" if stats["sent"] < stats["planned"] else ""
        lines.append(
            _row(
                [
                    server,
                    f"{stats['planned']}{sent}",
                    f"{stats['within_bound']}",
                    "–" if first is None else f"#{first + 1}",
                    _ms(stats["all_p50_ms"]),
                    _ms(stats["all_p95_ms"]),
                    _ms(stats["complete_max_ms"]),
                    f"{stats['other_load_pct']:.0f}%"
                    + (" N" if stats["other_load_pct"] >= NOISY_PCT else ""),
                ]
            )
        )
    ratio = summary["ratio"]
    if ratio:
        parts = []
        for key, name in (("all_p50_ms", "p50"), ("all_p95_ms", "p95")):
            value = ratio[key]
            if "at_least" in value:
                parts.append(f"{name}: more than {value['at_least']:.0f}× (the loop's did not complete)")
            else:
                parts.append(f"{name}: {_times(value['value'])}")
        lines += [
            "",
            f"Groups against the guide's loop, by time to all the others (the loop's ÷ groups'): "
            f"{'; '.join(parts)}. Target: at least {summary['target']:.0f}×.",
        ]
    return lines


def _signed(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if abs(value) < 10 else f"{value:+,.1f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"

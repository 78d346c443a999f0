"""The broadcast fan-out benchmark (bench/fanout.py): servers as one or more processes, a run of the
client's fanout mode against one, and the summary and report of all runs."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.loadgen import BINARY
from harness.processes import ClientProcess, Cores, FanoutProcess, MeasurementError, RedisServer
from harness.procstat import (
    CpuSample,
    MachineCpu,
    cpu_percentages,
    kernel_threads_cpu_seconds,
    tree_cpu_seconds,
    tree_cpu_times,
)

REFERENCE = "websockets-broadcast"
GUIDE_LOOP = "fastrapi-guide-loop"
DEFAULT_GROUPS = "fastrapi-groups-aiohttp"  # fastrapi's default backend
GROUPS_TARGET = 0.9  # fastrapi's groups: at least 0.9x websockets' broadcast (time to all <= 1.11x)
GUIDE_TARGET = 5.0  # fastrapi's groups: at least 5x faster than the guide's loop
CLIENT_BOUND_PCT = 90
NOISY_PCT = 25


@dataclass(frozen=True)
class Topology:
    """How one server runs: ``processes`` on ports of their own, each with ``workers``, and a broker.

    Subscribers are spread over the processes in turn, the publisher is on
    the first: with more than one process (or worker), only a broker can
    carry a broadcast to the others' subscribers.
    """

    processes: int = 1
    workers: int = 1
    broker: str | None = None  # "redis": a redis-server started for the run

    @property
    def single(self) -> bool:
        return self.processes == 1 and self.workers == 1 and self.broker is None

    def describe(self) -> str:
        if self.single:
            return "one process"
        parts = [f"{self.processes} processes" if self.processes > 1 else "one process"]
        if self.workers > 1:
            parts.append(f"{self.workers} workers each")
        if self.broker:
            parts.append(f"{self.broker} broker")
        return ", ".join(parts)


@dataclass(frozen=True)
class Plan:
    """What each step of a client run does."""

    broadcasts: int  # measured broadcasts per step
    warmup: int  # broadcasts before them, reported apart
    gap: float  # seconds between one broadcast's last delivery and the next
    timeout: float  # seconds a broadcast may take before it counts as not reaching everyone
    size: int = 32  # bytes of each broadcast message
    stall_every: int = 0  # one subscriber in this many stops reading after "ready" (0: none)
    give_up: int = 0  # a step ends after this many broadcasts in a row did not complete (0: never)


class FanoutServer:
    """One server of bench/fanout_server.py as ``topology`` says, every process pinned to ``core``."""

    def __init__(self, name: str, topology: Topology, core: Cores, log: Path) -> None:
        self.name = name
        self.redis: RedisServer | None = None
        self.processes: list[FanoutProcess] = []
        try:
            options: list[str] = []
            if topology.broker == "redis":
                self.redis = RedisServer(core, log)
                self.redis.wait_ready()
                options += ["--broker", self.redis.url]
            elif topology.broker is not None:
                raise MeasurementError(f"no such broker {topology.broker!r}; known: redis")
            if topology.workers > 1:
                options += ["--workers", str(topology.workers)]
            for _ in range(topology.processes):
                self.processes.append(FanoutProcess(name, core, log, tuple(options)))
        except BaseException:
            self.stop()
            raise

    @property
    def sub_urls(self) -> str:
        return ",".join(process.url_for("/sub") for process in self.processes)

    @property
    def pub_url(self) -> str:
        return self.processes[0].url_for("/pub")

    def wait_listening(self) -> None:
        for process in self.processes:
            process.wait_listening()

    def alive(self) -> bool:
        return all(process.alive() for process in self.processes)

    def cpu_times(self) -> tuple[float, float]:
        """The server's user and system CPU time so far: every process and its workers; not the broker's."""
        return tree_cpu_times([process.pid for process in self.processes])

    def broker_cpu_seconds(self) -> float:
        return tree_cpu_seconds([self.redis.pid]) if self.redis is not None else 0.0

    def last_error(self) -> str:
        return " / ".join(process.last_error() for process in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        if self.redis is not None:
            self.redis.stop()


Decide = Callable[[dict[str, Any]], str]  # a step's record -> "next", "again" or "stop"


def measure(
    server: FanoutServer,
    steps: list[int],
    plan: Plan,
    client_core: int,
    decide: Decide = lambda step: "next",
    retries: int = 0,
) -> tuple[list[dict[str, Any]], str | None]:
    """One client run through ``steps`` (subscriber counts); each step's record, and the error if any.

    After each step, ``decide(record)`` says whether to add the next step's
    subscribers and measure again ("next"), to measure the same step again
    ("again", at most ``retries`` times in the run: the record says
    ``"retried": True`` and stays in the list), or to stop. An error ends the
    run but keeps the steps measured before it.
    """
    argv = [
        str(BINARY),
        *("-mode", "fanout", "-sub", server.sub_urls, "-pub", server.pub_url),
        *("-steps", ",".join(map(str, steps)), "-size", str(plan.size)),
        *("-broadcasts", str(plan.broadcasts), "-warmup-broadcasts", str(plan.warmup)),
        *("-gap", f"{plan.gap}s", "-timeout", f"{plan.timeout}s", "-retries", str(retries)),
        *("-stall-every", str(plan.stall_every), "-give-up", str(plan.give_up)),
    ]
    client = ClientProcess(argv, client_core)
    records: list[dict[str, Any]] = []
    index = 0
    try:
        while True:
            conns = steps[index]
            # Opening waits on the server's handshakes: a few thousand a second at worst.
            opened = _expect(client.next_event(30 + conns / 100), "open")
            start = _sample(server)
            client.step()
            patience = (plan.broadcasts + plan.warmup) * (plan.timeout + plan.gap + 1) + 30
            step = _expect(client.next_event(patience), "step")
            end = _sample(server)
            if not server.alive():
                raise MeasurementError(f"the server exited: {server.last_error()}")
            record = _record(conns, opened, step, start, end)
            records.append(record)
            decision = decide(record)
            if decision == "again" and retries > 0:
                retries -= 1
                record["retried"] = True
                client.send_line("again")
                continue
            if decision == "stop" or index == len(steps) - 1:
                break
            client.step()
            index += 1
        client.end_input()
        client.next_event(30 + steps[-1] / 100)  # closed: every closing handshake went through
        return records, None
    except MeasurementError as error:
        return records, f"{error} [server log: {server.last_error()}]"
    finally:
        client.finish()


@dataclass(frozen=True)
class _Sample:
    cpu: CpuSample
    server_system: float
    broker: float


def _sample(server: FanoutServer) -> _Sample:
    user, system = server.cpu_times()
    cpu = CpuSample(time.monotonic(), user + system, kernel_threads_cpu_seconds(), MachineCpu.now())
    return _Sample(cpu, system, server.broker_cpu_seconds())


def _record(
    conns: int, opened: dict[str, Any], step: dict[str, Any], start: _Sample, end: _Sample
) -> dict[str, Any]:
    broadcasts = step["broadcasts"]
    return {
        "conns": conns,
        "stalled": step.get("stalled", 0),
        "gave_up": step.get("gave_up", False),
        "open_s": opened["open_s"],
        "elapsed_s": step["elapsed_s"],
        "broadcasts": [b for b in broadcasts if not b["warmup"]],
        "warmup": [b for b in broadcasts if b["warmup"]],
        "server_cpu_s": round(end.cpu.server - start.cpu.server, 3),
        # Of which in the kernel: the system calls (a send per subscriber) and what they do.
        "server_system_s": round(end.server_system - start.server_system, 3),
        "broker_cpu_s": round(end.broker - start.broker, 3),
        "client_cpu_s": round(step["client_cpu_s"], 3),
        # Over the whole step, the gaps between broadcasts included: "other" tells a busy machine.
        **cpu_percentages(start.cpu, end.cpu, step["client_cpu_s"]),
    }


def _expect(event: dict[str, Any], name: str) -> dict[str, Any]:
    if event.get("event") != name:
        raise MeasurementError(f"client: expected a {name!r} event, got {event}")
    return event


# -- statistics ---------------------------------------------------------------


def nearest_rank(values: list[float], q: float) -> float:
    """The smallest value with at least ``q`` of ``values`` at or below it (p95 of 30: the 29th)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def time_to_all_ms(broadcasts: list[dict[str, Any]]) -> list[float]:
    """Each broadcast's time until the last subscriber had it; infinite if one never did."""
    return [math.inf if b["all_us"] is None else b["all_us"] / 1000 for b in broadcasts]


def step_stats(steps: list[dict[str, Any]], limit_ms: float | None = None) -> dict[str, Any]:
    """The numbers of one or more runs of the same server at the same subscriber count, pooled."""
    broadcasts = [b for step in steps for b in step["broadcasts"]]
    every = broadcasts + [b for step in steps for b in step["warmup"]]
    times = time_to_all_ms(broadcasts)
    complete = [b for b in broadcasts if b["all_us"] is not None]
    deliveries = sum(b["delivered"] for b in every)
    server_cpu = sum(step["server_cpu_s"] for step in steps)
    busy = sum(b["all_us"] for b in complete) / 1e6
    # Every broadcast's time to all, the warm-up's too: the server's CPU is read over them all.
    in_flight = sum(b["all_us"] for b in every if b["all_us"] is not None) / 1e6
    stats: dict[str, Any] = {
        "conns": steps[0]["conns"],
        "runs": len(steps),
        "broadcasts": len(broadcasts),
        "complete": len(complete),
        "all_p50_ms": nearest_rank(times, 0.5),
        "all_p95_ms": nearest_rank(times, 0.95),
        "all_min_ms": min(times),
        "all_max_ms": max(times),
        # Each broadcast's median subscriber, then the median of those.
        "subscriber_median_ms": statistics.median(b["median_us"] for b in broadcasts) / 1000,
        "first_median_ms": statistics.median(b["first_us"] for b in broadcasts) / 1000,
        "server_cpu_ms_per_broadcast": 1000 * server_cpu / len(every),
        "broker_cpu_ms_per_broadcast": 1000
        * sum(step.get("broker_cpu_s", 0.0) for step in steps)
        / len(every),
        "server_cpu_us_per_delivery": 1e6 * server_cpu / deliveries if deliveries else None,
        "server_system_us_per_delivery": (
            1e6 * sum(step.get("server_system_s", 0.0) for step in steps) / deliveries if deliveries else None
        ),
        "client_cpu_ms_per_broadcast": 1000 * sum(b["client_cpu_s"] for b in broadcasts) / len(broadcasts),
        # The server's CPU over the broadcasts' time to all: near 100, the server was the limit
        # (it idles in the gaps between broadcasts; an incomplete broadcast makes this a floor).
        "server_busy_pct": 100 * server_cpu / in_flight if in_flight else None,
        # The client's CPU while broadcasts were in flight, over their time to all: near 100,
        # the client may have been the limit.
        "client_busy_pct": 100 * sum(b["client_cpu_s"] for b in complete) / busy if busy else None,
        "other_load_pct": statistics.median(step["other_load_pct"] for step in steps),
        "per_run_p50_ms": [nearest_rank(time_to_all_ms(step["broadcasts"]), 0.5) for step in steps],
    }
    if limit_ms is not None:
        within = sum(1 for t in times if t <= limit_ms)
        stats["within_limit"] = within / len(times)
    return stats


def summarize(
    records: list[dict[str, Any]], servers: list[str], conns: list[int], limit_ms: float, share: float
) -> dict[str, Any]:
    latency: dict[str, dict[str, Any]] = {server: {} for server in servers}
    for server in servers:
        for n in conns:
            steps = [
                step
                for record in records
                if record["phase"] == "latency" and record["server"] == server
                for step in record["steps"]
                if step["conns"] == n
            ]
            if steps:
                latency[server][str(n)] = step_stats(steps)
    shootout: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["phase"] != "shootout":
            continue
        # A step measured again on a noisy machine counts by its last measurement.
        rows = [step_stats([step], limit_ms) for step in record["steps"] if not step.get("retried")]
        retried: dict[int, int] = {}
        for step in record["steps"]:
            if step.get("retried"):
                retried[step["conns"]] = retried.get(step["conns"], 0) + 1
        for row in rows:
            row["retries"] = retried.get(row["conns"], 0)
        passed = [row["conns"] for row in rows if row["within_limit"] >= share]
        first_failed = next((row["conns"] for row in rows if row["within_limit"] < share), None)
        largest = rows[-1] if rows else None
        projected = None
        if first_failed is None and largest is not None and 0 < largest["all_p95_ms"] < math.inf:
            projected = int(round(largest["conns"] * limit_ms / largest["all_p95_ms"], -2))
        shootout[record["server"]] = {
            "steps": rows,
            "most_conns": max(passed) if passed else None,
            "projected_conns": projected,
            "first_failed": first_failed,
            "error": record["error"],
        }
    failures = [
        {key: record[key] for key in ("phase", "server", "round", "error")}
        for record in records
        if record["error"] is not None
    ]
    return {
        "latency": latency,
        "ratios": ratios(records, servers, conns),
        "shootout": shootout,
        "failures": failures,
    }


def ratios(records: list[dict[str, Any]], servers: list[str], conns: list[int]) -> list[dict[str, Any]]:
    """How many times faster a server is than another: the other's time to all ÷ its own.

    On the pooled p50 and p95, and on each round's p50 (the servers of one
    round ran minutes apart at most). Every fastrapi server against
    websockets' broadcast, and fastrapi's default groups against the guide's loop.
    """
    pairs: list[tuple[str, str, float | None]] = [
        (server, REFERENCE, GROUPS_TARGET if server.startswith("fastrapi-groups-") else None)
        for server in servers
        if server.startswith("fastrapi-")
    ]
    pairs.append((DEFAULT_GROUPS, GUIDE_LOOP, GUIDE_TARGET))
    rounds = sorted({record["round"] for record in records if record["phase"] == "latency"})
    rows = []
    for n in conns:
        for subject, against, target in pairs:
            if subject not in servers or against not in servers:
                continue
            mine, theirs = _pooled(records, subject, n), _pooled(records, against, n)
            if not mine or not theirs:
                continue
            row: dict[str, Any] = {"conns": n, "subject": subject, "against": against, "target": target}
            for key, q in (("p50", 0.5), ("p95", 0.95)):
                row[key] = _divide(nearest_rank(theirs, q), nearest_rank(mine, q))
            # The same on the server's CPU per message written, which the machine's other load
            # hardly moves.
            my_cpu, their_cpu = _cpu_per_message(records, subject, n), _cpu_per_message(records, against, n)
            row["cpu"] = None if my_cpu is None or their_cpu is None else _divide(their_cpu, my_cpu)
            per_round = []
            for number in rounds:
                mine, theirs = _pooled(records, subject, n, number), _pooled(records, against, n, number)
                if mine and theirs:
                    per_round.append(_divide(nearest_rank(theirs, 0.5), nearest_rank(mine, 0.5)))
            row["per_round_p50"] = per_round
            rows.append(row)
    return rows


def _cpu_per_message(records: list[dict[str, Any]], server: str, n: int) -> float | None:
    steps = [
        step
        for record in records
        if record["phase"] == "latency" and record["server"] == server
        for step in record["steps"]
        if step["conns"] == n
    ]
    return step_stats(steps)["server_cpu_us_per_delivery"] if steps else None


def _pooled(
    records: list[dict[str, Any]], server: str, n: int, round_number: int | None = None
) -> list[float]:
    return [
        t
        for record in records
        if record["phase"] == "latency"
        and record["server"] == server
        and (round_number is None or record["round"] == round_number)
        for step in record["steps"]
        if step["conns"] == n
        for t in time_to_all_ms(step["broadcasts"])
    ]


def _divide(numerator: float, denominator: float) -> float | None:
    if math.isinf(numerator) and math.isinf(denominator):
        return None
    if math.isinf(denominator):
        return 0.0
    return round(numerator / denominator, 3) if denominator else None


def finite(value: Any) -> Any:
    """``value`` with every infinite time (a broadcast that never reached everyone) as None, for JSON."""
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


# -- the report -----------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "never"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}%"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(meta: dict[str, Any], summary: dict[str, Any], servers: list[str]) -> str:
    plan = meta["plan"]
    lines = [
        "# Broadcast fan-out side by side",
        "",
        f"{meta['date']}; {meta['cpu']}, {meta['cores']} cores; server on core {meta['server_core']}, "
        f"client on core {meta['client_core']}; Python {meta['python']}; fastrapi at {meta['commit']}; "
        f"servers as {meta['topology']}. {meta['rounds_text']} per subscriber count, the order of the "
        f"servers rotated each round; {plan['broadcasts']} measured broadcasts of {plan['size']} B "
        f"per server and round, after {plan['warmup']} not counted, {plan['gap'] * 1000:.0f} ms apart.",
    ]
    if "latency" in meta["phases"]:
        lines += _latency_section(summary, servers, meta["conns"])
    if summary["ratios"]:
        lines += _ratio_section(summary)
    if summary["shootout"]:
        lines += _shootout_section(summary, servers, meta)
    if summary["failures"]:
        lines += ["", "## Failures", ""]
        for failure in summary["failures"]:
            lines.append(
                f"- {failure['server']}, {failure['phase']} (round {failure['round']}): {failure['error']}"
            )
    return "\n".join(lines) + "\n"


def _latency_section(summary: dict[str, Any], servers: list[str], conns: list[int]) -> list[str]:
    lines = [
        "",
        "## Fan-out latency",
        "",
        "Time from the publisher's send until the last subscriber had the message (time to all), "
        "pooled over every round's broadcasts: p50 and p95 (nearest rank); the median subscriber's "
        "time (median over broadcasts); the server's CPU per message written (and the part of it "
        "spent in the kernel: system calls); the server's and the "
        "client's CPU while broadcasts were in flight, as a share of their time to all: the server "
        f"near 100% was the limit, the client at {CLIENT_BOUND_PCT}% or more (C) may have been; "
        "other load over "
        f"the runs (N: {NOISY_PCT}% or more of a core, a noisy machine).",
        "",
        _row(
            [
                "server",
                "subscribers",
                "time to all p50 (ms)",
                "p95 (ms)",
                "p50 per round (ms)",
                "median subscriber (ms)",
                "server CPU per message (µs; in the kernel)",
                "server busy",
                "client busy",
                "other",
            ]
        ),
        _row(["---", *["---:"] * 9]),
    ]
    for n in conns:
        for server in servers:
            stats = summary["latency"][server].get(str(n))
            if stats is None:
                lines.append(_row([server, f"{n:,}", "FAIL", *["–"] * 7]))
                continue
            incomplete = stats["broadcasts"] - stats["complete"]
            p95 = _ms(stats["all_p95_ms"]) + (f" ({incomplete} incomplete)" if incomplete else "")
            busy = stats["client_busy_pct"]
            lines.append(
                _row(
                    [
                        server,
                        f"{n:,}",
                        _ms(stats["all_p50_ms"]),
                        p95,
                        " / ".join(_ms(value) for value in stats["per_run_p50_ms"]),
                        _ms(stats["subscriber_median_ms"]),
                        f"{_ms(stats['server_cpu_us_per_delivery'])} "
                        f"({_ms(stats['server_system_us_per_delivery'])})",
                        _percent(stats["server_busy_pct"]),
                        "–" if busy is None else f"{busy:.0f}%" + (" C" if busy >= CLIENT_BOUND_PCT else ""),
                        f"{stats['other_load_pct']:.0f}%"
                        + (" N" if stats["other_load_pct"] >= NOISY_PCT else ""),
                    ]
                )
            )
    return lines


def _ratio_section(summary: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Ratios",
        "",
        "How many times faster the server is than the one it is set against, by time to all "
        "(the other's time ÷ its own: above 1.00× it is faster); per round: the ratio of that "
        f"round's p50s; CPU: the same on the server's CPU per message. Targets (met: on both p50 "
        f"and p95): fastrapi's groups at least {GROUPS_TARGET}× websockets' broadcast, and at least "
        f"{GUIDE_TARGET:.0f}× the guide's loop.",
        "",
        _row(["subscribers", "server", "against", "p50", "p95", "p50 per round", "CPU", "target", "met"]),
        _row(["---:", "---", "---", "---:", "---:", "---:", "---:", "---:", "---"]),
    ]
    for row in summary["ratios"]:
        target = row["target"]
        met = "–"
        if target is not None and row["p50"] is not None and row["p95"] is not None:
            met = "yes" if min(row["p50"], row["p95"]) >= target else "no"
        lines.append(
            _row(
                [
                    f"{row['conns']:,}",
                    row["subject"],
                    row["against"],
                    _times(row["p50"]),
                    _times(row["p95"]),
                    " / ".join(_times(value) for value in row["per_round_p50"]),
                    _times(row["cpu"]),
                    "–" if target is None else f"≥ {target}×",
                    met,
                ]
            )
        )
    return lines


def _shootout_section(summary: dict[str, Any], servers: list[str], meta: dict[str, Any]) -> list[str]:
    limit, share = meta["shootout"]["limit_ms"], meta["shootout"]["share"]
    steps = meta["shootout"]["steps"]
    lines = [
        "",
        "## Shootout",
        "",
        f"Subscribers added step by step to one server; at each step "
        f"{meta['shootout'].get('broadcasts', meta['plan']['broadcasts'])} "
        f"broadcasts. A step passes when {share:.0%} of its broadcasts reach every subscriber within "
        f"{limit:.0f} ms. Cells: p95 time to all (ms) and the share within {limit:.0f} ms; the steps "
        f"stop at the first that fails. A step that fails while other load is {NOISY_PCT}% of a core "
        "or more is measured again, twice at most (the JSON keeps every measurement). Projected: "
        "where the p95 of the largest step measured, "
        f"scaled in proportion to the subscribers, would reach {limit:.0f} ms (time to all grows "
        "about linearly with them); a guide where every step passed, not a measurement.",
        "",
        _row(["server", *(f"{n:,}" for n in steps), f"most within {limit:.0f} ms", "projected"]),
        _row(["---", *["---:"] * (len(steps) + 2)]),
    ]
    for server in servers:
        result = summary["shootout"].get(server)
        if result is None:
            continue
        by_conns = {row["conns"]: row for row in result["steps"]}
        cells = [server]
        for n in steps:
            row = by_conns.get(n)
            if row is None:
                cells.append("–")
                continue
            again = f", measured {row['retries'] + 1} times" if row["retries"] else ""
            cells.append(f"{_ms(row['all_p95_ms'])} ({row['within_limit']:.0%}{again})")
        most = result["most_conns"]
        if most is None:
            verdict = f"fewer than {steps[0]:,}"
        elif result["first_failed"] is None and most == steps[-1] and result["error"] is None:
            verdict = f"{most:,} or more"
        else:
            verdict = f"{most:,}"
        if result["error"] is not None:
            verdict += " (stopped by an error)"
        projected = result.get("projected_conns")
        lines.append(_row([*cells, verdict, "–" if projected is None else f"~{projected:,}"]))
    return lines

"""From the measurements of every round to medians, ratios, a markdown report and a JSON file."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from harness.shapes import MEASUREMENTS, METRICS, Metric

STARLETTE = "starlette-uvicorn"
# The first four make the cells of the report's CPU table.
CPU_FIELDS = (
    "server_cpu_pct",
    "client_cpu_pct",
    "kernel_threads_pct",
    "other_load_pct",
    "steal_pct",
    "interrupts_pct",
)
CLIENT_BOUND_PCT = 90  # the client is as busy as its core allows: the server was not the limit
NOISY_PCT = 25  # this much of a core went to other work: the machine was not quiet


def fastrapi_pairs(servers: list[str]) -> list[tuple[str, str]]:
    """(fastrapi-X, X) for each backend X whose raw library was measured too."""
    return [
        (server, server.removeprefix("fastrapi-"))
        for server in servers
        if server.startswith("fastrapi-") and server.removeprefix("fastrapi-") in servers
    ]


def summarize(records: list[dict[str, Any]], servers: list[str]) -> dict[str, Any]:
    """Median per server per metric (and per measurement for the CPU columns), ratios, failures."""
    values: dict[str, dict[str, float]] = {server: {} for server in servers}
    cpu: dict[str, dict[str, dict[str, float]]] = {server: {} for server in servers}
    by_measurement = {measurement.name: measurement for measurement in MEASUREMENTS}
    for server in servers:
        for name, measurement in by_measurement.items():
            results = [
                r["result"] for r in records if r["server"] == server and r["measurement"] == name and r["ok"]
            ]
            if not results:
                continue
            for metric in measurement.metrics:
                values[server][metric.key] = statistics.median(result[metric.field] for result in results)
            if "server_cpu_pct" in results[0]:
                cpu[server][name] = {
                    field: statistics.median(result[field] for result in results) for field in CPU_FIELDS
                }
    failures = [
        {key: record[key] for key in ("server", "measurement", "round", "error")}
        for record in records
        if not record["ok"]
    ]
    return {"values": values, "cpu": cpu, "ratios": ratios(values, servers), "failures": failures}


def ratios(values: dict[str, dict[str, float]], servers: list[str]) -> dict[str, dict[str, Any]]:
    """fastrapi ÷ its raw library, and the best fastrapi backend ÷ Starlette on uvicorn, per metric."""
    table: dict[str, dict[str, Any]] = {}
    for fastrapi, raw in fastrapi_pairs(servers):
        table[f"{fastrapi} / {raw}"] = {
            metric.key: _ratio(values[fastrapi], values[raw], metric.key) for metric in METRICS
        }
    backends = [server for server in servers if server.startswith("fastrapi-")]
    if STARLETTE in servers and backends:
        row: dict[str, Any] = {}
        for metric in METRICS:
            measured = [b for b in backends if metric.key in values[b]]
            if not measured:
                row[metric.key] = None
                continue
            pick = max if metric.higher_is_better else min
            best = pick(measured, key=lambda backend: values[backend][metric.key])
            ratio = _ratio(values[best], values[STARLETTE], metric.key)
            row[metric.key] = None if ratio is None else {"ratio": ratio, "server": best}
        table[f"best fastrapi / {STARLETTE}"] = row
    return table


def _ratio(numerator: dict[str, float], denominator: dict[str, float], key: str) -> float | None:
    if key not in numerator or not denominator.get(key):
        return None
    return round(numerator[key] / denominator[key], 3)


def write_json(
    path: Path, meta: dict[str, Any], summary: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, **summary, "records": records}
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def _number(value: float, metric: Metric) -> str:
    return f"{value:.1f}" if metric.unit == "KiB/conn" else f"{value:,.0f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(meta: dict[str, Any], summary: dict[str, Any], servers: list[str]) -> str:
    values, cpu = summary["values"], summary["cpu"]
    failed = {(f["server"], f["measurement"]) for f in summary["failures"]}
    metric_measurement = {m.key: ms.name for ms in MEASUREMENTS for m in ms.metrics}
    lines = [
        "# Echo servers side by side",
        "",
        f"{meta['date']}; {meta['cpu']}, {meta['cores']} cores; server on core {meta['server_core']}, "
        f"client on core {meta['client_core']}; {meta['rounds_text']}; "
        f"window {meta['timing']['duration']} s after {meta['timing']['warmup']} s of warm-up; "
        f"{meta['timing']['idle_conns']:,} idle connections; fastrapi at {meta['commit']}.",
        "",
        "## Results",
        "",
        "Higher is better, except for latency and idle memory. FAIL: failed in every round (see Failures).",
        "",
        _row(["server", *(f"{m.label} ({m.unit})" for m in METRICS)]),
        _row(["---"] + ["---:"] * len(METRICS)),
    ]
    for server in servers:
        cells = [server]
        for metric in METRICS:
            if metric.key in values[server]:
                cells.append(_number(values[server][metric.key], metric))
            else:
                cells.append("FAIL" if (server, metric_measurement[metric.key]) in failed else "–")
        lines.append(_row(cells))
    if summary["ratios"]:
        lines += [
            "",
            "## Ratios",
            "",
            "fastrapi ÷ reference: above 1.00× is better for throughput, below 1.00× for latency and memory.",
            "",
            _row(["comparison", *(m.label for m in METRICS)]),
            _row(["---"] + ["---:"] * len(METRICS)),
        ]
        for name, row in summary["ratios"].items():
            cells = [name]
            for metric in METRICS:
                cell = row.get(metric.key)
                if cell is None:
                    cells.append("–")
                elif isinstance(cell, dict):
                    cells.append(f"{cell['ratio']:.2f}× ({cell['server'].removeprefix('fastrapi-')})")
                else:
                    cells.append(f"{cell:.2f}×")
            lines.append(_row(cells))
    timed = [m for m in MEASUREMENTS if m.shape != "idle"]
    lines += [
        "",
        "## CPU over the timed windows",
        "",
        "server / client / kernel threads / other, in per cent of one core (medians). "
        f"C: the client used {CLIENT_BOUND_PCT}% or more of its core, so it may have been the limit; "
        f"N: other load of {NOISY_PCT}% or more, a noisy machine.",
        "",
        _row(["server", *(m.name for m in timed)]),
        _row(["---"] + ["---:"] * len(timed)),
    ]
    for server in servers:
        cells = [server]
        for measurement in timed:
            shares = cpu[server].get(measurement.name)
            if shares is None:
                cells.append("–")
                continue
            flags = ("C" if shares["client_cpu_pct"] >= CLIENT_BOUND_PCT else "") + (
                "N" if shares["other_load_pct"] >= NOISY_PCT else ""
            )
            cell = "/".join(f"{shares[field]:.0f}" for field in CPU_FIELDS[:4])
            cells.append(f"{cell} {flags}".strip())
        lines.append(_row(cells))
    if summary["failures"]:
        lines += ["", "## Failures", ""]
        rounds: dict[tuple[str, str, str], list[str]] = {}  # the same failure in several rounds: one line
        for failure in summary["failures"]:
            key = (failure["server"], failure["measurement"], failure["error"])
            rounds.setdefault(key, []).append(str(failure["round"]))
        for (server, measurement, error), numbers in rounds.items():
            lines.append(f"- {server}, {measurement} (round {', '.join(numbers)}): {error}")
    return "\n".join(lines) + "\n"

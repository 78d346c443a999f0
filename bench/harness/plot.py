"""A PNG bar chart of the results: one panel per metric, one bar per server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.shapes import METRICS


def _colour(server: str) -> str:
    if server.startswith("fastrapi-"):
        return "tab:blue"
    return {"starlette-uvicorn": "tab:orange", "picows": "tab:green"}.get(server, "tab:gray")


def plot(path: Path, summary: dict[str, Any], servers: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    columns = 3
    rows = -(-len(METRICS) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 0.35 * len(servers) * rows + 1.5 * rows))
    for axis, metric in zip(axes.flat, METRICS, strict=False):
        values = [summary["values"][server].get(metric.key, 0.0) for server in servers]
        axis.barh(servers, values, color=[_colour(server) for server in servers])
        axis.invert_yaxis()  # the first server on top, as in the table
        better = "higher" if metric.higher_is_better else "lower"
        axis.set_title(f"{metric.label} ({metric.unit}, {better} is better)", fontsize=9)
        axis.tick_params(labelsize=8)
        for position, value in enumerate(values):
            if not value:
                axis.text(0, position, " FAIL", va="center", fontsize=7, color="tab:red")
    for axis in list(axes.flat)[len(METRICS) :]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

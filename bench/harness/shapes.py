"""The measurements: one run of the load client each, in one of its shapes, and the numbers it yields."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One column of the results: a number taken from one measurement."""

    key: str
    label: str
    unit: str
    field: str  # the client's result field (or the harness's, for idle memory)
    higher_is_better: bool = True


@dataclass(frozen=True)
class Measurement:
    name: str
    shape: str  # the client's mode
    args: tuple[str, ...]  # the client's flags besides mode, url and timing
    metrics: tuple[Metric, ...]


@dataclass(frozen=True)
class Timing:
    warmup: float  # seconds of load before the timed window
    duration: float  # seconds of the timed window
    idle_conns: int
    idle_settle: float  # seconds to let the server's memory settle before reading it


FULL = Timing(warmup=1.0, duration=3.0, idle_conns=2000, idle_settle=1.0)
QUICK = Timing(warmup=0.2, duration=0.4, idle_conns=200, idle_settle=0.3)

KiB, MiB = 1024, 1024 * 1024


def _throughput(name: str, label: str, unit: str = "msg/s", field: str = "per_s") -> Metric:
    return Metric(name, label, unit, field)


MEASUREMENTS = (
    Measurement(
        "rr_text_32B",
        "rr",
        ("-conns", "50", "-size", "32"),
        (_throughput("rr_text_32B", "rr 32 B text"),),
    ),
    Measurement(
        "rr_binary_4KiB",
        "rr",
        ("-conns", "50", "-size", str(4 * KiB), "-binary"),
        (_throughput("rr_binary_4KiB", "rr 4 KiB binary"),),
    ),
    Measurement(
        "latency",
        "latency",
        ("-size", "32"),
        (
            Metric("latency_p50", "latency p50", "µs", "p50_us", higher_is_better=False),
            Metric("latency_p99", "latency p99", "µs", "p99_us", higher_is_better=False),
        ),
    ),
    # idle takes its connection count from Timing; its metric comes from the
    # server's memory, which the harness reads.
    Measurement(
        "idle",
        "idle",
        ("-size", "32"),
        (Metric("idle_memory", "idle memory", "KiB/conn", "kib_per_conn", higher_is_better=False),),
    ),
    Measurement(
        "handshake",
        "handshake",
        ("-clients", "8", "-size", "32"),
        (_throughput("handshake", "handshakes", "conn/s"),),
    ),
    Measurement(
        "pipeline",
        "pipeline",
        ("-window", "64", "-size", "32"),
        (_throughput("pipeline", "pipeline 64 × 32 B"),),
    ),
    Measurement(
        "bulk_64KiB",
        "bulk",
        ("-size", str(64 * KiB), "-binary"),
        (_throughput("bulk_64KiB", "bulk 64 KiB", "MB/s", "mb_per_s"),),
    ),
    Measurement(
        "bulk_1MiB",
        "bulk",
        ("-size", str(MiB), "-binary"),
        (_throughput("bulk_1MiB", "bulk 1 MiB", "MB/s", "mb_per_s"),),
    ),
)
SHAPES = tuple(dict.fromkeys(measurement.shape for measurement in MEASUREMENTS))
METRICS = tuple(metric for measurement in MEASUREMENTS for metric in measurement.metrics)


def select(names: list[str] | None) -> list[Measurement]:
    """The measurements named, by shape ("rr") or by measurement ("rr_text_32B"); all by default."""
    if not names:
        return list(MEASUREMENTS)
    known = set(SHAPES) | {measurement.name for measurement in MEASUREMENTS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown shapes {unknown}; known: {sorted(known)}")
    return [m for m in MEASUREMENTS if m.shape in names or m.name in names]

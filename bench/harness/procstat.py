"""CPU time and memory from /proc: for one process, and for the whole machine."""

from __future__ import annotations

import os
from dataclasses import dataclass

TICK = 1 / os.sysconf("SC_CLK_TCK")  # /proc counts CPU time in clock ticks (10 ms, usually)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name, in parentheses, may hold spaces: count fields after it.
        fields = stat.read().rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) * TICK


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU time so far of processes ``pids`` and of all their descendants (a server's workers).

    A process that has exited is not counted, nor what it used: read the
    tree while it is whole, at both ends of a window.
    """
    return sum(tree_cpu_times(pids))


def tree_cpu_times(pids: list[int]) -> tuple[float, float]:
    """As `tree_cpu_seconds`, in user and system (kernel) time apart."""
    parents: dict[int, int] = {}
    times: dict[int, tuple[float, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:  # it exited since the listing
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) * TICK, int(fields[12]) * TICK)
    wanted = set(pids)
    grew = True
    while grew:  # add children until no process is left whose parent is in the set
        found = {pid for pid, parent in parents.items() if parent in wanted} - wanted
        wanted |= found
        grew = bool(found)
    found = [times[pid] for pid in wanted if pid in times]
    return sum(user for user, _ in found), sum(system for _, system in found)


def kernel_threads_cpu_seconds() -> float:
    """CPU time so far of the kernel's own threads (kworker, ksoftirqd, ...: children of kthreadd).

    Under heavy loopback traffic they do part of the benchmark's work (packets,
    freeing pages), so they are counted apart from the other processes.
    """
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:  # it exited since the listing
            continue
        if fields[1] == "2" or entry.name == "2":  # ppid 2: kthreadd's child
            total += int(fields[11]) + int(fields[12])
    return total * TICK


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid``, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass(frozen=True)
class MachineCpu:
    """CPU seconds of every core so far, by kind (the first line of /proc/stat)."""

    tasks: float  # user, nice and system: time that processes ran (ours and everyone's)
    interrupts: float  # irq and softirq: mostly the kernel moving loopback packets
    steal: float  # time the hypervisor gave our virtual cores to someone else

    @classmethod
    def now(cls) -> MachineCpu:
        with open("/proc/stat") as stat:
            fields = [int(field) for field in stat.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        return cls((user + nice + system) * TICK, (irq + softirq) * TICK, steal * TICK)


@dataclass(frozen=True)
class CpuSample:
    """What the harness reads as a timed window opens, and again as it closes."""

    wall: float
    server: float
    kernel_threads: float
    machine: MachineCpu

    @classmethod
    def now(cls, server_pid: int, wall: float) -> CpuSample:
        # The whole tree: a server with workers does its work in its children.
        return cls(wall, tree_cpu_seconds([server_pid]), kernel_threads_cpu_seconds(), MachineCpu.now())


def cpu_percentages(start: CpuSample, end: CpuSample, client_cpu: float) -> dict[str, float]:
    """Per cent of one core over the window: the server, the client, the kernel's threads, the rest.

    "other" is every process's CPU time on the machine less the server's, the
    client's and the kernel threads' (the harness itself sleeps through the
    window), plus the time stolen by the hypervisor: when it is large, something
    else was running and the numbers are suspect.
    """
    wall = end.wall - start.wall
    server = end.server - start.server
    kernel = end.kernel_threads - start.kernel_threads
    tasks = end.machine.tasks - start.machine.tasks
    steal = end.machine.steal - start.machine.steal

    def percent(seconds: float) -> float:
        return round(100 * seconds / wall, 1)

    return {
        "server_cpu_pct": percent(server),
        "client_cpu_pct": percent(client_cpu),
        "kernel_threads_pct": percent(kernel),
        "other_load_pct": percent(max(0.0, tasks - server - client_cpu - kernel) + steal),
        "steal_pct": percent(steal),
        "interrupts_pct": percent(end.machine.interrupts - start.machine.interrupts),
    }

"""CPU accounting from /proc: what each process used, and the machine as a whole.

Each benchmark groups the processes its own way (bench/*bench/cpu.py); these are the
readings they are built from.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
# CPU used by processes outside the benchmark above which a phase is flagged as noisy.
NOISY_CORES = 0.2

# The PostgreSQL server's own processes (not backends of any one database).
PG_AUX = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "archiver",
)


def proc_stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, cpu seconds) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def all_procs() -> dict[int, tuple[str, int, float]]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat:
                procs[int(entry)] = stat
    return procs


def descendants(root: int) -> list[int]:
    procs = all_procs()
    found, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        for pid, (_comm, ppid, _cpu) in procs.items():
            if ppid == parent:
                found.append(pid)
                frontier.append(pid)
    return found


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user..steal; guest time is already in user
    return total - idle, total


def machine_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Cores the whole machine used between two machine_jiffies() readings."""
    ncpu = os.cpu_count() or 1
    return (after[0] - before[0]) / max(after[1] - before[1], 1) * ncpu


def pg_title(pid: int) -> str:
    """A PostgreSQL process's title ("postgres: user db host(port) idle"...)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def rusage_cpu(children: bool = False) -> float:
    """CPU seconds of this process (and, with ``children``, its reaped children)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if children:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    return total


def fmt_top(other_top: dict[str, float]) -> str:
    """The busiest other processes, as "comm 0.31, comm 0.05"."""
    return ", ".join(f"{k} {v:.2f}" for k, v in other_top.items())


def not_quiet(c: dict[str, Any]) -> str:
    """The NOT QUIET line for a phase whose other processes used NOISY_CORES or more
    (empty when the machine was quiet)."""
    if c["other"] < NOISY_CORES:
        return ""
    top = fmt_top(c["other_top"])
    return f"\n  NOT QUIET: other processes used {c['other']:.2f} cores ({top})"


def wait_quiet(
    seconds: float,
    measure: Callable[[], dict[str, Any]],
    waiting: Callable[[float], None],
) -> dict[str, Any]:
    """``measure()`` (a CPU report over a second or so) until other processes use
    less than NOISY_CORES, or for up to ``seconds``; ``waiting(other cores)`` before
    each wait. The last report."""
    deadline = time.monotonic() + seconds
    while True:
        report = measure()
        other = report["other"]
        if other < NOISY_CORES or time.monotonic() >= deadline:
            return report
        waiting(other)
        time.sleep(4.0)


def for_a_second(watch: Any) -> dict[str, Any]:
    """The report of a CPU watch (a context manager) held for one second."""
    with watch:
        time.sleep(1.0)
    return watch.report

"""Who used the CPU during a phase: the groups of processes given, PostgreSQL for
this database, Redis, and everything else."""

from __future__ import annotations

import os
import time
from typing import Any

from benchcommon.cpu import (
    NOISY_CORES,
    PG_AUX,
    all_procs,
    fmt_top,
    for_a_second,
    machine_cores,
    machine_jiffies,
    not_quiet,
    pg_title,
)
from benchcommon.cpu import wait_quiet as wait_until_quiet
from benchcommon.databases import db_name
from benchcommon.report import log

from enginebench.config import Config


class CpuWatch:
    """Who used the CPU during a phase, in cores (1.0 = one core busy): the groups
    given (granian, the RQ workers, ...), PostgreSQL for this database (its backends
    and the server's own processes), Redis, and everything else ("other": someone
    else's work, including PostgreSQL backends of other databases; should be ~0)."""

    def __init__(self, groups: dict[str, Any], database: str) -> None:
        self.groups = groups  # name -> callable returning pids
        self.database = database
        self._titles: dict[int, str] = {}

    def _postgres_is_ours(self, pid: int) -> bool:
        if pid not in self._titles:
            self._titles[pid] = pg_title(pid)
        title = self._titles[pid]
        rest = title.split(": ", 2)[-1] if ": " in title else ""
        return (
            f" {self.database} " in f" {title} "
            or rest.startswith(PG_AUX)
            or ": " not in title  # the postmaster
        )

    def __enter__(self) -> CpuWatch:
        self.at = time.perf_counter()
        self.before = all_procs()
        for pid, (comm, _ppid, _cpu) in self.before.items():
            if comm == "postgres":
                self._postgres_is_ours(pid)
        self.busy, self.total = machine_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        pids = {name: set(get()) for name, get in self.groups.items()}
        after = all_procs()
        wall = max(time.perf_counter() - self.at, 1e-9)
        ncpu = os.cpu_count() or 1
        machine = machine_cores((self.busy, self.total), machine_jiffies())
        used = {name: 0.0 for name in [*pids, "postgres", "redis"]}
        others: dict[str, float] = {}
        for pid, (comm, _ppid, cpu) in after.items():
            before = self.before.get(pid)
            cores = max(0.0, cpu - (before[2] if before else 0.0)) / wall
            group = next((g for g, s in pids.items() if pid in s), None)
            if group is None:
                if comm == "postgres":
                    if self._postgres_is_ours(pid):
                        group = "postgres"
                    else:
                        comm = "postgres (other databases)"
                elif comm.startswith("redis-server"):
                    group = "redis"
            if group is None:
                others[comm] = others.get(comm, 0.0) + cores
            else:
                used[group] += cores
        report: dict[str, Any] = {k: round(v, 2) for k, v in used.items()}
        # "other" from the machine's total: kernel time and exited processes count.
        report["other"] = round(max(0.0, machine - sum(used.values())), 2)
        report["machine"] = round(machine, 2)
        report["cores"] = ncpu
        report["wall_s"] = round(wall, 3)
        top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
        report["other_top"] = {c: round(v, 2) for c, v in top if v >= 0.01}
        self.report = report


def wait_quiet(cfg: Config, groups: dict[str, Any], phase: str) -> dict[str, Any]:
    """How busy the machine is (with our processes idle) before a phase; with
    --wait-quiet, wait up to that many seconds for other processes to calm down."""
    report = wait_until_quiet(
        cfg.wait_quiet,
        lambda: for_a_second(CpuWatch(groups, db_name(cfg.database_url))),
        lambda other: log(
            f"  {phase}: waiting for a quiet machine, others use {other:.2f} cores"
        ),
    )
    if report["other"] >= NOISY_CORES:
        top = fmt_top(report["other_top"])
        log(
            f"  {phase}: the machine is busy, others use {report['other']:.2f} cores ({top})"
        )
    return report


def fmt_cpu(c: dict[str, Any]) -> str:
    skip = {"machine", "cores", "other_top", "wall_s"}
    parts = ", ".join(f"{k} {v:.2f}" for k, v in c.items() if k not in skip)
    text = f"cpu (cores of {c['cores']}): {parts}; machine {c['machine']:.2f}"
    return text + not_quiet(c)

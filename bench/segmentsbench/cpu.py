"""Who used the CPU during a phase: this process, PostgreSQL for this database, and
everything else."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchcommon.cpu import (
    NOISY_CORES,
    PG_AUX,
    for_a_second,
    machine_cores,
    machine_jiffies,
    proc_stat,
    rusage_cpu,
)
from benchcommon.cpu import wait_quiet as wait_until_quiet
from benchcommon.databases import db_name
from benchcommon.report import log

from segmentsbench.config import Config


class CpuWatch:
    """Who used the CPU during a phase, in cores: this process, PostgreSQL for this
    database (its backends, their parallel workers and the server's own processes),
    and everything else ("other": someone's tests, another database), which should be
    near 0 for comparable figures."""

    def __init__(self, database: str) -> None:
        self.database = database

    def __enter__(self) -> CpuWatch:
        self.at = time.perf_counter()
        self.own = self._own()
        self.pg = self._postgres()
        self.jiffies = machine_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self.at, 1e-9)
        ncpu = os.cpu_count() or 1
        machine = machine_cores(self.jiffies, machine_jiffies())
        own = (self._own() - self.own) / wall
        pg_now = self._postgres()
        postgres = (
            sum(max(0.0, c - self.pg.get(pid, 0.0)) for pid, c in pg_now.items()) / wall
        )
        self.report = {
            "bench": round(own, 2),
            "postgres": round(postgres, 2),
            "other": round(max(0.0, machine - own - postgres), 2),
            "machine": round(machine, 2),
            "cores": ncpu,
            "seconds": round(wall, 3),
            # CPU seconds of the bench and of this database's PostgreSQL: less
            # sensitive than wall time to other processes on the machine.
            "cpu_s": round((own + postgres) * wall, 3),
        }

    @staticmethod
    def _own() -> float:
        return rusage_cpu()

    def _postgres(self) -> dict[int, float]:
        """CPU seconds of this database's PostgreSQL processes, by pid."""
        ours: dict[int, float] = {}
        workers: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = proc_stat(int(entry))
            if not stat or not stat[0].startswith("postgres"):
                continue
            try:
                cmd = (
                    Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
                )
            except OSError:
                continue
            title = cmd.replace("\0", " ").split(": ", 2)[-1].strip()
            if title.startswith("parallel worker for PID "):
                leader = title.removeprefix("parallel worker for PID ").split()[0]
                workers[int(entry)] = (int(leader) if leader.isdigit() else 0, stat[2])
            elif f" {self.database} " in f" {title} " or title.startswith(PG_AUX):
                ours[int(entry)] = stat[2]
        for pid, (leader, cpu) in workers.items():
            if leader in ours:
                ours[pid] = cpu
        return ours


def wait_quiet(cfg: Config) -> dict[str, Any]:
    """How busy the machine is before measuring; with --wait-quiet, wait (up to that
    many seconds) for other processes to use less than NOISY_CORES."""
    report = wait_until_quiet(
        cfg.wait_quiet,
        lambda: for_a_second(CpuWatch(db_name(cfg.database_url))),
        lambda other: log(
            f"waiting for a quiet machine: other processes use {other:.2f} cores"
        ),
    )
    if report["other"] >= NOISY_CORES:
        log(f"the machine is busy: other processes use {report['other']:.2f} cores")
    return report


def fmt_cpu(c: dict[str, Any]) -> str:
    text = (
        f"cpu (cores of {c['cores']}): bench {c['bench']:.2f}, postgres "
        f"{c['postgres']:.2f}, other {c['other']:.2f}; machine {c['machine']:.2f}"
    )
    if c["other"] >= NOISY_CORES:
        text += f"  NOT QUIET: other processes used {c['other']:.2f} cores"
    return text

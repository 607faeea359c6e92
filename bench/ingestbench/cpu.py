"""Who was busy during a phase: the client, granian (each worker), PostgreSQL (by
kind of process), Redis and everything else."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from benchcommon.cpu import (
    NOISY_CORES,
    all_procs,
    descendants,
    fmt_top,
    machine_jiffies,
    not_quiet,
    rusage_cpu,
)
from benchcommon.databases import db_name, with_db
from benchcommon.report import log

from ingestbench.config import Config
from ingestbench.setup import Server


@dataclass
class CpuSample:
    at: float
    client: float  # this process and its reaped children (rusage)
    procs: dict[int, tuple[str, float]]  # every other process: (comm, cpu seconds)
    server_pids: list[int]
    busy: int
    total: int


class PgMonitor:
    """What each PostgreSQL process is: a backend of this database (and which
    kind), a shared one (WAL writer, checkpointer...), or one serving another
    database (someone else's tests), which counts as "other"."""

    def __init__(self, cfg: Config) -> None:
        self.dbname = db_name(cfg.database_url)
        self.conn = psycopg.connect(
            with_db(cfg.database_url, "postgres"), autocommit=True
        )

    def kinds(self) -> dict[int, str]:
        rows = self.conn.execute(
            "SELECT pid, datname, backend_type FROM pg_stat_activity"
        ).fetchall()
        return {
            pid: (
                "postgres (other databases)"
                if datname is not None and datname != self.dbname
                else f"postgres: {kind}"
            )
            for pid, datname, kind in rows
        }

    def close(self) -> None:
        self.conn.close()


def cpu_sample(server: Server, pg: PgMonitor) -> CpuSample:
    kinds = pg.kinds()
    procs = all_procs()
    busy, total = machine_jiffies()
    return CpuSample(
        at=time.perf_counter(),
        client=rusage_cpu(children=True),
        procs={
            pid: (kinds.get(pid, comm) if comm == "postgres" else comm, cpu)
            for pid, (comm, _ppid, cpu) in procs.items()
        },
        server_pids=server.pids(),
        busy=busy,
        total=total,
    )


def cpu_report(a: CpuSample, b: CpuSample) -> dict[str, Any]:
    """Who used the CPU between two samples, in cores (1.0 = one core busy).

    Per process, so that one that started or ended in between does not skew the
    sums; "other" is everything else on the machine (another job's tests, say), and
    the busiest of those are named, because they take CPU from the benchmark.
    """
    wall = max(b.at - a.at, 1e-9)
    ncpu = os.cpu_count() or 1
    machine = (b.busy - a.busy) / max(b.total - a.total, 1) * ncpu
    server = set(b.server_pids)
    mine = {os.getpid()} | set(descendants(os.getpid())) - server
    used: dict[int, float] = {}
    for pid, (_comm, cpu) in b.procs.items():
        before = a.procs.get(pid)
        used[pid] = max(0.0, cpu - (before[1] if before else 0.0)) / wall
    groups = {"server": 0.0, "postgres": 0.0, "redis": 0.0}
    others: dict[str, float] = {}
    pg_kinds: dict[str, float] = {}
    for pid, cores in used.items():
        comm = b.procs[pid][0]
        if pid in server:
            groups["server"] += cores
        elif pid in mine:
            continue  # counted by rusage as the client
        elif comm.startswith("postgres") and comm != "postgres (other databases)":
            # this database's backends, and the shared processes (WAL, checkpoints)
            groups["postgres"] += cores
            kind = comm.removeprefix("postgres: ")
            pg_kinds[kind] = pg_kinds.get(kind, 0.0) + cores
        elif comm.startswith("redis-server"):
            groups["redis"] += cores
        else:
            others[comm] = others.get(comm, 0.0) + cores
    parts = {"client": (b.client - a.client) / wall, **groups}
    # "other" from the machine's total, so kernel time and exited processes count.
    parts["other"] = max(0.0, machine - sum(parts.values()))
    parts["machine"] = machine
    report: dict[str, Any] = {k: round(v, 2) for k, v in parts.items()}
    report["cores"] = ncpu
    report["server_each"] = [round(used.get(p, 0.0), 2) for p in sorted(server)]
    report["postgres_each"] = {
        k: round(v, 2)
        for k, v in sorted(pg_kinds.items(), key=lambda kv: -kv[1])
        if v >= 0.01
    }
    top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
    report["other_top"] = {comm: round(c, 2) for comm, c in top if c >= 0.01}
    return report


def fmt_cpu(c: dict[str, Any]) -> str:
    text = (
        f"cpu (cores of {c['cores']}): client {c['client']:.2f}, "
        f"granian {c['server']:.2f} "
        f"[{' + '.join(f'{x:.2f}' for x in c['server_each'])}], "
        f"postgres {c['postgres']:.2f} "
        f"[{', '.join(f'{k} {v:.2f}' for k, v in c['postgres_each'].items())}], "
        f"redis {c['redis']:.2f}, "
        f"other {c['other']:.2f}; machine {c['machine']:.2f}"
    )
    return text + not_quiet(c)


def cpu_ms_per(cpu: dict[str, Any], per_second: float) -> dict[str, float]:
    """CPU milliseconds per request (or row) spent in each part.

    Less sensitive to a busy machine than the rates: the work per request stays the
    same when other processes take cores away.
    """
    rate = max(per_second, 1e-9)
    return {
        k: round(1000 * cpu[k] / rate, 3)
        for k in ("server", "postgres", "redis", "client")
    }


class Meter:
    """CPU samples of one run: the server's processes, PostgreSQL's, the rest."""

    def __init__(self, server: Server, pg: PgMonitor, warnings: list[str]) -> None:
        self.server = server
        self.pg = pg
        self.warnings = warnings

    def sample(self) -> CpuSample:
        return cpu_sample(self.server, self.pg)

    def measure(self, phase: str, c0: CpuSample) -> dict[str, Any]:
        """Who used the CPU since ``c0``, logged; a warning if the machine was not
        quiet, or if one granian worker did nearly all the work."""
        cpu = cpu_report(c0, self.sample())
        log("  " + fmt_cpu(cpu))
        if cpu["other"] >= NOISY_CORES:
            top = fmt_top(cpu["other_top"])
            self.warnings.append(
                f"{phase}: the machine was not quiet, other processes used "
                f"{cpu['other']:.2f} cores ({top})"
            )
        # server_each: granian's main process, then its workers
        if len(cpu["server_each"]) > 2 and cpu["server"] > 0.5:
            share = max(cpu["server_each"]) / cpu["server"]
            if share > 0.8:
                # Keep-alive connections stay with the worker that accepted
                # them, and the kernel may hand nearly all to one.
                self.warnings.append(
                    f"{phase}: one granian worker did {share:.0%} of the work "
                    "(it accepted most connections), so the figure understates "
                    "the server; run again"
                )
        return cpu

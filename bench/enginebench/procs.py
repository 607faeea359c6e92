"""The app's processes (granian, the RQ workers, the scheduler) and RQ's state."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import redis
from benchcommon.errors import SetupFailed
from benchcommon.paths import OUT_DIR, PYTHON, ROOT
from benchcommon.report import percentile
from benchcommon.server import Proc, granian_command

from enginebench.config import QUEUES, Config


def _proc(name: str, command: list[str], env: dict[str, str]) -> Proc:
    return Proc(name, command, env, OUT_DIR / f"engine-{name}.log", ROOT)


def server_proc(cfg: Config, env: dict[str, str], port: int) -> Proc:
    backpressure = max(1, 1024 // cfg.web_workers)
    command = granian_command(port, cfg.web_workers, cfg.blocking_threads, backpressure)
    return _proc("server", command, env)


class Worker(Proc):
    """An RQ worker process, and the name it registers under in Redis."""

    def __init__(
        self, rq_name: str, name: str, command: list[str], env: dict[str, str]
    ):
        super().__init__(name, command, env, OUT_DIR / f"engine-{name}.log", ROOT)
        self.rq_name = rq_name


def worker_procs(cfg: Config, env: dict[str, str]) -> list[Worker]:
    run = uuid.uuid4().hex[:6]
    procs = []
    for i in range(cfg.rq_workers):
        rq_name = f"bench-engine-{run}-{i}"
        command = [
            PYTHON, "manage.py", "rqworker", *QUEUES,
            "--worker-class", "rq.worker.SimpleWorker",
            "--name", rq_name,
        ]  # fmt: skip
        procs.append(Worker(rq_name, f"worker-{i}", command, env))
    return procs


def worker_stats(rds: redis.Redis, names: list[str]) -> dict[str, tuple[int, float]]:
    """RQ's own counters per worker: (jobs finished, seconds spent in jobs)."""
    out = {}
    for name in names:
        jobs, busy = rds.hmget(
            f"rq:worker:{name}", ["successful_job_count", "total_working_time"]
        )
        out[name] = (int(jobs or 0), float(busy or 0.0))
    return out


def wait_for_finished_jobs(rds: redis.Redis, timeout: float = 10.0) -> None:
    """Until no job is queued or running: RQ writes a job's counters and takes it off
    the started registry together, after the job returns."""
    from rq import Queue
    from rq.registry import StartedJobRegistry

    queues = [Queue(name, connection=rds) for name in QUEUES]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(q.count or StartedJobRegistry(queue=q).count for q in queues):
            return
        time.sleep(0.01)


def stats_delta(
    a: dict[str, tuple[int, float]], b: dict[str, tuple[int, float]], wall: float
) -> dict[str, Any]:
    jobs = sum(b[n][0] - a[n][0] for n in b)
    busy = [b[n][1] - a[n][1] for n in b]
    return {
        "jobs": jobs,
        "busy_s": round(sum(busy), 2),
        "busy_pct_each": [round(100 * x / wall, 1) for x in busy],
    }


def scheduler_proc(env: dict[str, str]) -> Proc:
    return _proc("scheduler", [PYTHON, "manage.py", "nudge_scheduler"], env)


def wait_workers(procs: list[Proc], rds: redis.Redis, timeout: float = 60.0) -> None:
    from rq import Worker

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise SetupFailed(f"RQ worker {p.name} exited:\n{p.tail()}")
        if Worker.count(connection=rds) >= len(procs):
            return
        time.sleep(0.1)
    raise SetupFailed(f"the RQ workers did not register within {timeout:.0f} s")


def wait_scheduler(proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SetupFailed(f"the scheduler exited:\n{proc.tail()}")
        if "ticking" in proc.tail(5):
            return
        time.sleep(0.1)
    raise SetupFailed(f"the scheduler did not start within {timeout:.0f} s")


# -- RQ state --------------------------------------------------------------------------


def queue_state(rds: redis.Redis) -> dict[str, Any]:
    """Jobs waiting, running, failed and scheduled (retries) per queue."""
    from rq import Queue
    from rq.registry import (
        FailedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )

    state: dict[str, Any] = {}
    for name in QUEUES:
        q = Queue(name, connection=rds)
        state[name] = {
            "queued": q.count,
            "started": StartedJobRegistry(queue=q).count,
            "failed": FailedJobRegistry(queue=q).count,
            "scheduled": ScheduledJobRegistry(queue=q).count,
        }
    return state


def idle(state: dict[str, Any]) -> bool:
    return all(q["queued"] == 0 and q["started"] == 0 for q in state.values())


def failed_jobs(rds: redis.Redis, limit: int = 3) -> list[str]:
    from rq import Queue
    from rq.registry import FailedJobRegistry

    out = []
    for name in QUEUES:
        registry = FailedJobRegistry(queue=Queue(name, connection=rds))
        for job_id in registry.get_job_ids()[:limit]:
            job = Queue(name, connection=rds).fetch_job(job_id)
            lines = (job.exc_info or "").strip().splitlines() if job else []
            out.append(f"{name}: {job_id}: {(lines or [''])[-1][:300]}")
    return out


class QueueSampler:
    """The queues' lengths every ``every`` seconds, in a thread."""

    def __init__(self, rds: redis.Redis, every: float = 0.25) -> None:
        self.rds = rds
        self.every = every
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            pipe = self.rds.pipeline()
            for name in QUEUES:
                pipe.llen(f"rq:queue:{name}")
            lengths = pipe.execute()
            self.samples.append((time.time(), dict(zip(QUEUES, lengths, strict=True))))

    def __enter__(self) -> QueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name in QUEUES:
            values = sorted(s[1][name] for s in self.samples)
            if values:
                out[name] = {
                    "mean": round(sum(values) / len(values), 1),
                    "p99": percentile(values, 99),
                    "max": values[-1],
                }
        return out

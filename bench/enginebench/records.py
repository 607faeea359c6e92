"""(a)'s records: the email backend's hand-overs and the no-op jobs' runs, as
bench/_backend.py writes them, and the wait for them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from enginebench.procs import queue_state


@dataclass
class Records:
    mails: dict[str, list[float]]  # recipient -> hand-over times
    jobs: dict[str, float]  # token -> run time


def read_records(path: Path) -> Records:
    mails: dict[str, list[float]] = {}
    jobs: dict[str, float] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Records(mails, jobs)
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 5:
            continue
        kind, key, to, at, _pid = parts
        if kind == "mail":
            for addr in to.split(","):
                mails.setdefault(addr, []).append(float(at))
        elif kind == "job":
            jobs[key] = float(at)
    return Records(mails, jobs)


def wait_for(
    record_path: Path,
    rds: redis.Redis,
    emails: list[str],
    tokens: list[str],
    timeout: float,
) -> tuple[Records, dict[str, Any], float]:
    """Until every email and job is recorded, or ``timeout``; returns the records,
    the queue state at the end and the seconds waited."""
    began = time.monotonic()
    while True:
        records = read_records(record_path)
        missing = sum(1 for e in emails if e not in records.mails) + sum(
            1 for t in tokens if t not in records.jobs
        )
        waited = time.monotonic() - began
        if missing == 0 or waited >= timeout:
            return records, queue_state(rds), waited
        time.sleep(0.1)

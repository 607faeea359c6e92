"""The measured send: the campaign is scheduled ("send"), the workers start it,
dispatch it and send it; the clock stops at the last hand-off to the backend.

While it runs, this process follows the backend's records (bench/_backend.py appends a
line per message) and reads the workers' memory from /proc when RSS_MARK messages
are in, and at the end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchcommon.errors import BenchBroken
from benchcommon.report import log

from broadcastbench.config import RSS_MARK, Config
from broadcastbench.setup import RECORDS, Data


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in kB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class Follower:
    """The records so far: message ids seen (and seen twice), the last hand-off."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.seen: set[str] = set()
        self.twice = 0
        self.last_at = 0.0
        self.first_at = 0.0

    def read(self) -> int:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            parts = line.split(b"\t")
            if len(parts) != 5 or parts[0] != b"mail":
                continue
            key, at = parts[1].decode(), float(parts[3])
            if key in self.seen:
                self.twice += 1
            self.seen.add(key)
            self.last_at = max(self.last_at, at)
            self.first_at = min(self.first_at or at, at)
        return len(self.seen)


def phase_send(cfg: Config, data: Data, worker_pids) -> dict[str, Any]:
    from apps.campaigns.broadcasts import campaign_schedule
    from apps.campaigns.models import Campaign

    follower = Follower(RECORDS)
    mark = min(RSS_MARK, cfg.recipients // 2)
    memory: dict[str, Any] = {}
    campaign = Campaign.objects.get(pk=data.campaign_id)
    log(f"send: scheduling the campaign to {cfg.recipients:,} recipients")
    started = time.time()
    campaign_schedule(campaign=campaign, by="bench")
    deadline = started + cfg.max_seconds
    last_log = started
    while True:
        got = follower.read()
        if got >= mark and "at_mark" not in memory:
            memory["at_mark"] = {"messages": got, **_memory(worker_pids)}
        if got >= cfg.recipients:
            break
        now = time.time()
        if now > deadline:
            raise BenchBroken(
                f"only {got:,} of {cfg.recipients:,} messages handed over "
                f"within {cfg.max_seconds:g} s"
            )
        if now - last_log >= 10:
            rate = got / (now - started)
            log(f"  {got:,} handed over ({rate:,.0f}/s so far)")
            last_log = now
        time.sleep(0.1)
    memory["at_end"] = {"messages": got, **_memory(worker_pids)}
    seconds = follower.last_at - started
    return {
        "messages": got,
        "handed_over_twice": follower.twice,
        "seconds": round(seconds, 2),
        "per_s": round(got / max(seconds, 1e-9)),
        "first_hand_over_s": round(follower.first_at - started, 2),
        "memory_kb": memory,
    }


def _memory(worker_pids) -> dict[str, Any]:
    return {"workers": [memory_kb(pid) for pid in worker_pids()]}


def wait_finished(data: Data, timeout: float = 30.0) -> dict[str, Any]:
    """The campaign marked sent (the tick finishes it), and its messages by
    status."""
    from django.db.models import Count

    from apps.campaigns.models import Campaign, Message

    deadline = time.monotonic() + timeout
    while True:
        status = Campaign.objects.values_list("status", flat=True).get(
            pk=data.campaign_id
        )
        if status == Campaign.Status.SENT or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    by_status = dict(
        Message.objects.filter(campaign_id=data.campaign_id)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return {"campaign_status": status, "messages_by_status": by_status}

"""The measures at one size: ingestion, one contact's update, the count; and the
drop of a month while ingesting."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

from benchcommon.errors import BenchBroken
from benchcommon.report import percentile

from growthbench.config import CONDITION, NOW, Config

BATCH = 100


def _track(user: int, name: str = "product_viewed") -> Any:
    from apps.events.schemas import Track

    return Track(
        userId=f"u{user}",
        event=name,
        messageId=str(uuid.uuid4()),
        properties={"product_id": f"P{user % 500}", "price": 10},
    )


class Ingesting:
    """Threads calling events_ingest with BATCH events of known contacts each, until
    stopped; each call's start and duration."""

    def __init__(self, cfg: Config, source: Any) -> None:
        self.cfg, self.source = cfg, source
        self.calls: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(seed,), daemon=True)
            for seed in range(cfg.ingest_threads)
        ]

    def _loop(self, seed: int) -> None:
        from django.db import connection

        from apps.events.ingestion import events_ingest

        rng = random.Random(seed)
        try:
            while not self.stop.is_set():
                batch = [
                    _track(rng.randint(1, self.cfg.contacts)) for _ in range(BATCH)
                ]
                began = time.perf_counter()
                events_ingest(source=self.source, messages=batch)
                self.calls.append((began, time.perf_counter() - began))
        except Exception as exc:  # reported, and the run is broken
            self.errors.append(repr(exc))
        finally:
            connection.close()

    def __enter__(self) -> Ingesting:
        self.started = time.perf_counter()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)
        self.ended = time.perf_counter()
        if self.errors:
            raise BenchBroken(f"ingestion failed: {self.errors[0]}")


def measure_ingest(
    cfg: Config, source: Any, seconds: float | None = None
) -> dict[str, Any]:
    with Ingesting(cfg, source) as ingesting:
        time.sleep(cfg.ingest_seconds if seconds is None else seconds)
    seconds = ingesting.ended - ingesting.started
    durations = sorted(d for _, d in ingesting.calls)
    return {
        "events_per_s": round(len(durations) * BATCH / seconds),
        "calls": len(durations),
        "call_p50_ms": round(1000 * percentile(durations, 50), 1),
        "call_p99_ms": round(1000 * percentile(durations, 99), 1),
    }


def measure_incremental(cfg: Config, source: Any, segment: Any) -> dict[str, Any]:
    """One event for a contact, then their incremental update, timed alone."""
    from apps.events.ingestion import events_ingest
    from apps.segments.services import segment_update_for_contacts

    rng = random.Random(7)
    seconds = []
    for _ in range(cfg.picks):
        user = rng.randint(1, cfg.contacts)
        events_ingest(source=source, messages=[_track(user)])
        began = time.perf_counter()
        segment_update_for_contacts(segment=segment, contact_ids=[user], now=NOW)
        seconds.append(time.perf_counter() - began)
    seconds.sort()
    return {
        "p50_ms": round(1000 * percentile(seconds, 50), 2),
        "p99_ms": round(1000 * percentile(seconds, 99), 2),
        "picks": len(seconds),
    }


def measure_count() -> dict[str, Any]:
    from apps.segments.conditions import count_matching

    runs, counts = [], set()
    for _ in range(3):
        began = time.perf_counter()
        counts.add(count_matching(CONDITION, now=NOW))
        runs.append(time.perf_counter() - began)
    if len(counts) != 1:
        raise BenchBroken(f"count_matching gave {sorted(counts)} on the same data")
    return {"count": counts.pop(), "best_s": round(min(runs), 3)}


def measure_drop(cfg: Config, source: Any, cutoff: Any) -> dict[str, Any]:
    """Drop every month before ``cutoff`` while ingesting: the drop's time, and the
    slowest ingestion call that overlapped it beside the p99 of those before."""
    from apps.events.partitions import events_drop_partitions_before

    with Ingesting(cfg, source) as ingesting:
        time.sleep(cfg.ingest_seconds / 2)
        began = time.perf_counter()
        dropped = events_drop_partitions_before(cutoff)
        ended = time.perf_counter()
        time.sleep(cfg.ingest_seconds / 2)
    before = sorted(d for start, d in ingesting.calls if start + d < began)
    during = [d for start, d in ingesting.calls if start < ended and start + d > began]
    if not dropped:
        raise BenchBroken(f"no partition before {cutoff} to drop")
    return {
        "dropped": dropped,
        "drop_s": round(ended - began, 3),
        "calls_during": len(during),
        "slowest_during_ms": round(1000 * max(during, default=0.0), 1),
        "p99_before_ms": round(1000 * percentile(before, 99), 1),
    }

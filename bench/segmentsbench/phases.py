"""The measurements: (a) count, (b) full refresh, (c) incremental update."""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchcommon.databases import db_name
from benchcommon.errors import BenchBroken
from benchcommon.report import percentile

from segmentsbench.config import CONDITION, HAND_SQL, NOW, Config
from segmentsbench.cpu import CpuWatch
from segmentsbench.data import EVENT_COLUMNS

# -- measuring -------------------------------------------------------------------------


def summary(seconds: list[float]) -> dict[str, Any]:
    return {
        "best_s": round(min(seconds), 4),
        "median_s": round(statistics.median(seconds), 4),
        "runs_s": [round(s, 4) for s in seconds],
    }


def explain(query: str, params: Any) -> list[str]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params)
        return [r[0] for r in cur.fetchall()]


def phase_count(cfg: Config) -> dict[str, Any]:
    """(a) count_matching vs the hand-written SQL, interleaved, each cfg.runs times."""
    from django.db import connection

    from apps.segments.conditions import count_matching, matching_sql

    params = {"week": NOW - dt.timedelta(days=7), "day": NOW - dt.timedelta(hours=24)}

    def hand() -> int:
        with connection.cursor() as cur:
            cur.execute(HAND_SQL, params)
            return cur.fetchone()[0]

    def orm() -> int:
        return count_matching(CONDITION, now=NOW)

    timings: dict[str, list[float]] = {"count_matching": [], "hand_sql": []}
    counts: dict[str, set[int]] = {"count_matching": set(), "hand_sql": set()}
    fns: dict[str, Callable[[], int]] = {"count_matching": orm, "hand_sql": hand}
    with CpuWatch(db_name(cfg.database_url)) as watch:
        for _ in range(cfg.runs):
            for key, fn in fns.items():
                began = time.perf_counter()
                counts[key].add(fn())
                timings[key].append(time.perf_counter() - began)
    if len(counts["count_matching"] | counts["hand_sql"]) != 1:
        raise BenchBroken(
            f"counts disagree: count_matching {sorted(counts['count_matching'])}, "
            f"hand-written SQL {sorted(counts['hand_sql'])}"
        )
    match_sql, match_params = matching_sql(CONDITION, now=NOW)
    count_sql = f"SELECT COUNT(*) FROM ({match_sql}) matching"
    shown = connection.ops.compose_sql(count_sql, match_params)
    return {
        "count": counts["hand_sql"].pop(),
        "count_matching": summary(timings["count_matching"]),
        "hand_sql": summary(timings["hand_sql"]),
        "cpu": watch.report,
        "sql": shown,
        "plan": explain(count_sql, match_params),
        "hand_sql_text": " ".join(HAND_SQL.split()),
        "hand_plan": explain(HAND_SQL, params),
    }


def phase_refresh(cfg: Config, expected: int) -> tuple[dict[str, Any], Any]:
    """(b) segment_refresh_full on a new segment, then again with nothing changed."""
    from apps.segments.models import Segment, SegmentMembership
    from apps.segments.services import segment_refresh_full

    segment = Segment.objects.create(
        name="bench: viewed 3x, no purchase", condition=CONDITION
    )
    with CpuWatch(db_name(cfg.database_url)) as watch:
        began = time.perf_counter()
        first = segment_refresh_full(segment=segment, now=NOW)
        first_s = time.perf_counter() - began
    again: list[float] = []
    changed = 0
    for _ in range(max(1, min(cfg.runs, 3))):
        began = time.perf_counter()
        refresh = segment_refresh_full(segment=segment, now=NOW)
        again.append(time.perf_counter() - began)
        changed += refresh.entered + refresh.exited
    members = SegmentMembership.objects.filter(
        segment=segment, exited_at__isnull=True
    ).count()
    if members != expected or first.members != expected or changed:
        raise BenchBroken(
            f"segment_refresh_full: {members} open memberships ({first.members} "
            f"reported, {changed} changes on the repeat), the count says {expected}"
        )
    return {
        "first_s": round(first_s, 3),
        "first_duration_ms": first.duration_ms,
        "entered": first.entered,
        "members": members,
        "unchanged": summary(again),
        "cpu": watch.report,
    }, segment


def _incoming(cursor: Any, contact_id: int, n: int, source_id: int) -> None:
    stamp = NOW - dt.timedelta(seconds=1)
    cursor.execute(
        f"INSERT INTO events_event ({EVENT_COLUMNS}) VALUES"
        " (DEFAULT, %s, %s, 'track', 'product_viewed', %s, %s, %s, %s, %s)",
        [
            contact_id,
            source_id,
            '{"product_id": "P00042", "category": "shoes", "price": 59.9}',
            '{"library": {"name": "nudge.js"}}',
            stamp,
            stamp,
            f"bench-incoming-{n}",
        ],
    )


def phase_incremental(cfg: Config, segment: Any) -> dict[str, Any]:
    """(c) one product_viewed event per contact, then the incremental update, timed.

    Two picks of contacts: uniform over all contacts (most have no recent events, so
    nothing changes), and the contacts of random events of the last 7 days (activity-
    weighted: the contacts events really come from; some cross the threshold).
    """
    from apps.events.models import Source

    rng = random.Random(cfg.seed + 99)
    source_id = Source.objects.get(name="bench-site").pk
    picks, max_contact = _incremental_picks(cfg, rng, source_id)
    out: dict[str, Any] = {}
    one = _IncomingEvent(segment, source_id)
    for _ in range(5):  # warm-up (a worker's first job), not counted
        one(rng.randint(1, max_contact))
    for label, contacts in picks.items():
        with CpuWatch(db_name(cfg.database_url)) as watch:
            calls = [one(contact_id) for contact_id in contacts]
        out[label] = _incremental_figures(calls, watch.report)
    _check_memberships(segment, one.touched)
    out["checked_contacts"] = len(one.touched)
    return out


def _incremental_picks(
    cfg: Config, rng: random.Random, source_id: int
) -> tuple[dict[str, list[int]], int]:
    """The two picks of contacts ("uniform", "active"), and the highest contact id."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT max(id) FROM contacts_contact")
        max_contact = cur.fetchone()[0]
        cur.execute(
            "SELECT min(id), max(id) FROM events_event WHERE timestamp >= %s"
            " AND source_id = %s",
            [NOW - dt.timedelta(days=7), source_id],
        )
        lo, hi = cur.fetchone()
        cur.execute(
            "SELECT contact_id FROM events_event WHERE id = ANY(%s)",
            [[rng.randint(lo, hi) for _ in range(cfg.incremental)]],
        )
        active = [r[0] for r in cur.fetchall()]
    picks = {
        "uniform": [rng.randint(1, max_contact) for _ in range(cfg.incremental)],
        "active": active,
    }
    return picks, max_contact


class _IncomingEvent:
    """An incoming event for a contact, then the incremental update, timed; keeps
    the contacts it touched, for the check."""

    def __init__(self, segment: Any, source_id: int) -> None:
        self.segment = segment
        self.source_id = source_id
        self.n = 0
        self.touched: set[int] = set()

    def __call__(self, contact_id: int) -> tuple[float, int]:
        """Insert an event for the contact, time the update: (ms, changes)."""
        from django.db import connection

        from apps.segments.services import segment_update_for_contacts

        self.n += 1
        with connection.cursor() as cur:
            _incoming(cur, contact_id, self.n, self.source_id)
        began = time.perf_counter()
        changes = segment_update_for_contacts(
            segment=self.segment, contact_ids=[contact_id], now=NOW
        )
        took = (time.perf_counter() - began) * 1000
        self.touched.add(contact_id)
        return took, len(changes.entered) + len(changes.exited)


def _incremental_figures(
    calls: list[tuple[float, int]], cpu: dict[str, Any]
) -> dict[str, Any]:
    """One pick's timings: all calls, and those that changed membership or not."""
    took = [ms for ms, _ in calls]
    changed = [ms for ms, moved in calls if moved]
    same = [ms for ms, moved in calls if not moved]
    return {
        "calls": len(took),
        "p50_ms": round(percentile(sorted(took), 50), 2),
        "p99_ms": round(percentile(sorted(took), 99), 2),
        "max_ms": round(max(took), 2),
        "mean_ms": round(statistics.fmean(took), 2),
        "changed": len(changed),
        "changed_p50_ms": round(percentile(sorted(changed), 50), 2)
        if changed
        else None,
        "unchanged_p50_ms": round(percentile(sorted(same), 50), 2) if same else None,
        "cpu": cpu,
    }


def _check_memberships(segment: Any, touched: set[int]) -> None:
    """The incremental path must leave the memberships the SQL gives."""
    from apps.segments.conditions import matching_contacts
    from apps.segments.models import SegmentMembership

    should = set(
        matching_contacts(CONDITION, now=NOW)
        .filter(pk__in=touched)
        .values_list("pk", flat=True)
    )
    are = set(
        SegmentMembership.objects.filter(
            segment=segment, contact_id__in=touched, exited_at__isnull=True
        ).values_list("contact_id", flat=True)
    )
    if should != are:
        raise BenchBroken(
            f"incremental memberships differ from SQL for {len(should ^ are)} of "
            f"{len(touched)} contacts (e.g. {sorted(should ^ are)[:5]})"
        )

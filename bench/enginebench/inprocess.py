"""In this process, without RQ: CPU and queries per enrollment, and --profile."""

from __future__ import annotations

import cProfile
import datetime as dt
import io
import pstats
import time
from typing import Any

from benchcommon.cpu import proc_stat
from benchcommon.paths import OUT_DIR
from benchcommon.report import log

from enginebench.config import PROBE_EVENT, Config
from enginebench.setup import Data
from enginebench.steps import enroll


def _backend_cpu(connection: Any) -> float:
    """CPU seconds of this connection's PostgreSQL backend so far."""
    connection.ensure_connection()
    stat = proc_stat(connection.connection.info.backend_pid)
    return stat[2] if stat else float("nan")


def phase_inprocess(cfg: Config, data: Data) -> dict[str, Any]:
    """advance_enrollments in this process, no RQ: time, CPU (this process and its
    PostgreSQL backend) and queries per enrollment. CPU time hardly depends on what
    else the machine runs, so it shows what two workers could reach on two quiet
    cores: about 2 / (Python + PostgreSQL CPU per enrollment) enrollments/s."""
    from django.db import connection

    from apps.workflows.models import StepRun
    from apps.workflows.tasks import advance_enrollments

    n = cfg.inprocess_enrollments
    ids, _ = enroll(data.engine_workflow_id, n, offset=0)
    before = StepRun.objects.count()
    pg0, cpu0 = _backend_cpu(connection), time.process_time()
    began = time.perf_counter()
    for start in range(0, len(ids), 200):
        advance_enrollments(ids[start : start + 200])
    seconds = time.perf_counter() - began
    cpu, pg = time.process_time() - cpu0, _backend_cpu(connection) - pg0
    steps = StepRun.objects.count() - before

    few = min(n, 50)
    queries, per = _count_queries(data, few)
    cpu_ms, pg_ms = 1000 * cpu / n, 1000 * pg / n
    report = {
        "enrollments": n,
        "steps": steps,
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds),
        "ms_per_enrollment": round(1000 * seconds / n, 2),
        "python_cpu_ms_per_enrollment": round(cpu_ms, 2),
        "postgres_cpu_ms_per_enrollment": round(pg_ms, 2),
        "steps_per_s_two_cores_cpu_bound": round(
            2 * 1000 / (cpu_ms + pg_ms) * steps / n
        )
        if cpu_ms + pg_ms > 0
        else None,
        "queries_per_enrollment": round(queries / few, 1),
        "queries_per_enrollment_by_kind": per,
    }
    log(
        f"  in this process, no RQ: {report['steps_per_s']:,} steps/s; per "
        f"enrollment {report['ms_per_enrollment']} ms, CPU {cpu_ms:.2f} ms Python + "
        f"{pg_ms:.2f} ms PostgreSQL, {report['queries_per_enrollment']} queries"
    )
    return report


def _count_queries(data: Data, few: int) -> tuple[int, dict[str, float]]:
    """The queries, counted on a few more enrollments: how many in all, and per
    enrollment by kind ("SELECT workflows_enrollment"), most first."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.workflows.tasks import advance_enrollments

    ids, _ = enroll(data.engine_workflow_id, few, offset=0)
    with CaptureQueriesContext(connection) as queries:
        advance_enrollments(ids)
    kinds: dict[str, int] = {}
    for q in queries.captured_queries:
        kind = _query_kind(q["sql"])
        kinds[kind] = kinds.get(kind, 0) + 1
    per = {
        k: round(v / few, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])
    }
    return len(queries.captured_queries), per


def _query_kind(sql: str) -> str:
    """The verb and the first table: "SELECT workflows_enrollment"."""
    text = sql.lstrip()
    verb = text.split(None, 1)[0].upper()
    table = ""
    for word in ("FROM", "INTO", "UPDATE"):
        marker = f"{word} "
        if marker in text:
            table = text.split(marker, 1)[1].split(None, 1)[0].strip('"')
            break
    return f"{verb} {table}".strip()


def _profile_text(prof: cProfile.Profile, title: str) -> str:
    out = io.StringIO()
    out.write(f"===== {title} =====\n")
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(50)
    return out.getvalue()


def phase_profile(cfg: Config, data: Data) -> dict[str, Any]:
    """cProfile, in this process: advance_enrollments on new enrollments of the
    engine workflow, and process_events on single bench_signup events (the probes'
    first job) and on batches of page events (the load's)."""
    from apps.workflows.tasks import advance_enrollments

    texts, report = [], {}
    n = cfg.profile_enrollments
    log(f"profile: advance_enrollments on {n} new enrollments, in this process")
    ids, _ = enroll(data.engine_workflow_id, n, offset=0)
    prof = cProfile.Profile()
    began = time.perf_counter()
    prof.enable()
    for start in range(0, len(ids), 200):
        advance_enrollments(ids[start : start + 200])
    prof.disable()
    seconds = time.perf_counter() - began
    texts.append(_profile_text(prof, f"advance_enrollments, {n} enrollments"))
    report["advance_ms_per_enrollment"] = round(1000 * seconds / n, 2)
    _profile_process_events(texts, report)
    path = OUT_DIR / "engine-profile.txt"
    path.write_text("\n".join(texts))
    report["stats"] = str(path)
    log(
        "  ms per call in this process (profiled): "
        + ", ".join(f"{k} {v}" for k, v in report.items() if k != "stats")
    )
    return report


def _profile_process_events(texts: list[str], report: dict[str, Any]) -> None:
    """process_events, profiled, on one bench_signup event per job and on 10 page
    events per job: the profiles to ``texts``, ms per job to ``report``."""
    from django.utils import timezone

    from apps.contacts.models import Contact
    from apps.events.models import Source
    from apps.events.tasks import process_events

    # Events stored as ingestion stores them, not enqueued: processed here. Received
    # "later", so that the scheduler tick does not hand them to the workers meanwhile
    # (it re-enqueues events left unprocessed NUDGE_REENQUEUE_AFTER_SECONDS).
    source = Source.objects.get(name="bench-engine")
    now = timezone.now() + dt.timedelta(minutes=10)
    contacts = list(
        Contact.objects.filter(external_id__startswith="load-")
        .order_by("pk")
        .values_list("pk", flat=True)[:200]
    )
    for title, name, per_call in (
        ("process_events, one bench_signup event per job", PROBE_EVENT, 1),
        ("process_events, 10 page events per job", "page", 10),
    ):
        calls = _store_events(
            source, contacts, now, name, per_call, f"{name}{per_call}"
        )
        prof = cProfile.Profile()
        began = time.perf_counter()
        prof.enable()
        for event_ids in calls:
            process_events(event_ids)
        prof.disable()
        seconds = time.perf_counter() - began
        texts.append(_profile_text(prof, f"{title}, {len(calls)} jobs"))
        report[f"process_events_ms_per_job_{name}x{per_call}"] = round(
            1000 * seconds / len(calls), 2
        )


def _store_events(
    source: Any,
    contacts: list[int],
    now: dt.datetime,
    name: str,
    per_call: int,
    tag: str,
) -> list[list[int]]:
    """``per_call`` events per contact, unprocessed: one list of event ids per job."""
    from apps.events.storage import ids_in_order, insert_events

    calls = []
    for k, contact_id in enumerate(contacts):
        records = [
            {
                "contact_id": contact_id,
                "source_id": source.pk,
                "type": "track" if name == PROBE_EVENT else "page",
                "name": name,
                "properties": {"path": "/"},
                "context": {"ip": "198.51.100.7"},
                "timestamp": now,
                "received_at": now,
                "message_id": f"prof-{tag}-{k}-{j}",
            }
            for j in range(per_call)
        ]
        calls.append(ids_in_order(records, insert_events(records)))
    return calls

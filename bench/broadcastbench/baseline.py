"""The baseline: a bare loop that renders the same template for the same contacts
and builds the same messages (delivery's own message_render and _build_email: the
same context, links, click tracking, CSS inlining and headers), then hands them,
100 at a time, to the same recording backend.
No claim, no status, no event, no RQ: what sending would cost with no bookkeeping.

It runs in as many processes as there are workers (spawned, each with Django), each
over its share of the contacts; the clock runs from a barrier all of them wait at
once set up, to the last one's end."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

from benchcommon.errors import BenchBroken

from broadcastbench.setup import BASELINE_RECORDS

# Contacts read per query, and messages handed over per call (as a send job does).
READ_BATCH = 1_000
HAND_OVER = 100
# Message ids the bare loop makes up: far from the campaign's real ones.
FAKE_ID_BASE = 900_000_000


def _loop(
    env: dict[str, str], ids: tuple[int, int], barrier: Any, out: Any, release: Any
) -> None:
    os.environ.update(env)
    os.environ["BENCH_RECORD_PATH"] = str(BASELINE_RECORDS)
    import django

    django.setup()
    from django.core.mail import mailers

    from apps.campaigns.delivery import _build_email, message_render
    from apps.campaigns.models import EmailTemplate, Message, Topic
    from apps.contacts.models import Contact

    template = EmailTemplate.objects.select_related("layout").get()
    topic = Topic.objects.get()
    mailer = mailers.default
    barrier.wait()
    started = time.time()
    cpu = time.process_time()
    made = 0
    first, last = ids
    for start in range(first, last + 1, READ_BATCH):
        contacts = Contact.objects.filter(
            pk__gte=start, pk__lte=min(start + READ_BATCH - 1, last)
        ).order_by("pk")
        batch = []
        for contact in contacts:
            message = Message(
                pk=FAKE_ID_BASE + contact.pk,
                contact=contact,
                template=template,
                topic=topic,
                to_email=contact.email,
            )
            rendered = message_render(message)
            batch.append(_build_email(message, rendered))
            if len(batch) == HAND_OVER:
                made += mailer.send_messages(batch)
                batch = []
        if batch:
            made += mailer.send_messages(batch)
    out.put(
        {
            "made": made,
            "started": started,
            "end": time.time(),
            "cpu_s": time.process_time() - cpu,
        }
    )
    # Alive until the parent has read our CPU time (an exited process's is gone).
    release.wait(60)


def run_baseline(
    env: dict[str, str], contact_ids: list[tuple[int, int]], timeout: float, watch
) -> dict[str, Any]:
    """Each process renders the contacts of one (first id, last id) range;
    ``watch`` (a CPU watch) is held while they run."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(contact_ids))
    out = ctx.Queue()
    release = ctx.Event()
    procs = [
        ctx.Process(target=_loop, args=(env, ids, barrier, out, release))
        for ids in contact_ids
    ]
    try:
        with watch:
            for p in procs:
                p.start()
            results = [out.get(timeout=timeout) for _ in procs]
    except Exception as exc:
        raise BenchBroken(f"the bare loop did not finish: {exc!r}") from exc
    finally:
        release.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
    made = sum(r["made"] for r in results)
    seconds = max(r["end"] for r in results) - min(r["started"] for r in results)
    return {
        "processes": len(procs),
        "messages": made,
        "seconds": round(seconds, 2),
        "per_s": round(made / max(seconds, 1e-9)),
        # Python CPU of the loops alone (not their start-up), a message.
        "cpu_ms_per_message": round(
            1000 * sum(r["cpu_s"] for r in results) / max(made, 1), 3
        ),
    }

"""Writes for workflows when two contacts merge (the CONTACTS_MERGED hook).

Runs move to the surviving contact. Two runs that may not both belong to one contact
would otherwise stop the merge, and with it the identify call that asked for it,
every time it is retried: one occurrence of a time trigger (both contacts enrolled by
the same schedule run; a unique constraint), or two running runs of a workflow whose
re-entry rule forbids parallel runs. The survivor's run is kept; the merged-in one
exits with a reason naming the merge, and keeps its rows (the trace) under an
occurrence key of its own.
"""

import logging

from apps.campaigns.services import messages_cancel_queued
from apps.core import clock

from .models import Enrollment, StepRun, TriggerDecision
from .services import enrollment_finish

logger = logging.getLogger(__name__)

# Re-entry rules under which one contact never has two runs at once.
NO_PARALLEL_RUNS = ("once", "while_not_enrolled")


def enrollments_move_to_contact(*, source_id: int, target_id: int) -> dict[str, int]:
    """CONTACTS_MERGED hook (inside contact_merge's transaction, both contacts
    locked): runs and decisions follow the merged contact, conflicts resolved first."""
    exited = _conflicts_resolve(source_id=source_id, target_id=target_id)
    moved = Enrollment.objects.filter(contact_id=source_id).update(contact_id=target_id)
    TriggerDecision.objects.filter(contact_id=source_id).update(contact_id=target_id)
    return {"enrollments": moved, "enrollments_exited": exited}


def _conflicts_resolve(*, source_id: int, target_id: int) -> int:
    """Set aside the source's runs that clash with the target's; how many exited."""
    kept = Enrollment.objects.filter(contact_id=target_id)
    by_occurrence = {
        (workflow_id, key): pk
        for pk, workflow_id, key in kept.exclude(occurrence_key="").values_list(
            "pk", "workflow_id", "occurrence_key"
        )
    }
    running = dict(
        kept.filter(status__in=Enrollment.RUNNING).values_list("workflow_id", "pk")
    )
    if not by_occurrence and not running:
        return 0
    now = clock.now()
    exited = 0
    workflows = {workflow_id for workflow_id, _key in by_occurrence} | set(running)
    candidates = (
        Enrollment.objects.select_for_update(of=("self",))
        .filter(contact_id=source_id, workflow_id__in=workflows)
        .select_related("workflow__current_version", "current_step")
        .order_by("pk")
    )
    for enrollment in candidates:
        reason = _clash(enrollment, by_occurrence, running, target_id)
        if reason:
            exited += _set_aside(enrollment, reason, now)
    return exited


def _clash(
    enrollment: Enrollment,
    by_occurrence: dict[tuple[int, str], int],
    running: dict[int, int],
    target_id: int,
) -> str:
    """Why this run of the merged-in contact cannot join the survivor's runs as it
    is ("" if it can)."""
    key = enrollment.occurrence_key
    same = by_occurrence.get((enrollment.workflow_id, key)) if key else None
    if same is not None:
        return (
            f"contact merged into #{target_id}, whose run #{same} has the same "
            f"occurrence ({key})"
        )
    other = running.get(enrollment.workflow_id)
    rule = (enrollment.workflow.definition.get("reentry") or {}).get("rule")
    if other is not None and enrollment.is_running and rule in NO_PARALLEL_RUNS:
        return (
            f"contact merged into #{target_id}, already in this workflow (run "
            f"#{other}); its re-entry rule allows one run at a time"
        )
    return ""


def _set_aside(enrollment: Enrollment, reason: str, now) -> int:
    """Give the run an occurrence key of its own and, if it is running, end it with
    ``reason`` in its trace; 1 if it exited."""
    if enrollment.occurrence_key:
        suffix = f"~merged-{enrollment.pk}"
        limit = Enrollment._meta.get_field("occurrence_key").max_length
        enrollment.occurrence_key = (
            enrollment.occurrence_key[: limit - len(suffix)] + suffix
        )
    enrollment.save(update_fields=["occurrence_key"])
    if not enrollment.is_running:
        return 0
    enrollment_finish(enrollment, Enrollment.Status.EXITED, reason, now)
    messages_cancel_queued(
        enrollment_id=enrollment.pk, reason=f"the run ended: {reason}"
    )
    step = enrollment.current_step
    StepRun.objects.create(
        enrollment=enrollment,
        step=step,
        step_key=step.key if step else "(end)",
        started_at=now,
        finished_at=now,
        outcome="exited",
        detail={"reason": reason},
    )
    logger.info(
        "enrollment exited by a merge",
        extra={"enrollment_id": enrollment.pk, "contact_id": enrollment.contact_id},
    )
    return 1

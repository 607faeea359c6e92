"""Writes for workflows: enrolling contacts, queueing their runs, finishing them."""

import datetime as dt
import logging
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet

from apps.contacts.models import Contact
from apps.core import clock, jobs
from apps.segments.conditions import describe, evaluate

from ..models import Enrollment, TriggerDecision, Workflow
from ..simulated import simulated_live

logger = logging.getLogger(__name__)


def reentry_blockers(workflow: Workflow, definition: dict, now) -> QuerySet | None:
    """The enrollments that keep their contact out under the re-entry rule (any
    contact's: filter them), None when the rule keeps nobody out. Used one contact
    at a time (reentry_block) and a chunk of contacts at a time (time triggers)."""
    rule = (definition.get("reentry") or {}).get("rule", "every_time")
    past = Enrollment.objects.filter(workflow=workflow, is_test=False)
    if rule == "once":
        return past.order_by("entered_at")
    if rule == "once_per_period":
        days = definition["reentry"]["days"]
        return past.filter(entered_at__gte=now - _days(days)).order_by("-entered_at")
    if rule == "while_not_enrolled":
        return past.filter(status__in=Enrollment.RUNNING)
    return None


def reentry_block(workflow: Workflow, contact_id: int, definition: dict, now) -> str:
    """Why the re-entry rule keeps this contact out ("" if it does not)."""
    blockers = reentry_blockers(workflow, definition, now)
    blocker = (
        None if blockers is None else blockers.filter(contact_id=contact_id).first()
    )
    if blocker is None:
        return ""
    rule = definition["reentry"]["rule"]
    if rule == "once":
        return f"re-entry rule “once”: already enrolled on {blocker.entered_at:%Y-%m-%d %H:%M}"
    if rule == "once_per_period":
        days = definition["reentry"]["days"]
        return f"re-entry rule “once per {days} days”: last enrolled {blocker.entered_at:%Y-%m-%d %H:%M}"
    return (
        f"re-entry rule “not while enrolled”: enrollment #{blocker.pk} is still running"
    )


def _days(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)


def enrollment_start(
    *,
    workflow: Workflow,
    contact: Contact,
    trigger_event=None,
    occurrence_key: str = "",
    test_email: str = "",
    advance: bool = True,
) -> tuple[Enrollment | None, str]:
    """Enroll ``contact`` if the entry condition and re-entry rule allow.

    Returns (enrollment, "") or (None, the reason). Non-enrollments from a trigger
    event are recorded, so admin can answer "why didn't they get it?".
    """
    now = clock.now()
    definition = workflow.current_version.definition
    is_test = bool(test_email)
    if not is_test and workflow.status != Workflow.Status.ACTIVE:
        return None, f"workflow is {workflow.status}"
    with transaction.atomic():
        # One decision at a time per contact: two events at once cannot both pass "once".
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        # The caller's copy (a worker's cached trigger index) may be older.
        reason = "" if is_test else _live_refusal(workflow, trigger_event, now)
        if contact.erased_at:
            # (being erased: nothing new starts for them; see apps/privacy)
            reason = "the person was erased"
        reason = reason or _entry_refusal(
            workflow, contact, definition, now, is_test=is_test
        )
        if reason:
            _record_decision(workflow, contact, trigger_event, reason, now)
            return None, reason
        try:
            enrollment = _enrollment_create(
                workflow=workflow,
                contact=contact,
                trigger_event=trigger_event,
                occurrence_key=occurrence_key,
                test_email=test_email,
                is_test=is_test,
                definition=definition,
                now=now,
            )
        except IntegrityError:
            return None, "already enrolled for this trigger event / occurrence"
    logger.info(
        "enrolled",
        extra={
            "enrollment_id": enrollment.pk,
            "contact_id": contact.pk,
            "workflow_id": workflow.pk,
        },
    )
    if advance:
        enqueue_advance([enrollment.pk])
    return enrollment, ""


def _live_refusal(workflow: Workflow, trigger_event, now) -> str:
    """Why the workflow, as the database has it now, takes nobody ("" if it takes
    them): not active, or the trigger event older than its going live or than the
    trigger's maximum age.

    On PostgreSQL the row is held (FOR SHARE) until the enrolling transaction ends,
    so a pause or an archive waits for an enrollment being decided, and one decided
    after it sees it: nobody enters a workflow after workflow_pause or
    workflow_archive has returned."""
    from ..triggers import event_refusal, trigger_of

    status, live_since = workflow_status_held(workflow_id=workflow.pk)
    if status != Workflow.Status.ACTIVE:
        return f"workflow is {status}"
    if trigger_event is None:
        return ""
    _kind, config = trigger_of(workflow.current_version.definition)
    return event_refusal(config, trigger_event, live_since=live_since, now=now)


def workflow_status_held(*, workflow_id: int) -> tuple[str, dt.datetime | None]:
    """(status, live_since) as the database has them now; on PostgreSQL the row is
    held FOR SHARE until the transaction ends, so a status change waits for it.
    The workflow this thread simulates has them in memory, its row not read."""
    simulated = simulated_live(workflow_id)
    if simulated is not None:
        return simulated
    if connection.vendor != "postgresql":
        return Workflow.objects.values_list("status", "live_since").get(pk=workflow_id)
    table = connection.ops.quote_name(Workflow._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT status, live_since FROM {table} WHERE id = %s FOR SHARE",  # noqa: S608
            [workflow_id],
        )
        return cursor.fetchone()


def _entry_refusal(
    workflow: Workflow, contact: Contact, definition: dict, now, *, is_test: bool
) -> str:
    """Why the re-entry rule or the entry condition keeps ``contact`` out ("" if
    neither does). A test enrollment skips the re-entry rule."""
    reason = "" if is_test else reentry_block(workflow, contact.pk, definition, now)
    entry = definition.get("entry_condition")
    if not reason and entry and not evaluate(entry, contact, now=now):
        reason = f"entry condition not met: {describe(entry)}"
    return reason


def _enrollment_create(
    *,
    workflow: Workflow,
    contact: Contact,
    trigger_event,
    occurrence_key: str,
    test_email: str,
    is_test: bool,
    definition: dict,
    now,
) -> Enrollment:
    """The enrollment row, at the first step of the current version, with a snapshot
    of the trigger event. Raises IntegrityError (its savepoint rolled back, the
    caller's transaction intact) when a unique constraint says this trigger event or
    occurrence already enrolled the contact."""
    version = workflow.current_version
    first_step = version.steps.order_by("position").first()
    key_name = (definition.get("trigger") or {}).get("key")
    props = dict(trigger_event.properties or {}) if trigger_event is not None else {}
    with transaction.atomic():
        return Enrollment.objects.create(
            workflow=workflow,
            version=version,
            contact=contact,
            current_step=first_step,
            entered_at=now,
            last_advanced_at=now,
            trigger_event_id=trigger_event.pk if trigger_event is not None else None,
            trigger_event={
                "name": trigger_event.name,
                "properties": props,
                "timestamp": trigger_event.timestamp.isoformat(),
            }
            if trigger_event is not None
            else {},
            trigger_key=str(props.get(key_name, "")) if key_name else "",
            occurrence_key=occurrence_key,
            is_test=is_test,
            test_email=test_email,
        )


def _record_decision(workflow, contact, event, reason: str, now) -> None:
    if event is None:
        return
    TriggerDecision.objects.create(
        workflow=workflow,
        contact=contact,
        event_id=event.pk,
        event_name=event.name,
        reason=reason[:300],
        decided_at=now,
    )


def enqueue_advance(enrollment_ids: list[int], *, at=None) -> None:
    """One job for many enrollments ("carry many ids per job")."""
    from ..tasks import advance_enrollments

    # 200 ids per job: a few hundred milliseconds of work, so a stuck one delays few.
    for start in range(0, len(enrollment_ids), 200):
        chunk = enrollment_ids[start : start + 200]
        job_id = None
        if len(chunk) == 1:
            stamp = int(at.timestamp()) if at else "now"
            job_id = f"advance-{chunk[0]}-{stamp}"
        jobs.enqueue(
            advance_enrollments, chunk, queue="workflows", job_id=job_id, at=at
        )


def enrollment_finish(
    enrollment: Enrollment, status: str, reason: str, now, *, save: bool = True
) -> bool:
    """End the run with ``status``; False if it had already ended. The engine passes
    ``save=False``: it holds the row locked and writes a batch's enrollments together
    when the batch is done. Saving here writes only the ending's fields, and only
    while the row is still running, so a caller holding a copy read without a lock
    (an event's handler) never overwrites what a worker did since, nor revives a
    run that ended meanwhile."""
    ending = {
        "status": status,
        "finished_at": now,
        "exit_reason": reason[:200],
        "resume_at": None,
        "awaiting_event": "",
        "awaiting_key": "",
    }
    if status == Enrollment.Status.CONVERTED:
        ending["converted_at"] = now
    if save:
        ended = Enrollment.objects.filter(
            pk=enrollment.pk, status__in=Enrollment.RUNNING
        ).update(**ending)
        if not ended:
            return False
    for field, value in ending.items():
        setattr(enrollment, field, value)
    logger.info(
        "enrollment finished",
        extra={"enrollment_id": enrollment.pk, "status": status, "reason": reason},
    )
    return True


def contact_keys(keys: list[str]) -> dict[str, int]:
    from apps.segments.services import contacts_by_keys

    return contacts_by_keys(keys)


def enroll_manually(*, workflow: Workflow, contacts: list[Contact]) -> dict[str, Any]:
    enrolled, skipped = [], {}
    for contact in contacts:
        enrollment, reason = enrollment_start(workflow=workflow, contact=contact)
        if enrollment:
            enrolled.append(enrollment.pk)
        else:
            skipped[str(contact.email or contact.external_id or contact.pk)] = reason
    return {"enrolled": enrolled, "skipped": skipped}


@transaction.atomic
def enrollments_move_to_current_version(
    *, workflow: Workflow
) -> tuple[int, dict[str, int]]:
    """Move running enrollments on older versions to the current one, step by key.

    An enrollment whose current step no longer exists stays on its version (nobody is
    stranded). Returns (moved, {reason: count} for those that stayed).
    """
    current = workflow.current_version
    steps = {s.key: s for s in current.steps.all()}
    moved, stayed = 0, {}
    running = (
        Enrollment.objects.select_for_update(of=("self",))
        .filter(workflow=workflow, status__in=Enrollment.RUNNING)
        .exclude(version=current)
        .select_related("current_step", "version")
    )
    for enrollment in running:
        key = enrollment.current_step.key if enrollment.current_step else None
        if key is not None and key not in steps:
            reason = f"step “{key}” is not in version {current.number}"
            stayed[reason] = stayed.get(reason, 0) + 1
            continue
        enrollment.version = current
        enrollment.current_step = steps.get(key) if key else None
        enrollment.save(update_fields=["version", "current_step"])
        moved += 1
    return moved, stayed


def why_not_enrolled(*, workflow: Workflow, contact: Contact) -> list[str]:
    """Why this contact did not (or would not now) get this workflow, in sentences."""
    from ..triggers import trigger_of

    now = clock.now()
    lines = []
    runs = Enrollment.objects.filter(workflow=workflow, contact=contact).order_by(
        "-entered_at"
    )
    for run in runs[:5]:
        lines.append(
            f"Enrolled {run.entered_at:%Y-%m-%d %H:%M} (run #{run.pk}): {run.status}"
            + (f", {run.exit_reason}" if run.exit_reason else "")
        )
    for decision in TriggerDecision.objects.filter(workflow=workflow, contact=contact)[
        :10
    ]:
        lines.append(
            f"{decision.decided_at:%Y-%m-%d %H:%M} {decision.event_name or 'trigger'}: not enrolled, {decision.reason}"
        )
    if workflow.status != Workflow.Status.ACTIVE:
        lines.append(
            f"The workflow is {workflow.status}: nobody is enrolled until it is active."
        )
    definition = workflow.current_version.definition
    kind, config = trigger_of(definition)
    if not runs and not lines:
        lines.append(f"No trigger for this contact yet ({kind.describe(config)}).")
    entry = definition.get("entry_condition")
    if entry:
        holds = evaluate(entry, contact, now=now)
        lines.append(
            f"Entry condition now: {describe(entry)}: {'met' if holds else 'not met'}."
        )
    block = reentry_block(workflow, contact.pk, definition, now)
    if block:
        lines.append(f"Now: {block}.")
    if contact.email_consent != "subscribed":
        lines.append(
            f"Email consent is {contact.email_consent}: marketing email is suppressed."
        )
    if not contact.email:
        lines.append("The contact has no email address.")
    return lines

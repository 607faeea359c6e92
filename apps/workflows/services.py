"""Writes for workflows: versions, status changes, enrolling, finishing."""

import datetime as dt
import logging
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max, QuerySet

from apps.contacts.models import Contact
from apps.core import clock, jobs
from apps.segments.conditions import describe, evaluate

from .definition import validate_definition
from .models import (
    Enrollment,
    Step,
    TriggerDecision,
    TriggerRun,
    Workflow,
    WorkflowVersion,
)
from .simulated import simulated_live

logger = logging.getLogger(__name__)


class DefinitionError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# -- versions -----------------------------------------------------------------------


@transaction.atomic
def workflow_create(
    *, name: str, definition: dict, description: str = "", user=None
) -> Workflow:
    errors = validate_definition(definition)
    if errors:
        raise DefinitionError(errors)
    workflow = Workflow.objects.create(name=name, description=description)
    workflow_save_version(workflow=workflow, definition=definition, user=user)
    return workflow


@transaction.atomic
def workflow_save_version(
    *, workflow: Workflow, definition: dict, user=None
) -> WorkflowVersion:
    """Store a new version and make it current. Running enrollments stay on theirs."""
    previous = workflow.current_version
    version = workflow_version_create(
        workflow=workflow, definition=definition, user=user
    )
    if version is not previous:
        workflow.save(
            update_fields=[
                "current_version",
                "trigger_type",
                "trigger_event",
                "updated_at",
            ]
        )
    return version


@transaction.atomic
def workflow_version_create(
    *, workflow: Workflow, definition: dict, user=None
) -> WorkflowVersion:
    """Store ``definition`` as the workflow's next version (unless it is the current
    one's) and point the instance at it, without writing the workflow's row: the
    caller saves it (workflow_save_version), or keeps it in memory (the simulator,
    as live work holds that row)."""
    errors = validate_definition(definition)
    if errors:
        raise DefinitionError(errors)
    previous = workflow.current_version
    if previous is not None and previous.definition == definition:
        return previous
    number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = WorkflowVersion.objects.create(
        workflow=workflow,
        number=number,
        definition=definition,
        created_at=clock.now(),
        created_by=user if getattr(user, "pk", None) else None,
        changes=diff_definitions(previous.definition if previous else None, definition),
    )
    Step.objects.bulk_create(
        Step(
            version=version,
            key=s["key"],
            type=s["type"],
            config=s.get("config") or {},
            outlets=s.get("next") or {},
            position=i,
        )
        for i, s in enumerate(definition["steps"])
    )
    trigger = definition["trigger"]
    from .triggers import TRIGGER_TYPES

    trigger_type = TRIGGER_TYPES[trigger["type"]]
    workflow.current_version = version
    workflow.trigger_type = trigger["type"]
    workflow.trigger_event = trigger_type.event_name(
        {k: v for k, v in trigger.items() if k != "type"}
    )
    return version


def diff_definitions(old: dict | None, new: dict) -> list[str]:
    """What changed, in words: "step remind: config changed", "goal changed"."""
    if old is None:
        return ["created"]
    changes = []
    for key in (
        "trigger",
        "entry_condition",
        "reentry",
        "goal",
        "exit_condition",
        "frequency_cap",
        "quiet_hours",
    ):
        if old.get(key) != new.get(key):
            changes.append(f"{key.replace('_', ' ')} changed")
    old_steps = {s["key"]: s for s in old.get("steps", [])}
    new_steps = {s["key"]: s for s in new.get("steps", [])}
    for key in new_steps.keys() - old_steps.keys():
        changes.append(f"step {key} added")
    for key in old_steps.keys() - new_steps.keys():
        changes.append(f"step {key} removed")
    for key in new_steps.keys() & old_steps.keys():
        for part in ("type", "config", "next"):
            if old_steps[key].get(part) != new_steps[key].get(part):
                changes.append(
                    f"step {key}: {'outlets' if part == 'next' else part} changed"
                )
    if [s["key"] for s in old.get("steps", [])] != [
        s["key"] for s in new.get("steps", [])
    ] and not any(c.endswith(("added", "removed")) for c in changes):
        changes.append("steps reordered")
    return changes


# -- status -------------------------------------------------------------------------


def _status_set(workflow: Workflow, status: str, **also) -> None:
    """The one write of a workflow's status. Workers' trigger indexes notice it by
    themselves (apps.core.cache); updated_at is kept true for people."""
    Workflow.objects.filter(pk=workflow.pk).update(
        status=status, updated_at=clock.now(), **also
    )
    workflow.status = status
    for name, value in also.items():
        setattr(workflow, name, value)


def workflow_activate(*, workflow: Workflow) -> None:
    """Go live (again, after a pause): from now on, events trigger it; events
    timestamped before now never will (apps.workflows.triggers.event_refusal)."""
    if workflow.status == Workflow.Status.ARCHIVED:
        raise ValueError("an archived workflow cannot be activated")
    if workflow.status != Workflow.Status.ACTIVE:
        _status_set(workflow, Workflow.Status.ACTIVE, live_since=clock.now())


def workflow_pause(*, workflow: Workflow) -> int:
    """Stop advancing; running enrollments hold where they are. Returns how many."""
    _status_set(workflow, Workflow.Status.PAUSED)
    return workflow.enrollments.filter(status__in=Enrollment.RUNNING).count()


def workflow_resume(*, workflow: Workflow) -> int:
    """Continue: due enrollments are picked up by the next scheduler tick (or now)."""
    workflow_activate(workflow=workflow)
    ids = list(
        workflow.enrollments.filter(status__in=Enrollment.RUNNING).values_list(
            "pk", flat=True
        )
    )
    enqueue_advance(ids)
    return len(ids)


@transaction.atomic
def workflow_archive(*, workflow: Workflow) -> int:
    """Retire the workflow: running enrollments exit with the reason."""
    _status_set(workflow, Workflow.Status.ARCHIVED)
    now = clock.now()
    TriggerRun.objects.filter(
        workflow=workflow, status=TriggerRun.Status.RUNNING
    ).update(status=TriggerRun.Status.CANCELLED, updated_at=now, finished_at=now)
    return workflow.enrollments.filter(status__in=Enrollment.RUNNING).update(
        status=Enrollment.Status.EXITED,
        finished_at=clock.now(),
        exit_reason="workflow archived",
        resume_at=None,
        awaiting_event="",
    )


# -- enrolling ----------------------------------------------------------------------


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
    from .triggers import event_refusal, trigger_of

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
    from .tasks import advance_enrollments

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
    from .triggers import trigger_of

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

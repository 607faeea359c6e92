"""Erasing a person (GDPR art. 17): their personal data goes from every table.

The contact row stays as a tombstone (no address, ids, names or attributes;
``erased_at`` set) so that reports keep counting what it did: its messages, events
and enrollments stay, emptied of their content. The address goes onto the
suppression list as a hash (no hint), so a later import or identify of it is not
mailed. An ``Erasure`` row records what was removed, when and by whom.

A person with a message in flight (claimed, being handed to the ESP) is erased once
it is out: the first pass stops everything that has not started (queued messages,
running enrollments, pending webhooks, campaign recipients not yet dispatched) and,
while a send is in flight, leaves the erasure waiting for the tick to finish it.
Nothing is sent after the erasure: a message can only be claimed from ``queued``,
and the first pass cancels those under the contact's row lock.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q

from apps.campaigns.models import (
    CampaignRecipient,
    Message,
    TopicSubscription,
)
from apps.contacts.models import (
    ConsentRecord,
    ConsentStatus,
    Contact,
    ContactMerge,
    Identity,
    SuppressedAddress,
    email_hash,
)
from apps.contacts.suppression import address_suppress
from apps.core import clock, jobs
from apps.events.models import Event, EventFailure, PendingEvent
from apps.segments.models import SegmentMembership
from apps.workflows.models import (
    Enrollment,
    StepRun,
    TriggerDecision,
    WebhookDelivery,
)
from apps.workflows.services.enrolling import enrollment_finish

from .mailfiles import mail_files_due, mail_files_scrub
from .models import DataExport, Erasure

logger = logging.getLogger(__name__)

ERASED = "erased"


class ErasureRefused(Exception):
    """The request cannot be taken (e.g. the contact is already erased)."""


def erasure_request(
    *, contact: Contact, requested_by: str, reason: str = ""
) -> Erasure:
    """Record the request and run its first pass now; the job finishes it if a send
    was in flight. Raises ErasureRefused for a contact already erased."""
    existing = Erasure.objects.filter(
        contact_id=contact.pk, status=Erasure.Status.WAITING
    ).first()
    if existing:
        return existing
    if contact.erased_at:
        raise ErasureRefused(f"contact #{contact.pk} was erased already")
    erasure = Erasure.objects.create(
        contact_id=contact.pk,
        requested_by=requested_by[:200],
        reason=reason[:300],
        requested_at=clock.now(),
    )
    logger.info(
        "erasure requested",
        extra={"erasure_id": erasure.pk, "contact_id": contact.pk},
    )
    erasure_run(erasure_id=erasure.pk)
    erasure.refresh_from_db()
    return erasure


def erasure_run(*, erasure_id: int) -> str:
    """One pass: stop what has not started, and erase if nothing is in flight; then
    scrub the mail files if that is still to do. Returns the erasure's status."""
    erasure = _erasure_pass(erasure_id)
    if erasure.mail_files_pending:
        # Outside the transaction: files are not rolled back with it.
        _mail_files_scrub(erasure)
    return erasure.status


def _erasure_pass(erasure_id: int) -> Erasure:
    with transaction.atomic():
        erasure = Erasure.objects.select_for_update().get(pk=erasure_id)
        if erasure.status == Erasure.Status.DONE:
            return erasure
        contact = Contact.objects.select_for_update().filter(pk=erasure.contact_id)
        contact = contact.first()
        if contact is None:
            # Merged into another contact meanwhile: erase the one it became.
            merged = ContactMerge.objects.filter(
                merged_contact_id=erasure.contact_id
            ).first()
            if merged is None:
                erasure.status = Erasure.Status.DONE
                erasure.finished_at = clock.now()
                erasure.save(update_fields=["status", "finished_at"])
                return erasure
            erasure.contact_id = merged.into_id
            erasure.save(update_fields=["contact_id"])
            contact = Contact.objects.select_for_update().get(pk=merged.into_id)
        stopped = _stop_everything(contact)
        in_flight = Message.objects.filter(
            contact_id=contact.pk, status=Message.Status.SENDING
        ).count()
        if in_flight:
            erasure.removed = {**erasure.removed, **stopped, "waiting_for": in_flight}
            erasure.save(update_fields=["removed", "contact_id"])
            logger.info(
                "erasure waits for sends in flight",
                extra={"erasure_id": erasure.pk, "in_flight": in_flight},
            )
            return erasure
        addresses = _addresses(contact)
        removed = {**stopped, **_erase(contact, addresses)}
        removed.pop("waiting_for", None)
        erasure.removed = removed
        erasure.status = Erasure.Status.DONE
        erasure.finished_at = clock.now()
        erasure.mail_files_pending = [email_hash(a) for a in addresses]
        erasure.save()
    logger.info("contact erased", extra={"erasure_id": erasure.pk})
    return erasure


def _mail_files_scrub(erasure: Erasure) -> None:
    try:
        mail_files_scrub(erasure_id=erasure.pk)
    except OSError:  # a folder that vanished while it was read, say
        logger.exception("erasure could not scrub the mail files")
        Erasure.objects.filter(pk=erasure.pk).update(mail_files_failed_at=clock.now())


def _stop_everything(contact: Contact) -> dict[str, int]:
    """Nothing new starts for this person: no send, no step, no webhook."""
    now = clock.now()
    cancelled = Message.objects.filter(
        contact_id=contact.pk, status=Message.Status.QUEUED
    ).update(
        status=Message.Status.CANCELLED, error=f"not sent: the person was {ERASED}"
    )
    exited = 0
    for enrollment in Enrollment.objects.filter(
        contact_id=contact.pk, status__in=Enrollment.RUNNING
    ):
        exited += enrollment_finish(
            enrollment, Enrollment.Status.EXITED, f"the person was {ERASED}", now
        )
    webhooks = WebhookDelivery.objects.filter(
        enrollment__contact_id=contact.pk, status=WebhookDelivery.Status.PENDING
    ).update(status=WebhookDelivery.Status.FAILED, error=f"the person was {ERASED}")
    recipients = CampaignRecipient.objects.filter(
        contact_id=contact.pk, message_id__isnull=True, skipped=""
    ).update(skipped=f"the person was {ERASED}")
    # Marked erased at once (the data goes once nothing is in flight): delivery
    # cancels any email to them, of any kind, even one queued by a dispatch that
    # read the contact before this pass; no workflow enrolls them.
    Contact.objects.filter(pk=contact.pk).update(
        email_consent=ConsentStatus.UNSUBSCRIBED,
        erased_at=clock.now(),
    )
    return {
        "messages_cancelled": cancelled,
        "enrollments_exited": exited,
        "webhooks_cancelled": webhooks,
        "campaign_recipients_skipped": recipients,
    }


def _erase(contact: Contact, addresses: list[str]) -> dict[str, int]:
    """Remove or empty every row that holds this person's data; counts by table."""
    pk = contact.pk
    if contact.email:
        address_suppress(
            email=contact.email,
            reason=SuppressedAddress.Reason.MANUAL,
            detail="the person was erased (GDPR art. 17)",
        )
    # The list keeps the hash only: no hint of an erased person's address.
    SuppressedAddress.objects.filter(
        email_hash__in=[email_hash(a) for a in addresses]
    ).update(hint="")
    event_ids = Event.objects.filter(contact_id=pk).values("pk")
    removed = {
        "identities": Identity.objects.filter(contact_id=pk).delete()[0],
        "events": Event.objects.filter(contact_id=pk).update(properties={}, context={}),
        "pending_events": PendingEvent.objects.filter(event_id__in=event_ids).delete()[
            0
        ],
        "event_failures": EventFailure.objects.filter(event_id__in=event_ids).delete()[
            0
        ],
        "merge_snapshots": _scrub_merges(contact),
        "segment_memberships": SegmentMembership.objects.filter(contact_id=pk).delete()[
            0
        ],
        "topic_subscriptions": TopicSubscription.objects.filter(contact_id=pk).delete()[
            0
        ],
        "consent_records": ConsentRecord.objects.filter(contact_id=pk).delete()[0],
        "messages": Message.objects.filter(contact_id=pk).update(
            to_email="", subject="", body_text="", render_context={}, error=""
        ),
        "enrollments": Enrollment.objects.filter(contact_id=pk).update(
            trigger_event={}, trigger_key="", awaiting_key="", test_email=""
        ),
        "step_runs": StepRun.objects.filter(enrollment__contact_id=pk).update(
            detail={}
        ),
        "trigger_decisions": TriggerDecision.objects.filter(contact_id=pk).delete()[0],
        "webhook_deliveries": _scrub_webhooks(pk),
        "exports": _delete_exports(pk),
    }
    Contact.objects.filter(pk=pk).update(
        email=None,
        external_id=None,
        first_name="",
        last_name="",
        phone="",
        timezone="",
        locale="",
        attributes={},
        email_consent=ConsentStatus.UNSUBSCRIBED,
        score=0,
        erased_at=clock.now(),
    )
    removed["contact"] = 1
    return removed


def _scrub_merges(contact: Contact) -> int:
    """Empty the snapshots of contacts folded into this one, and those of other
    merge records that name the person's address or user id exactly (a short id
    must not match a number in someone else's snapshot)."""
    mentions = Q(into_id=contact.pk)
    if contact.email:
        mentions |= Q(snapshot__email__iexact=contact.email)
    if contact.external_id:
        mentions |= Q(snapshot__external_id=contact.external_id)
    return ContactMerge.objects.filter(mentions).update(snapshot={}, reason="merged")


def _scrub_webhooks(contact_id: int) -> int:
    """What went out about the person and what came back; the URL keeps only its
    scheme and host (a path or query may carry their id)."""
    from urllib.parse import urlsplit

    done = 0
    for delivery in WebhookDelivery.objects.filter(enrollment__contact_id=contact_id):
        parts = urlsplit(delivery.url)
        delivery.url = f"{parts.scheme}://{parts.netloc}/" if parts.netloc else ""
        delivery.payload = {}
        delivery.response_body = ""
        delivery.error = ""
        delivery.save(update_fields=["url", "payload", "response_body", "error"])
        done += 1
    return done


def _delete_exports(contact_id: int) -> int:
    """Their exports and every archive file of theirs, one still being built
    included (its job finds its row gone and deletes what it wrote)."""
    from .exports import export_files_of

    for path in export_files_of(contact_id):
        path.unlink(missing_ok=True)
    return DataExport.objects.filter(contact_id=contact_id).delete()[0]


def _addresses(contact: Contact) -> list[str]:
    """The person's addresses: the contact's and those its messages went to."""
    found = {contact.email.lower()} if contact.email else set()
    # (not a team notification's address, nor a tester's: those are not theirs)
    found |= {
        e.lower()
        for e in Message.objects.filter(contact_id=contact.pk, is_test=False)
        .exclude(to_email="")
        .exclude(kind=Message.Kind.NOTIFICATION)
        .values_list("to_email", flat=True)
    }
    return sorted(found)


def erasures_resume(*, now) -> int:
    """Tick task: run again every erasure that waits for a send in flight (one
    takes at most NUDGE_SENDING_TIMEOUT_SECONDS before recovery marks it
    uncertain), or whose mail files are still to scrub."""
    from .tasks import erasure_run_job

    waiting = Erasure.objects.filter(
        Q(status=Erasure.Status.WAITING) | Q(pk__in=mail_files_due(now))
    ).values_list("pk", flat=True)
    for erasure_id in waiting:
        jobs.enqueue(
            erasure_run_job,
            erasure_id,
            job_id=f"erasure-{erasure_id}",
            queue="default",
        )
    return len(waiting)

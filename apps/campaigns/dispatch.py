"""Dispatch: a sending campaign's due recipients become queued messages and send
jobs, batch by batch, at the slots its rate and its sending lane allow; and a
campaign whose every recipient is dealt with is finished.

One dispatcher at a time per campaign (its row is locked, others skip). A message
cannot be claimed before its slot (``send_after``), whichever worker holds its job,
so the rates hold across all workers.
"""

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Min

from apps.core import clock, jobs
from apps.core.db import insert_rows

from .audience import over_cap
from .models import Campaign, CampaignRecipient, CampaignVariant, Message, SendingLane

logger = logging.getLogger(__name__)

Status = Campaign.Status
Group = CampaignRecipient.Group

# Recipients turned into messages per dispatch transaction: big enough that a
# 100,000-person campaign needs a few hundred, small enough to hold locks briefly.
DISPATCH_BATCH = 1_000
# Message ids per send job: one job claims, renders and hands over this many.
SEND_CHUNK = 100
# Messages are made at most this far ahead of when they may go: a pause stops the
# campaign within about this long, and a throttled campaign does not fill the
# table with messages waiting for their slot.
HORIZON = dt.timedelta(seconds=60)


def stamp(at: dt.datetime) -> int:
    """A job id's part for a time (RQ allows letters, digits, - and _)."""
    return int(at.timestamp() * 1000)


def enqueue_dispatch(
    campaign_id: int, *, at: dt.datetime | None = None, key: str = ""
) -> None:
    from .tasks import dispatch_campaign

    jobs.enqueue(
        dispatch_campaign,
        campaign_id,
        queue="email",
        job_id=f"campaign-{campaign_id}-dispatch{key}",
        at=at,
    )


@dataclass
class Throttle:
    """Slots for batches of messages: the campaign's own rate and every lane it
    goes through (its sending domain's and "*", all email), each honoured."""

    chunk: int
    campaign_every: dt.timedelta | None
    campaign_next: dt.datetime | None
    lanes: list[tuple[SendingLane, dt.timedelta]]

    def next_time(self) -> dt.datetime | None:
        """When the next batch may go, as far as the rates say."""
        times = [self.campaign_next, *(lane.next_slot_at for lane, _ in self.lanes)]
        return max(filter(None, times), default=None)


def _throttle(campaign: Campaign) -> Throttle:
    lanes = _lanes_for(campaign)
    rates = [
        r for r in [campaign.rate_per_minute, *(la.per_minute for la in lanes)] if r
    ]
    chunk = batch_size(rates)
    return Throttle(
        chunk,
        batch_every(chunk, campaign.rate_per_minute),
        campaign.next_slot_at,
        [
            (lane, batch_every(chunk, lane.per_minute))
            for lane in lanes
            if lane.per_minute
        ],
    )


def batch_size(rates) -> int:
    """Messages a send job carries under these per-minute rates: a batch that fits
    in a second of the slowest, so the rate holds to within one batch at any
    moment and each job still carries many messages."""
    return max(1, min([SEND_CHUNK] + [r // 60 for r in rates if r]))


def batch_every(chunk: int, rate: int | None) -> dt.timedelta | None:
    """The time between two batches of ``chunk`` at ``rate`` a minute."""
    return dt.timedelta(seconds=chunk * 60 / rate) if rate else None


def _lanes_for(campaign: Campaign) -> list[SendingLane]:
    """The lane of the sending domain and the lane named "*" (all email), those
    that exist, locked: dispatchers of other campaigns wait their turn."""
    variant = campaign.variants.select_related("template").first()
    sender = campaign.from_email or (variant.template.from_email if variant else "")
    domain = sender.rpartition("@")[2].lower() if sender else ""
    if not domain:
        from django.conf import settings

        domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].rstrip(">").lower()
    return list(
        SendingLane.objects.select_for_update()
        .filter(name__in=[domain, "*"])
        .order_by("name")
    )


def campaign_dispatch(*, campaign_id: int) -> int:
    """Turn the next due recipients into queued messages and their send jobs; how
    many. One dispatcher at a time per campaign (the row is locked, others skip);
    it chains itself until nothing is due, then the tick looks again."""
    now = clock.now()
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(skip_locked=True)
            .filter(pk=campaign_id, status=Status.SENDING)
            .first()
        )
        if campaign is None:
            return 0
        throttle = _throttle(campaign)
        due = list(
            _dispatchable(campaign)
            .filter(due_at__lte=now + HORIZON)
            .order_by("due_at", "rank")
            .values_list("pk", "contact_id", "variant_id", "due_at")[:DISPATCH_BATCH]
        )
        capped = over_cap(campaign, [row[1] for row in due], now=now)
        if capped:
            CampaignRecipient.objects.filter(
                campaign=campaign, contact_id__in=list(capped)
            ).update(skipped="frequency cap: already emailed enough recently")
        wanted = [row for row in due if row[1] not in capped]
        made = _make_messages(campaign, _chunks(wanted, throttle, now), now)
        campaign.next_slot_at = throttle.campaign_next
        campaign.save(update_fields=["next_slot_at"])
        for lane, _ in throttle.lanes:
            lane.save(update_fields=["next_slot_at"])
    if len(due) == DISPATCH_BATCH and made == len(wanted):
        # More may be due right now: go on at once.
        enqueue_dispatch(campaign_id, key=f"-{stamp(now)}-{made}")
    else:
        _after_dispatch(campaign_id, now, throttle.next_time())
    return made


def _dispatchable(campaign: Campaign):
    groups = [Group.TEST]
    if campaign.winner_id or not campaign.is_ab_test:
        groups.append(Group.REST)
    return CampaignRecipient.objects.filter(
        campaign=campaign,
        message_id__isnull=True,
        skipped="",
        group__in=groups,
        variant__isnull=False,
    )


def _chunks(rows, throttle: Throttle, now: dt.datetime):
    """(when, rows) batches, each at the next free slot of the campaign and its
    lanes, none beyond the horizon (those wait for a later dispatch)."""
    campaign_next = throttle.campaign_next
    out: list[tuple[dt.datetime, list]] = []
    for start in range(0, len(rows), throttle.chunk):
        batch = rows[start : start + throttle.chunk]
        # Nobody in the batch gets it before they are due.
        at = max(max(row[3] for row in batch), now)
        if throttle.campaign_every:
            at = max(at, campaign_next or now)
        for lane, _ in throttle.lanes:
            at = max(at, lane.next_slot_at or now)
        if at > now + HORIZON:
            break
        if throttle.campaign_every:
            campaign_next = at + throttle.campaign_every
        for lane, every in throttle.lanes:
            lane.next_slot_at = at + every
        out.append((at, batch))
    throttle.campaign_next = campaign_next
    return out


def render_context(campaign: Campaign) -> dict:
    """The render_context of each of the campaign's messages: its name, and its
    own sender fields where it has them (delivery reads those before the
    template's)."""
    context: dict = {"campaign": campaign.name}
    if sender := sender_overrides(campaign):
        context["sender"] = sender
    return context


def sender_overrides(campaign: Campaign) -> dict[str, str]:
    """The campaign's own sender fields that are set: they go in each message's
    render_context, where delivery reads them instead of the template's."""
    fields = ("from_name", "from_email", "reply_to")
    return {name: getattr(campaign, name) for name in fields if getattr(campaign, name)}


def _make_messages(campaign: Campaign, chunks, now: dt.datetime) -> int:
    variants = {v.pk: v for v in CampaignVariant.objects.filter(campaign=campaign)}
    context = render_context(campaign)
    made = 0
    for at, batch in chunks:
        # insert_rows, not bulk_create: Django's preparing of the 29 fields of
        # each message cost more CPU than the insert (bench/broadcast.py).
        messages = [
            Message(
                contact_id=contact_id,
                template_id=variants[variant_id].template_id,
                campaign_id=campaign.pk,
                campaign_recipient_id=recipient_id,
                topic_id=campaign.topic_id,
                render_context=context,
                created_at=now,
                send_after=at,
            )
            for recipient_id, contact_id, variant_id, _ in batch
        ]
        insert_rows(Message, messages)
        _link_recipients([row[0] for row in batch])
        _enqueue_send(messages, at, now)
        made += len(messages)
    return made


def _link_recipients(recipient_ids: list[int]) -> None:
    """Each recipient -> the message made for it, in one UPDATE: joined by the
    message's campaign_recipient_id (unique), not by the order ids came back in."""
    recipients = CampaignRecipient._meta.db_table
    messages = Message._meta.db_table
    marks = ", ".join(["%s"] * len(recipient_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {recipients} SET message_id = m.id FROM {messages} m "  # noqa: S608
            f"WHERE m.campaign_recipient_id = {recipients}.id "
            f"AND m.campaign_recipient_id IS NOT NULL AND {recipients}.id IN ({marks})",
            recipient_ids,
        )


def _enqueue_send(messages: list[Message], at: dt.datetime, now: dt.datetime) -> None:
    enqueue_batch([m.pk for m in messages], at=at if at > now else None)


def enqueue_batch(
    ids: list[int], *, at: dt.datetime | None = None, key: str = ""
) -> None:
    """One send job for these messages (at ``at``, or now)."""
    from .tasks import send_messages

    jobs.enqueue(
        send_messages,
        ids,
        queue="email",
        job_id=f"messages-{ids[0]}-{len(ids)}{'-' + key if key else ''}",
        at=at,
    )


def _after_dispatch(
    campaign_id: int, now: dt.datetime, slot: dt.datetime | None
) -> None:
    """Nothing more can be made now: come back when the next person is due or the
    next slot is free (the tick also looks), or finish if nobody is left."""
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.status != Status.SENDING:
        return
    upcoming = _dispatchable(campaign).aggregate(first=Min("due_at"))["first"]
    if upcoming is not None:
        at = max(upcoming, slot or upcoming) - HORIZON / 2
        at = max(at, now + dt.timedelta(seconds=1))
        enqueue_dispatch(campaign_id, at=at, key=f"-at-{stamp(at)}")
        return
    campaign_finish_if_done(campaign=campaign, now=now)


def campaign_finish_if_done(*, campaign: Campaign, now: dt.datetime) -> bool:
    """sending -> sent once every recipient has a message (or a reason it has
    none), the A/B winner has gone to the rest, and no message is still queued or
    being sent."""
    if campaign.status != Status.SENDING:
        return False
    pending = CampaignRecipient.objects.filter(
        campaign=campaign, message_id__isnull=True, skipped=""
    ).exclude(group=Group.HOLDOUT)
    if pending.exists():
        return False
    in_flight = Message.objects.filter(
        campaign_id=campaign.pk,
        is_test=False,
        status__in=[Message.Status.QUEUED, Message.Status.SENDING],
    )
    if in_flight.exists():
        return False
    done = Campaign.objects.filter(pk=campaign.pk, status=Status.SENDING).update(
        status=Status.SENT, finished_at=now
    )
    if done:
        logger.info("campaign sent", extra={"campaign_id": campaign.pk})
    return bool(done)

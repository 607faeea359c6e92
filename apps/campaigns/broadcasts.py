"""Writes for broadcast campaigns: schedule, start (the snapshot), dispatch,
pause, resume, cancel, finish.

Every step is a status transition guarded by a locked or conditional UPDATE, and
everything a step leaves behind is a row: a killed worker or a flushed Redis
delays a campaign by one tick (tick_campaigns) and changes nothing else.
"""

import contextvars
import datetime as dt
import logging
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import F, Min, OuterRef, Subquery

from apps.core import clock, jobs
from apps.core.hooks import MessageHold

from .audience import audience, over_cap, suppressed_ids, zone
from .models import Campaign, CampaignRecipient, CampaignVariant, Message, SendingLane
from .services import HELD, message_enqueue_send

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
# A paused campaign's claimed messages are looked at again this often.
PAUSED_RECHECK = dt.timedelta(minutes=1)
# The earliest a local-time campaign can be due anywhere: UTC+14 (Kiribati).
EARLIEST_OFFSET = dt.timezone(dt.timedelta(hours=14))


class CampaignError(ValueError):
    """A transition the campaign's state does not allow; the message says why."""


# -- scheduling ---------------------------------------------------------------------


def campaign_problems(campaign: Campaign) -> list[str]:
    """What stops the campaign from being scheduled, as sentences."""
    problems = []
    if not campaign.segments.exists():
        problems.append("Choose at least one segment to send to.")
    variants = list(campaign.variants.all())
    if not variants:
        problems.append("Add the email (a template) it sends.")
    if campaign.test_percent and len(variants) < 2:
        problems.append("An A/B test needs two or more variants.")
    if campaign.test_percent + campaign.holdout_percent >= 100:
        problems.append("The test share and the holdout together must be under 100%.")
    if campaign.send_when == Campaign.When.AT and not campaign.send_at:
        problems.append("Give the time it goes.")
    if campaign.send_when == Campaign.When.LOCAL and not (
        campaign.local_date and campaign.local_time
    ):
        problems.append("Give the local date and time it goes.")
    if bool(campaign.window_start) != bool(campaign.window_end):
        problems.append("A send window needs both a start and an end.")
    if (
        campaign.test_percent
        and campaign.winning_metric == Campaign.Metric.CONVERSIONS
        and not campaign.conversion_event
    ):
        problems.append("Name the conversion event the winner is chosen by.")
    return problems


def start_time(campaign: Campaign, *, now: dt.datetime) -> dt.datetime:
    """When the send starts (and its audience is fixed); "now" is due at ``now``
    (the clock read by the caller: reading it again here would always be later,
    and the campaign would never be due)."""
    if campaign.send_when == Campaign.When.AT:
        return campaign.send_at
    if campaign.send_when == Campaign.When.LOCAL:
        return dt.datetime.combine(
            campaign.local_date, campaign.local_time, tzinfo=EARLIEST_OFFSET
        ).astimezone(dt.UTC)
    return now


def campaign_schedule(*, campaign: Campaign, by: str = "") -> Campaign:
    """draft -> scheduled (it starts at its time; "now" starts at the next tick, or
    at once here)."""
    problems = campaign_problems(campaign)
    if problems:
        raise CampaignError(" ".join(problems))
    updated = Campaign.objects.filter(pk=campaign.pk, status=Status.DRAFT).update(
        status=Status.SCHEDULED, scheduled_by=by[:150]
    )
    if updated != 1:
        raise CampaignError(
            f"Only a draft can be scheduled; this one is {campaign.status}."
        )
    campaign.status = Status.SCHEDULED
    logger.info("campaign scheduled", extra={"campaign_id": campaign.pk, "by": by})
    if campaign.send_when == Campaign.When.NOW:
        jobs.enqueue(_start_job(), campaign.pk, job_id=f"campaign-{campaign.pk}-start")
    return campaign


def _start_job():
    from .tasks import start_campaign

    return start_campaign


def campaign_unschedule(*, campaign: Campaign) -> bool:
    """scheduled -> draft, before it starts."""
    return bool(
        Campaign.objects.filter(pk=campaign.pk, status=Status.SCHEDULED).update(
            status=Status.DRAFT
        )
    )


# -- the snapshot -------------------------------------------------------------------


def campaign_start(*, campaign_id: int) -> bool:
    """scheduled -> sending, once its time has come: fix the audience (one row per
    person, in one INSERT ... SELECT), cut the groups, and set when each person is
    due. False if it is not time, or another worker started it."""
    now = clock.now()
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(skip_locked=True)
            .filter(pk=campaign_id, status=Status.SCHEDULED)
            .first()
        )
        if campaign is None or start_time(campaign, now=now) > now:
            return False
        count = _snapshot(campaign, now)
        detail = _cut_groups(campaign, count)
        _set_due_times(campaign, now)
        detail["suppressed"] = _skip_suppressed(campaign)
        Campaign.objects.filter(pk=campaign.pk).update(
            status=Status.SENDING,
            started_at=now,
            audience_count=count,
            audience_detail=detail,
            next_slot_at=None,
        )
    logger.info(
        "campaign started",
        extra={"campaign_id": campaign_id, "audience": count, **detail},
    )
    enqueue_dispatch(campaign_id)
    return True


def _snapshot(campaign: Campaign, now: dt.datetime) -> int:
    people_sql, params = audience(campaign).values("id").query.sql_with_params()
    table = CampaignRecipient._meta.db_table
    # A shuffled order that is the same on every run (a retry cuts the same groups)
    # and differs between campaigns (not always the same people held out).
    order = "((a.id + %s * 7919) * 2654435761) %% 4294967291, a.id"
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO {table} (campaign_id, contact_id, "group", rank, due_at, '  # noqa: S608
            f"skipped) SELECT %s, a.id, %s, ROW_NUMBER() OVER (ORDER BY {order}), "
            f"%s, '' FROM ({people_sql}) a",
            [campaign.pk, Group.REST, campaign.pk, now, *params],
        )
        return cursor.rowcount


def _cut_groups(campaign: Campaign, count: int) -> dict:
    recipients = CampaignRecipient.objects.filter(campaign=campaign)
    holdout = round(count * campaign.holdout_percent / 100)
    variants = list(campaign.variants.all())
    testing = campaign.test_percent > 0 and len(variants) > 1
    tested = round((count - holdout) * campaign.test_percent / 100) if testing else 0
    recipients.filter(rank__lte=holdout).update(group=Group.HOLDOUT)
    if testing:
        in_test = recipients.filter(rank__gt=holdout, rank__lte=holdout + tested)
        in_test.update(group=Group.TEST)
        # Round-robin over the shuffled order: variants get equal shares.
        for index, variant in enumerate(variants):
            in_test.annotate(turn=(F("rank") - holdout - 1) % len(variants)).filter(
                turn=index
            ).update(variant=variant)
    else:
        recipients.filter(group=Group.REST).update(variant=variants[0])
    return {"holdout": holdout, "test": tested, "rest": count - holdout - tested}


def due_at(campaign: Campaign, tz_name: str, start: dt.datetime) -> dt.datetime:
    """When a contact in ``tz_name`` is due: the campaign's time (or its local
    time in that zone, or right away if that has passed), moved into the send
    window if it falls outside it."""
    tz = zone(tz_name, campaign.default_timezone)
    at = start
    if campaign.send_when == Campaign.When.LOCAL:
        local = dt.datetime.combine(campaign.local_date, campaign.local_time, tzinfo=tz)
        at = max(local.astimezone(dt.UTC), start)
    if campaign.window_start and campaign.window_end:
        at = _into_window(at, tz, campaign.window_start, campaign.window_end)
    return at


def _into_window(at: dt.datetime, tz, start: dt.time, end: dt.time) -> dt.datetime:
    """``at``, or when the window next opens in ``tz`` (a window may span
    midnight: 20:00-08:00)."""
    local = at.astimezone(tz)
    t = local.time()
    inside = start <= t < end if start < end else (t >= start or t < end)
    if inside:
        return at
    opens = dt.datetime.combine(local.date(), start, tzinfo=tz)
    if opens <= local:  # today's window has opened and closed: tomorrow's
        opens = dt.datetime.combine(
            local.date() + dt.timedelta(days=1), start, tzinfo=tz
        )
    return opens.astimezone(dt.UTC)


def _set_due_times(campaign: Campaign, now: dt.datetime) -> None:
    recipients = CampaignRecipient.objects.filter(campaign=campaign)
    if campaign.send_when != Campaign.When.LOCAL and not campaign.window_start:
        return  # everyone is due now (the snapshot's default)
    zones = recipients.order_by().values_list("contact__timezone", flat=True).distinct()
    for tz_name in list(zones):
        recipients.filter(contact__timezone=tz_name).update(
            due_at=due_at(campaign, tz_name, now)
        )


def _skip_suppressed(campaign: Campaign) -> int:
    """People whose address is on the suppression list get no message (it would
    be refused at send time anyway); they are counted."""
    pairs = list(
        CampaignRecipient.objects.filter(campaign=campaign)
        .exclude(group=Group.HOLDOUT)
        .values_list("contact_id", "contact__email")
    )
    listed = suppressed_ids(pairs)
    CampaignRecipient.objects.filter(
        campaign=campaign, contact_id__in=list(listed)
    ).exclude(group=Group.HOLDOUT).update(
        skipped="the address is on the suppression list"
    )
    return len(listed)


# -- dispatch -----------------------------------------------------------------------


def _stamp(at: dt.datetime) -> int:
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
    """Slots for batches of messages, from the campaign's own rate and its lane's."""

    chunk: int
    campaign_every: dt.timedelta | None
    campaign_next: dt.datetime | None
    lane: SendingLane | None
    lane_every: dt.timedelta | None

    def next_time(self) -> dt.datetime | None:
        """When the next batch may go, as far as the rates say."""
        times = [self.campaign_next, self.lane and self.lane.next_slot_at]
        return max(filter(None, times), default=None)


def _throttle(campaign: Campaign) -> Throttle:
    lane = _lane_for(campaign)
    rates = [r for r in (campaign.rate_per_minute, lane and lane.per_minute) if r]
    # A batch that fits in a second of the slowest rate: the rate holds to within
    # one batch at any moment, and each job still carries many messages.
    chunk = max(1, min([SEND_CHUNK] + [r // 60 for r in rates]))

    def every(rate):
        return dt.timedelta(seconds=chunk * 60 / rate) if rate else None

    return Throttle(
        chunk,
        every(campaign.rate_per_minute),
        campaign.next_slot_at,
        lane,
        every(lane and lane.per_minute),
    )


def _lane_for(campaign: Campaign) -> SendingLane | None:
    """The lane of the sending domain, else the lane named "*" (all email)."""
    variant = campaign.variants.select_related("template").first()
    sender = campaign.from_email or (variant.template.from_email if variant else "")
    domain = sender.rpartition("@")[2].lower() if sender else ""
    if not domain:
        from django.conf import settings

        domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].rstrip(">").lower()
    lanes = {
        lane.name: lane
        for lane in SendingLane.objects.select_for_update().filter(
            name__in=[domain, "*"]
        )
    }
    return lanes.get(domain) or lanes.get("*")


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
        if throttle.lane is not None:
            throttle.lane.save(update_fields=["next_slot_at"])
    if len(due) == DISPATCH_BATCH and made == len(wanted):
        # More may be due right now: go on at once.
        enqueue_dispatch(campaign_id, key=f"-{_stamp(now)}-{made}")
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
    lane, none beyond the horizon (those wait for a later dispatch)."""
    campaign_next = throttle.campaign_next
    out: list[tuple[dt.datetime, list]] = []
    for start in range(0, len(rows), throttle.chunk):
        batch = rows[start : start + throttle.chunk]
        # Nobody in the batch gets it before they are due.
        at = max(max(row[3] for row in batch), now)
        if throttle.campaign_every:
            at = max(at, campaign_next or now)
        if throttle.lane_every:
            at = max(at, throttle.lane.next_slot_at or now)
        if at > now + HORIZON:
            break
        if throttle.campaign_every:
            campaign_next = at + throttle.campaign_every
        if throttle.lane_every:
            throttle.lane.next_slot_at = at + throttle.lane_every
        out.append((at, batch))
    throttle.campaign_next = campaign_next
    return out


def _make_messages(campaign: Campaign, chunks, now: dt.datetime) -> int:
    variants = {v.pk: v for v in CampaignVariant.objects.filter(campaign=campaign)}
    made = 0
    for at, batch in chunks:
        messages = Message.objects.bulk_create(
            [
                Message(
                    contact_id=contact_id,
                    template_id=variants[variant_id].template_id,
                    campaign_id=campaign.pk,
                    topic_id=campaign.topic_id,
                    render_context={"campaign": campaign.name},
                    created_at=now,
                    send_after=at,
                )
                for _, contact_id, variant_id, _ in batch
            ]
        )
        CampaignRecipient.objects.filter(pk__in=[row[0] for row in batch]).update(
            message_id=Subquery(
                Message.objects.filter(
                    campaign_id=campaign.pk,
                    contact_id=OuterRef("contact_id"),
                    is_test=False,
                ).values("pk")[:1]
            )
        )
        _enqueue_send(messages, at, now)
        made += len(messages)
    return made


def _enqueue_send(messages: list[Message], at: dt.datetime, now: dt.datetime) -> None:
    from .tasks import send_messages

    ids = [m.pk for m in messages]
    jobs.enqueue(
        send_messages,
        ids,
        queue="email",
        job_id=f"messages-{ids[0]}-{len(ids)}",
        at=at if at > now else None,
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
        enqueue_dispatch(campaign_id, at=at, key=f"-at-{_stamp(at)}")
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


# -- pause, resume, cancel ----------------------------------------------------------


def campaign_pause(*, campaign: Campaign) -> bool:
    """sending -> paused: no more messages are made, and those already queued
    wait (claimed ones are held) until it resumes."""
    return bool(
        Campaign.objects.filter(pk=campaign.pk, status=Status.SENDING).update(
            status=Status.PAUSED
        )
    )


def campaign_resume(*, campaign: Campaign) -> bool:
    """paused -> sending: its held messages go now and the dispatcher goes on
    where it stopped."""
    resumed = Campaign.objects.filter(pk=campaign.pk, status=Status.PAUSED).update(
        status=Status.SENDING, next_slot_at=None
    )
    if not resumed:
        return False
    now = clock.now()
    held = list(
        Message.objects.filter(
            campaign_id=campaign.pk,
            status=Message.Status.QUEUED,
            error__startswith=HELD,
        ).only("pk", "send_after", "attempts")
    )
    Message.objects.filter(pk__in=[m.pk for m in held]).update(send_after=now)
    for message in held:
        message.send_after = now
        message_enqueue_send(message, also="-resumed")
    enqueue_dispatch(campaign.pk, key=f"-resumed-{_stamp(now)}")
    return True


def campaign_cancel(*, campaign: Campaign) -> int | None:
    """scheduled, sending or paused -> cancelled: nothing more goes out (a message
    a worker is handing over right now finishes). How many queued messages were
    cancelled, or None if it could not be cancelled."""
    with transaction.atomic():
        cancelled = Campaign.objects.filter(
            pk=campaign.pk,
            status__in=[Status.SCHEDULED, Status.SENDING, Status.PAUSED],
        ).update(status=Status.CANCELLED, finished_at=clock.now())
        if not cancelled:
            return None
        dropped = Message.objects.filter(
            campaign_id=campaign.pk, status=Message.Status.QUEUED
        ).update(status=Message.Status.CANCELLED, error="not sent: campaign cancelled")
    logger.info(
        "campaign cancelled", extra={"campaign_id": campaign.pk, "dropped": dropped}
    )
    return dropped


# Within one batch send, each campaign's status is read once.
_status_memo: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "campaign_status_memo", default=None
)


def campaign_status_memo() -> contextvars.Token:
    return _status_memo.set({})


def message_may_go(*, message) -> MessageHold | None:
    """MESSAGE_MAY_GO hook: a paused campaign's messages wait, a cancelled or
    deleted one's are not sent."""
    if message.campaign_id is None or message.is_test:
        return None
    memo = _status_memo.get()
    status = memo.get(message.campaign_id) if memo is not None else None
    if status is None:
        status = (
            Campaign.objects.filter(pk=message.campaign_id)
            .values_list("status", flat=True)
            .first()
        ) or "deleted"
        if memo is not None:
            memo[message.campaign_id] = status
    if status == Status.PAUSED:
        return MessageHold("its campaign is paused", until=clock.now() + PAUSED_RECHECK)
    if status in (Status.CANCELLED, "deleted"):
        return MessageHold(f"its campaign was {status}")
    return None


# -- the tick -----------------------------------------------------------------------


def tick_campaigns(*, now: dt.datetime) -> int:
    """Start what is due, wake every sending campaign's dispatcher (a flushed Redis
    or a killed worker loses nothing), choose A/B winners, finish what is done."""
    from .experiments import campaign_decide_if_due

    woken = 0
    for campaign in Campaign.objects.filter(status=Status.SCHEDULED):
        if start_time(campaign, now=now) <= now:
            jobs.enqueue(
                _start_job(), campaign.pk, job_id=f"campaign-{campaign.pk}-start"
            )
            woken += 1
    for campaign in Campaign.objects.filter(status=Status.SENDING):
        campaign_decide_if_due(campaign=campaign, now=now)
        if not campaign_finish_if_done(campaign=campaign, now=now):
            enqueue_dispatch(campaign.pk)
            woken += 1
    return woken

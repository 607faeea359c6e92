"""Writes for broadcast campaigns: schedule, start (the snapshot), pause, resume,
cancel; the tick. Turning due recipients into messages is dispatch.py.

Every step is a status transition guarded by a locked or conditional UPDATE, and
everything a step leaves behind is a row: a killed worker or a flushed Redis
delays a campaign by one tick (tick_campaigns) and changes nothing else.
"""

import contextvars
import datetime as dt
import logging

from django.db import connection, transaction
from django.db.models import F

from apps.contacts.models import Contact, SuppressedAddress
from apps.core import clock, jobs
from apps.core.hooks import MessageHold

from .audience import HASH_CHUNK, audience, suppressed_ids, zone
from .campaign_rules import setting_problems
from .dispatch import (
    batch_every,
    batch_size,
    campaign_finish_if_done,
    enqueue_batch,
    enqueue_dispatch,
    stamp,
)
from .models import Campaign, CampaignRecipient, Message

logger = logging.getLogger(__name__)

Status = Campaign.Status
Group = CampaignRecipient.Group

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
    problems += [sentence for _field, sentence in setting_problems(campaign)]
    return problems


def start_time(campaign: Campaign) -> dt.datetime:
    """When the send starts (and its audience is fixed): "now" is when it was
    confirmed (campaign_schedule records it)."""
    if campaign.send_when == Campaign.When.LOCAL:
        return dt.datetime.combine(
            campaign.local_date, campaign.local_time, tzinfo=EARLIEST_OFFSET
        ).astimezone(dt.UTC)
    return campaign.send_at


def campaign_schedule(*, campaign: Campaign, by: str = "") -> Campaign:
    """draft -> scheduled (it starts at its time; "now" starts at the next tick, or
    at once here)."""
    problems = campaign_problems(campaign)
    if problems:
        raise CampaignError(" ".join(problems))
    changes = {"status": Status.SCHEDULED, "scheduled_by": by[:150]}
    if campaign.send_when == Campaign.When.NOW:
        changes["send_at"] = clock.now()
    updated = Campaign.objects.filter(pk=campaign.pk, status=Status.DRAFT).update(
        **changes
    )
    if updated != 1:
        raise CampaignError(
            f"Only a draft can be scheduled; this one is {campaign.status}."
        )
    campaign.status = Status.SCHEDULED
    campaign.send_at = changes.get("send_at", campaign.send_at)
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
        if campaign is None or start_time(campaign) > now:
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
    """One row per person in the audience, in one INSERT ... SELECT: everyone in
    the rest group with the one variant (an A/B test's groups and variants are
    cut after, by rank)."""
    people_sql, params = audience(campaign).values("id").query.sql_with_params()
    table = CampaignRecipient._meta.db_table
    # A shuffled order that is the same on every run (a retry cuts the same groups)
    # and differs between campaigns (not always the same people held out).
    order = "((a.id + %s * 7919) * 2654435761) %% 4294967291, a.id"
    variants = list(campaign.variants.values_list("pk", flat=True))
    variant = None if _is_testing(campaign, variants) or not variants else variants[0]
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO {table} (campaign_id, contact_id, "group", rank, due_at, '  # noqa: S608
            f"skipped, variant_id) SELECT %s, a.id, %s, "
            f"ROW_NUMBER() OVER (ORDER BY {order}), %s, '', %s FROM ({people_sql}) a",
            [campaign.pk, Group.REST, campaign.pk, now, variant, *params],
        )
        return cursor.rowcount


def _is_testing(campaign: Campaign, variants: list) -> bool:
    return campaign.test_percent > 0 and len(variants) > 1


def _cut_groups(campaign: Campaign, count: int) -> dict:
    recipients = CampaignRecipient.objects.filter(campaign=campaign)
    holdout = round(count * campaign.holdout_percent / 100)
    variants = list(campaign.variants.all())
    testing = _is_testing(campaign, variants)
    tested = round((count - holdout) * campaign.test_percent / 100) if testing else 0
    # The holdout gets no variant: it is sent nothing.
    recipients.filter(rank__lte=holdout).update(group=Group.HOLDOUT, variant=None)
    if testing:
        in_test = recipients.filter(rank__gt=holdout, rank__lte=holdout + tested)
        in_test.update(group=Group.TEST)
        # Round-robin over the shuffled order: variants get equal shares.
        for index, variant in enumerate(variants):
            in_test.annotate(turn=(F("rank") - holdout - 1) % len(variants)).filter(
                turn=index
            ).update(variant=variant)
    # (else the snapshot gave everyone the one variant)
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
    reason = "the address is on the suppression list"
    recipients = CampaignRecipient.objects.filter(campaign=campaign).exclude(
        group=Group.HOLDOUT
    )
    if connection.vendor == "postgresql":
        # The list keeps email_hash(address): SHA-256 of the address stripped and
        # lower-cased by Python. An address already so (printable ASCII, no
        # capitals: nearly all) hashes the same as it is, so PostgreSQL hashes
        # those itself, instead of 100,000 addresses read into Python; the few
        # others are hashed by email_hash below, as everywhere else.
        table = CampaignRecipient._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} r SET skipped = %s "  # noqa: S608
                f"FROM {Contact._meta.db_table} c, "
                f"{SuppressedAddress._meta.db_table} s "
                'WHERE r.campaign_id = %s AND r."group" <> %s '
                f"AND c.id = r.contact_id AND {CANONICAL_EMAIL_SQL} "
                "AND s.email_hash = encode(sha256(convert_to(c.email, 'UTF8')), 'hex')",
                [reason, campaign.pk, Group.HOLDOUT],
            )
            listed_in_sql = cursor.rowcount
            cursor.execute(
                f"SELECT r.contact_id, c.email FROM {table} r "  # noqa: S608
                f"JOIN {Contact._meta.db_table} c ON c.id = r.contact_id "
                'WHERE r.campaign_id = %s AND r."group" <> %s '
                f"AND c.email IS NOT NULL AND NOT ({CANONICAL_EMAIL_SQL})",
                [campaign.pk, Group.HOLDOUT],
            )
            pairs = cursor.fetchall()
    else:
        listed_in_sql = 0
        pairs = list(recipients.values_list("contact_id", "contact__email"))
    listed = sorted(suppressed_ids(pairs))
    for start in range(0, len(listed), HASH_CHUNK):
        recipients.filter(contact_id__in=listed[start : start + HASH_CHUNK]).update(
            skipped=reason
        )
    return listed_in_sql + len(listed)


# An address that email_hash's strip() and lower() leave as it is: printable ASCII
# (no whitespace), no capital letter. (c: the contacts table.)
CANONICAL_EMAIL_SQL = "c.email ~ '^[!-~]+$' AND c.email !~ '[A-Z]'"


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
    """paused -> sending: what it had queued goes again, at fresh slots of its
    rate (not all at once), and the dispatcher goes on where it stopped."""
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update()
            .filter(pk=campaign.pk, status=Status.PAUSED)
            .first()
        )
        if campaign is None:
            return False
        now = clock.now()
        waiting = list(
            Message.objects.filter(
                campaign_id=campaign.pk, status=Message.Status.QUEUED
            )
            .order_by("send_after", "pk")
            .values_list("pk", flat=True)
        )
        chunk = batch_size([campaign.rate_per_minute])
        every = batch_every(chunk, campaign.rate_per_minute) or dt.timedelta(0)
        slot = now
        for start in range(0, len(waiting), chunk):
            ids = waiting[start : start + chunk]
            Message.objects.filter(pk__in=ids).update(send_after=slot, error="")
            enqueue_batch(ids, at=slot if slot > now else None, key="resumed")
            slot += every
        Campaign.objects.filter(pk=campaign.pk).update(
            status=Status.SENDING, next_slot_at=slot if every else None
        )
    enqueue_dispatch(campaign.pk, key=f"-resumed-{stamp(now)}")
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


def campaign_recipients_move(*, source_id: int, target_id: int) -> dict[str, int]:
    """CONTACTS_MERGED hook: the merged contact's places in campaign audiences go to
    the survivor. Where both were in one campaign they are one person, so one
    email: if the merged one already got it, the survivor's pending place is
    skipped; the merged one's place goes with it (its message stays, moved to the
    survivor by messages_move_to_contact)."""
    mine = CampaignRecipient.objects.filter(contact_id=target_id)
    both = set(mine.values_list("campaign_id", flat=True))
    theirs = CampaignRecipient.objects.filter(contact_id=source_id)
    moved = theirs.exclude(campaign_id__in=both).update(contact_id=target_id)
    got_it = theirs.filter(campaign_id__in=both, message_id__isnull=False)
    skipped = mine.filter(
        campaign_id__in=got_it.values("campaign_id"),
        message_id__isnull=True,
        skipped="",
    ).update(skipped="merged with a contact who already got it")
    return {"campaign_recipients": moved, "campaign_places_skipped": skipped}


# Within one batch send, each campaign's status is read once.
_status_memo: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "campaign_status_memo", default=None
)


def campaign_status_memo() -> contextvars.Token:
    return _status_memo.set({})


def campaign_status_forget() -> None:
    """Read each campaign's status afresh from now on (a batch, group by group)."""
    memo = _status_memo.get()
    if memo is not None:
        memo.clear()


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
    or a killed worker loses nothing), ask for A/B decisions, finish what is done.
    Each campaign on its own: one that fails is logged, the others go on."""
    woken = 0
    for campaign in Campaign.objects.filter(status=Status.SCHEDULED):
        if start_time(campaign) <= now:
            jobs.enqueue(
                _start_job(), campaign.pk, job_id=f"campaign-{campaign.pk}-start"
            )
            woken += 1
    for campaign in Campaign.objects.filter(status=Status.SENDING):
        try:
            with transaction.atomic():
                woken += _tick_sending(campaign, now)
        except Exception:
            logger.exception("campaign tick failed", extra={"campaign_id": campaign.pk})
    return woken


def _tick_sending(campaign: Campaign, now: dt.datetime) -> int:
    from .tasks import decide_campaign

    if campaign.winner_id is None and campaign.test_percent:
        # The decision reads the test group's results: a job, not the tick's work.
        jobs.enqueue(
            decide_campaign, campaign.pk, job_id=f"campaign-{campaign.pk}-decide"
        )
    if campaign_finish_if_done(campaign=campaign, now=now):
        return 0
    enqueue_dispatch(campaign.pk)
    return 1

"""The tick's part in sending: due messages whose job Redis lost are queued
again, and claims whose worker died are settled (never sent a second time)."""

import datetime as dt
import logging

from django.conf import settings

from apps.core import jobs

from .models import Campaign, Message

logger = logging.getLogger(__name__)

# Per tick: enough to drain a broadcast's stragglers, small enough to stay quick.
REENQUEUE_PER_TICK = 5_000


def messages_reenqueue_due(*, now: dt.datetime) -> int:
    """Tick task: queued messages that are due but whose job Redis lost.

    The tick cannot tell a lost job from one still waiting behind others, so it
    must be cheap to be wrong. A message on its own gets its own job, with the
    id its first enqueue had (a no-op while that one waits). A broadcast's
    messages were queued in batch jobs, thousands at once: they go again in
    batch jobs of SEND_CHUNK, one per block of ids (``messages-due-<block>``),
    so a job still waiting for its block absorbs the next tick's, and a message
    another job sends first is skipped by its claim. (One job each queued a job
    for every waiting message of a broadcast, tick after tick: more jobs than
    messages, and the broadcast slowed under its own re-enqueues.)"""
    from .dispatch import SEND_CHUNK
    from .services import message_enqueue_send
    from .tasks import send_messages

    # Give the on_commit enqueue a head start before assuming it was lost. A
    # paused campaign's messages wait for its resume, which queues them again.
    paused = Campaign.objects.filter(status=Campaign.Status.PAUSED)
    due = (
        Message.objects.filter(
            status=Message.Status.QUEUED,
            send_after__lte=now
            - dt.timedelta(seconds=settings.NUDGE_REENQUEUE_AFTER_SECONDS),
        )
        .exclude(campaign_id__in=paused.values("pk"))
        .only("pk", "send_after", "attempts", "campaign_id", "is_test")[
            :REENQUEUE_PER_TICK
        ]
    )
    blocks: dict[int, list[int]] = {}
    count = 0
    for message in due:
        if message.campaign_id and not message.is_test:
            blocks.setdefault(message.pk // SEND_CHUNK, []).append(message.pk)
        else:
            message_enqueue_send(message)
        count += 1
    for block, ids in blocks.items():
        jobs.enqueue(send_messages, ids, queue="email", job_id=f"messages-due-{block}")
    return count


def messages_mark_uncertain(*, now: dt.datetime) -> int:
    """Tick task: a claim with no outcome after the timeout is a worker that died
    with the message in hand: it may or may not have gone out, so it is marked
    uncertain, never sent again. (A batch claims a group at a time: what a dead
    batch had not reached is still queued, and goes with the re-enqueue.)"""
    cutoff = now - dt.timedelta(seconds=settings.NUDGE_SENDING_TIMEOUT_SECONDS)
    stale = Message.objects.filter(status=Message.Status.SENDING, claimed_at__lt=cutoff)
    count = stale.update(
        status=Message.Status.UNCERTAIN,
        error="the worker stopped between claiming and recording the send; "
        "it may or may not have gone out",
    )
    if count:
        logger.warning("messages marked uncertain", extra={"count": count})
    return count

"""Chaos for a broadcast: a 20,000-person campaign sent by real worker processes
(two, and the scheduler) through a Postmark stand-in over HTTP, its workers
SIGKILLed twice mid-send and Redis flushed twice. Every recipient gets exactly one
message, sent or (if it was in a killed worker's hands) uncertain; none reaches
the ESP twice, and the campaign finishes on its own."""

import threading
import time
from collections import Counter

import django_rq
import pytest
from django.db import connection

from apps.campaigns.broadcasts import campaign_schedule
from apps.campaigns.dispatch import SEND_CHUNK
from apps.campaigns.models import Campaign, CampaignRecipient, Message
from apps.contacts.models import Contact
from apps.core import clock
from apps.segments.models import Segment, SegmentMembership
from tests.postmark_server import TOKEN, start_postmark

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = 20_000
# Shares of the audience handed to the ESP at which the chaos strikes.
KILL_WORKERS_AT = (0.2, 0.6)
FLUSH_REDIS_AT = (0.4, 0.6)  # the second with every worker dead
# The whole run, kills and restarts included, on a busy two-core machine.
DEADLINE_SECONDS = 170


def everyone_in_a_static_segment(count: int) -> Segment:
    """``count`` contacts, all in one static segment, written in bulk (no
    segment_entered events: the send is under test, not the segment)."""
    now = clock.now()
    contacts = Contact.objects.bulk_create(
        [
            Contact(
                email=f"reader{i}@example.com",
                first_name=f"Reader{i}",
                timezone="Europe/Paris",
                attributes={"picks": ["Boots", "Scarves"]},
            )
            for i in range(count)
        ],
        batch_size=5_000,
    )
    segment = Segment.objects.create(
        name="Newsletter readers", kind=Segment.Kind.STATIC, member_count=count
    )
    SegmentMembership.objects.bulk_create(
        [
            SegmentMembership(segment=segment, contact=c, entered_at=now)
            for c in contacts
        ],
        batch_size=5_000,
    )
    with connection.cursor() as cursor:  # the planner's view of the new rows
        cursor.execute("ANALYZE contacts_contact, segments_segmentmembership")
    return segment


class Chaos:
    """Two worker processes, killed and replaced, and the test's own Redis,
    flushed; what was in flight at each kill is written down."""

    def __init__(self, processes, campaign: Campaign) -> None:
        self.processes = processes
        self.campaign = campaign
        self.started = 0
        self.workers = [self._worker(), self._worker()]
        self.in_flight_at_kills: set[int] = set()
        self.waiting_at_kills: set[int] = set()
        self.kills = self.flushes = 0

    def _worker(self):
        self.started += 1
        return self.processes.worker(f"worker-{self.started}.log")

    def kill_workers(self) -> None:
        for worker in self.workers:
            self.processes.kill(worker)  # SIGKILL: no cleanup runs
        self.kills += 1
        # Only workers claim or record a send, and none is alive: whatever is
        # claimed now was in a killed worker's hands (maybe handed over); what is
        # queued and due waits in a job in Redis, or was in a killed batch's job
        # beyond the group it had in hand.
        mine = Message.objects.filter(campaign_id=self.campaign.pk)
        self.in_flight_at_kills |= set(
            mine.filter(status=Message.Status.SENDING).values_list("pk", flat=True)
        )
        self.waiting_at_kills |= set(
            mine.filter(status=Message.Status.QUEUED).values_list("pk", flat=True)
        )

    def restart_workers(self) -> None:
        self.workers = [self._worker(), self._worker()]

    def flush_redis(self) -> None:
        # every job, scheduled job and worker record (the test's own Redis)
        django_rq.get_connection("default").flushall()
        self.flushes += 1


def test_a_campaign_survives_killed_workers_and_a_flushed_redis_sending_once(
    processes, redis_of_its_own, make_campaign
):
    # given 20,000 people in a segment and a campaign to them, sent now
    segment = everyone_in_a_static_segment(RECIPIENTS)
    campaign = make_campaign(segments=[segment])
    # and an ESP (a Postmark stand-in over HTTP) that records what it receives
    esp = start_postmark(prompt=True)
    processes.env.update(
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN=TOKEN,
        ANYMAIL_POSTMARK_API_URL=esp.url,
        # A message in hand with no outcome after this long was a killed
        # worker's: a few seconds, with room for one slow hand-over on a busy
        # machine (the local ESP answers in milliseconds).
        NUDGE_SENDING_TIMEOUT_SECONDS="6",
    )
    started = time.monotonic()
    chaos = Chaos(processes, campaign)
    processes.scheduler()

    # when it goes, and its workers are killed at 20% and 60% handed over,
    # Redis flushed at 40% and again at 60% (while no worker lives)
    campaign_schedule(campaign=campaign, by="marketer")
    steps = sorted(
        [(share, "kill") for share in KILL_WORKERS_AT]
        + [(share, "flush") for share in FLUSH_REDIS_AT]
    )
    poll = threading.Event()
    while steps:
        share, action = steps[0]
        # half a batch past the share: in the middle of the send jobs' batches
        if len(esp.received) >= share * RECIPIENTS + SEND_CHUNK // 2:
            steps.pop(0)
            if action == "kill":
                chaos.kill_workers()
                if steps and steps[0] == (share, "flush"):
                    continue  # flush while they are dead, then restart
                chaos.restart_workers()
            else:
                chaos.flush_redis()
                if not chaos.workers or chaos.workers[0].poll() is not None:
                    chaos.restart_workers()
        assert time.monotonic() - started < DEADLINE_SECONDS, (
            f"stuck before {action} at {share:.0%}: {len(esp.received)} handed "
            f"over; {_progress(campaign)}"
        )
        poll.wait(0.05)  # real processes run in real time
    # and then it is left to finish
    while Campaign.objects.get(pk=campaign.pk).status != Campaign.Status.SENT:
        assert time.monotonic() - started < DEADLINE_SECONDS, _progress(campaign)
        poll.wait(0.1)
    wall = time.monotonic() - started
    esp.stop()

    # then every recipient in the snapshot has exactly one message
    campaign.refresh_from_db()
    assert campaign.finished_at is not None
    recipients = CampaignRecipient.objects.filter(campaign=campaign)
    assert recipients.count() == RECIPIENTS == campaign.audience_count
    assert not recipients.filter(message_id__isnull=True, skipped="").exists()
    assert not recipients.exclude(skipped="").exists()  # none to skip here
    messages = {
        m.pk: m
        for m in Message.objects.filter(campaign_id=campaign.pk).only(
            "pk", "contact_id", "status"
        )
    }
    assert len(messages) == RECIPIENTS
    assert len({m.contact_id for m in messages.values()}) == RECIPIENTS
    assert set(recipients.values_list("message_id", flat=True)) == set(messages)
    # and each is sent, or uncertain: exactly those in a killed worker's hands
    by_status = Counter(m.status for m in messages.values())
    assert set(by_status) <= {Message.Status.SENT, Message.Status.UNCERTAIN}, by_status
    uncertain = {pk for pk, m in messages.items() if m.status == "uncertain"}
    assert uncertain == chaos.in_flight_at_kills
    # and what was waiting at a kill (a killed batch's unclaimed groups among
    # it) went out later, once (how much waited depends on when the kills land:
    # the figure is printed, not asserted)
    # (one waiting at the first kill may be in hand at the second: uncertain then)
    later = chaos.waiting_at_kills - chaos.in_flight_at_kills
    assert {messages[pk].status for pk in later} <= {"sent"}
    # and the ESP received no message and no address twice
    received = Counter(esp.message_ids())
    addresses = Counter(r.to for r in esp.received)
    duplicates = sum(n - 1 for n in received.values()) + sum(
        n - 1 for n in addresses.values()
    )
    assert duplicates == 0, received.most_common(3)
    # and every "sent" reached it; what else reached it was uncertain, not resent
    header = {m.message_id_header: pk for pk, m in messages.items()}
    sent = {h for h, pk in header.items() if messages[pk].status == "sent"}
    assert sent <= set(received)
    assert {header[h] for h in set(received) - sent} <= uncertain
    reached = len({header[h] for h in received} & uncertain)
    print(
        f"\ncampaign chaos: {RECIPIENTS} recipients, {by_status['sent']} sent, "
        f"{len(uncertain)} uncertain ({reached} of them reached the ESP), "
        f"{len(chaos.waiting_at_kills)} waiting at a kill sent later, "
        f"duplicates={duplicates}; {chaos.kills} kills of both workers, "
        f"{chaos.flushes} Redis flushes; {wall:.0f} s wall "
        f"({RECIPIENTS / wall:.0f} messages/s end to end)"
    )


def _progress(campaign: Campaign) -> str:
    counts = Counter(
        Message.objects.filter(campaign_id=campaign.pk).values_list("status", flat=True)
    )
    status = Campaign.objects.get(pk=campaign.pk).status
    return f"campaign still {status}: messages {dict(counts)}"

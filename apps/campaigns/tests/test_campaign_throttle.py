"""A campaign's rate holds across real worker processes: two workers taking its jobs
as fast as they can still send no more than its messages a minute."""

import datetime as dt

import pytest

from apps.campaigns.broadcasts import campaign_schedule
from apps.campaigns.models import Campaign, Message
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

RATE_PER_MINUTE = 120  # batches of 2, a second apart
PEOPLE = 24


def test_the_rate_holds_across_two_worker_processes(
    processes, people, make_campaign, tmp_path
):
    # given a campaign of 24 people at 120 a minute, and two workers + the scheduler
    outbox = tmp_path / "outbox.txt"
    processes.env.update(
        EMAIL_BACKEND="tests.esp.RecordingBackend", NUDGE_TEST_OUTBOX=str(outbox)
    )
    _, everyone = people(*[f"P{i}" for i in range(PEOPLE)])
    campaign = make_campaign(segments=[everyone], rate_per_minute=RATE_PER_MINUTE)
    processes.worker("worker-1.log", queues=("email", "default"))
    processes.worker("worker-2.log", queues=("email", "default"))
    processes.scheduler()

    # when it is sent now
    campaign_schedule(campaign=campaign)

    def sent() -> bool:
        return Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENT

    wait_for(sent, "the campaign to be sent", timeout=90)

    # then everyone got one, and none was claimed before its slot
    messages = list(
        Message.objects.filter(campaign_id=campaign.pk).values(
            "send_after", "claimed_at", "sent_at", "status"
        )
    )
    assert len(messages) == PEOPLE
    assert {m["status"] for m in messages} == {Message.Status.SENT}
    assert all(m["claimed_at"] >= m["send_after"] for m in messages)
    lines = outbox.read_text().splitlines()
    assert len(lines) == len(set(lines)) == PEOPLE
    # and in any ten seconds, at most the rate's share went (plus the batch that
    # may open the window)
    per_second = RATE_PER_MINUTE / 60
    claims = sorted(m["claimed_at"] for m in messages)
    for first in claims:
        window = [c for c in claims if first <= c < first + dt.timedelta(seconds=10)]
        assert len(window) <= 10 * per_second + 2, (first, len(window))
    # and the send took as long as the rate says, not less
    assert claims[-1] - claims[0] >= dt.timedelta(seconds=(PEOPLE / per_second) - 2)

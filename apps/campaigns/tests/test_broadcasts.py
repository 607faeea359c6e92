"""Broadcast campaigns: the audience snapshot, who is left out and why, time zones,
throttling, pause / resume / cancel (the A/B test: test_campaign_ab.py)."""

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from apps.campaigns.broadcasts import (
    CampaignError,
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    campaign_schedule,
)
from apps.campaigns.models import (
    Campaign,
    CampaignRecipient,
    Message,
    SendingLane,
    Topic,
)
from apps.campaigns.topics import topic_set
from apps.contacts.consent import ConsentProof, Source
from apps.contacts.models import ConsentStatus
from apps.contacts.suppression import address_suppress
from apps.core import clock
from apps.segments.services import segment_add_contacts

from .conftest import START, sent_to

pytestmark = pytest.mark.django_db
Status = Campaign.Status
Group = CampaignRecipient.Group


# -- the audience -------------------------------------------------------------------


def test_a_campaign_sent_now_reaches_each_person_in_its_segments_once(
    people, make_campaign, outbox, settle, frozen_clock
):
    # given three people in a segment, one of them also in a second segment
    (ada, _bob, _cy), everyone = people("Ada", "Bob", "Cy")
    (_,), _ = people("Dee", segment_name="VIP")
    vip = everyone.__class__.objects.get(name="VIP")
    segment_add_contacts(segment=vip, contact_ids=[ada.pk])
    campaign = make_campaign(segments=[everyone, vip])

    # when it is scheduled to go now and the workers run
    campaign_schedule(campaign=campaign, by="marketer")
    settle()

    # then each of the four got it once, personalised, and the campaign is sent
    assert sent_to(outbox) == [
        "ada@example.com",
        "bob@example.com",
        "cy@example.com",
        "dee@example.com",
    ]
    assert {e.subject for e in outbox} >= {"Ada, what's new in December"}
    campaign.refresh_from_db()
    assert campaign.status == Status.SENT
    assert campaign.audience_count == 4
    assert campaign.finished_at == START


def test_a_campaign_sent_now_starts_while_the_clock_runs(
    people, make_campaign, outbox, settle
):
    # given a campaign to go now, and a clock that moves (as in production)
    (_ada,), everyone = people("Ada")
    campaign = make_campaign(segments=[everyone])

    # when it is scheduled and the workers run, the time having moved on since
    campaign_schedule(campaign=campaign, by="marketer")
    settle()

    # then it started and went out: "now" was not always a moment away
    assert sent_to(outbox) == ["ada@example.com"]
    campaign.refresh_from_db()
    assert campaign.status in (Status.SENDING, Status.SENT)
    assert campaign.started_at is not None


def test_the_audience_is_fixed_when_the_send_starts(
    people, make_campaign, outbox, settle, frozen_clock
):
    # given a campaign whose start has been taken, then a new member joins
    _, everyone = people("Ada", "Bob")
    campaign = make_campaign(segments=[everyone], rate_per_minute=60)
    campaign_schedule(campaign=campaign)
    settle()
    (_late,), _ = people("Late")

    # when the rest of the send runs
    with clock.frozen(START + dt.timedelta(minutes=5)):
        settle()

    # then the newcomer is not in it
    assert "late@example.com" not in sent_to(outbox)
    assert CampaignRecipient.objects.filter(campaign=campaign).count() == 2


def test_exclusions_consent_topic_and_the_address_list_leave_people_out(
    people, make_campaign, outbox, settle, frozen_clock
):
    # given five people: one in an exclusion segment, one unsubscribed, one who left
    # the campaign's topic, one whose address is on the suppression list
    (_ada, bob, cy, dee, eve), everyone = people("Ada", "Bob", "Cy", "Dee", "Eve")
    (_,), customers = people("Zed", segment_name="Customers")
    segment_add_contacts(segment=customers, contact_ids=[bob.pk])
    cy.email_consent = ConsentStatus.UNSUBSCRIBED
    cy.save()
    topic = Topic.objects.create(
        name="Newsletter", slug="newsletter", default=Topic.Default.OPT_OUT
    )
    topic_set(
        contact=dee,
        topic=topic,
        subscribed=False,
        proof=ConsentProof(source=Source.STAFF),
    )
    address_suppress(email=eve.email, reason="bounced")
    campaign = make_campaign(segments=[everyone], topic=topic)
    campaign.exclude_segments.set([customers])

    # when it goes
    campaign_schedule(campaign=campaign)
    settle()

    # then only Ada got it, and the figures say why the others did not
    assert sent_to(outbox) == ["ada@example.com"]
    campaign.refresh_from_db()
    assert campaign.audience_count == 2  # Ada, and Eve (left out by the list)
    assert campaign.audience_detail["suppressed"] == 1
    assert campaign.status == Status.SENT
    # and the email's one-click unsubscribe leaves the topic
    assert "List-Unsubscribe" in outbox[0].extra_headers


def test_only_one_message_per_campaign_recipient_can_exist(
    people, make_campaign, frozen_clock
):
    (ada,), everyone = people("Ada")
    campaign = make_campaign(segments=[everyone])
    template = campaign.variants.get().template
    fields = dict(
        contact=ada,
        template=template,
        campaign_id=campaign.pk,
        campaign_recipient_id=1,
        created_at=START,
        send_after=START,
    )
    Message.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(**fields)


def test_two_contacts_in_one_campaign_merged_mid_send_get_one_email_between_them(
    people, make_campaign, outbox, settle, frozen_clock
):
    from apps.contacts.services import contact_merge

    # given Ada's two contacts in a campaign with a send window: the one in Tokyo
    # got it, the one in Paris waits for 08:00 there
    (first,), _ = people("Tokyo", timezone="Asia/Tokyo")
    (second,), everyone = people("Paris", timezone="Europe/Paris")
    campaign = make_campaign(
        segments=[everyone], window_start=dt.time(8), window_end=dt.time(20)
    )
    campaign_schedule(campaign=campaign)
    settle()
    assert sent_to(outbox) == ["tokyo@example.com"]

    # when the one who got it is merged into the other
    contact_merge(source=first, target=second, reason="same person")
    with clock.frozen(START + dt.timedelta(hours=2)):
        settle()

    # then the merge worked, the survivor holds the message, and nothing else went
    assert len(outbox) == 1
    assert Message.objects.get(campaign_id=campaign.pk).contact_id == second.pk
    campaign.refresh_from_db()
    assert campaign.status == Status.SENT


def test_a_campaign_with_problems_cannot_be_scheduled(people, make_campaign):
    (_,), everyone = people("Ada")
    campaign = make_campaign(segments=[everyone], send_when=Campaign.When.AT)
    with pytest.raises(CampaignError, match="Give the time it goes"):
        campaign_schedule(campaign=campaign)
    assert Campaign.objects.get(pk=campaign.pk).status == Status.DRAFT


def test_the_frequency_cap_skips_people_unless_the_campaign_is_must_send(
    people, make_campaign, outbox, settle, frozen_clock
):
    # given Ada already got a marketing email today, and a cap of one a day
    (_ada, _bob), everyone = people("Ada", "Bob")
    first = make_campaign(segments=[everyone], name="First")
    campaign_schedule(campaign=first)
    settle()
    outbox.clear()
    capped = make_campaign(segments=[everyone], name="Capped", frequency_cap_max=1)
    must = make_campaign(
        segments=[everyone],
        name="Must",
        frequency_cap_max=1,
        ignore_frequency_cap=True,
    )

    # when both go
    campaign_schedule(campaign=capped)
    settle()
    assert outbox == []
    campaign_schedule(campaign=must)
    settle()

    # then the capped one skipped both (they had one already), the must-send did not
    assert sent_to(outbox) == ["ada@example.com", "bob@example.com"]
    assert set(
        CampaignRecipient.objects.filter(campaign=capped).values_list(
            "skipped", flat=True
        )
    ) == {"frequency cap: already emailed enough recently"}


# -- time zones ---------------------------------------------------------------------


def test_a_local_time_campaign_reaches_each_person_at_nine_in_their_own_zone(
    people, make_campaign, outbox, settle, frozen_clock
):
    # given people in Tokyo, Paris and New York, and one with no zone (default:
    # London), and a campaign for 09:00 local on Tuesday 8 December
    (_tokyo,), everyone = people("Tokyo", timezone="Asia/Tokyo")
    people("Paris", timezone="Europe/Paris")
    people("York", timezone="America/New_York")
    people("Nowhere", timezone="Not/AZone")
    campaign = make_campaign(
        segments=[everyone],
        send_when=Campaign.When.LOCAL,
        local_date=dt.date(2026, 12, 8),
        local_time=dt.time(9, 0),
        default_timezone="Europe/London",
    )
    campaign_schedule(campaign=campaign)

    arrivals = {}
    # when time passes, hour by hour, over the day
    for hours in range(0, 34):
        with clock.frozen(START + dt.timedelta(hours=hours)):
            settle()
            for email in outbox:
                arrivals.setdefault(email.to[0], clock.now())

    # then each got it at their 09:00 (to the hour the clock was moved by)
    assert arrivals == {
        "tokyo@example.com": dt.datetime(2026, 12, 8, 0, 0, tzinfo=dt.UTC),
        "paris@example.com": dt.datetime(2026, 12, 8, 8, 0, tzinfo=dt.UTC),
        "nowhere@example.com": dt.datetime(2026, 12, 8, 9, 0, tzinfo=dt.UTC),
        "york@example.com": dt.datetime(2026, 12, 8, 14, 0, tzinfo=dt.UTC),
    }
    campaign.refresh_from_db()
    assert campaign.status == Status.SENT


def test_a_send_window_holds_people_until_it_opens_in_their_zone(
    people, make_campaign, outbox, settle, frozen_clock
):
    # given a campaign sent now (06:00 UTC) with a 08:00-20:00 window
    people("Tokyo", timezone="Asia/Tokyo")  # 15:00 there: inside
    (_,), everyone = people("Paris", timezone="Europe/Paris")  # 07:00: not yet
    campaign = make_campaign(
        segments=[everyone], window_start=dt.time(8), window_end=dt.time(20)
    )
    campaign_schedule(campaign=campaign)
    settle()
    assert sent_to(outbox) == ["tokyo@example.com"]

    # when Paris reaches 08:00
    with clock.frozen(START + dt.timedelta(hours=1)):
        settle()

    # then Paris gets it too
    assert sent_to(outbox) == ["paris@example.com", "tokyo@example.com"]


# -- throttling ---------------------------------------------------------------------


def test_the_campaign_rate_spaces_its_sends_whatever_the_workers_do(
    people, make_campaign, outbox, settle, run_jobs, frozen_clock
):
    # given 10 people and a limit of 120 a minute (batches of 2, one a second)
    (_, *_), everyone = people(*[f"P{i}" for i in range(10)])
    campaign = make_campaign(segments=[everyone], rate_per_minute=120)
    campaign_schedule(campaign=campaign)

    # when workers run as fast as they can at one instant
    settle()

    # then only the first batch went; the others wait for their slots
    assert len(outbox) == 2
    slots = sorted(
        set(
            Message.objects.filter(campaign_id=campaign.pk).values_list(
                "send_after", flat=True
            )
        )
    )
    assert slots == [START + dt.timedelta(seconds=s) for s in range(5)]
    # and a second later the next batch goes
    with clock.frozen(START + dt.timedelta(seconds=1)):
        run_jobs()
    assert len(outbox) == 4


def test_a_sending_lane_limits_every_campaign_through_it_together(
    people, make_campaign, outbox, settle, frozen_clock
):
    # given a lane of 60 a minute for everything, and two campaigns of 3 people
    SendingLane.objects.create(name="*", per_minute=60)
    (_, *_), everyone = people("A", "B", "C")
    first = make_campaign(segments=[everyone], name="One")
    second = make_campaign(segments=[everyone], name="Two")

    # when both go at once
    campaign_schedule(campaign=first)
    campaign_schedule(campaign=second)
    settle()

    # then their six messages have six different slots, a second apart
    slots = sorted(
        Message.objects.filter(campaign_id__in=[first.pk, second.pk]).values_list(
            "send_after", flat=True
        )
    )
    assert slots == [START + dt.timedelta(seconds=s) for s in range(6)]
    assert len(outbox) == 1


# -- pause, resume, cancel ----------------------------------------------------------


def test_a_paused_campaign_sends_nothing_until_it_resumes_where_it_stopped(
    people, make_campaign, outbox, settle, frozen_clock
):
    (_, *_), everyone = people(*[f"P{i}" for i in range(6)])
    campaign = make_campaign(segments=[everyone], rate_per_minute=60)
    campaign_schedule(campaign=campaign)
    settle()
    assert len(outbox) == 1

    # when it is paused and time passes
    assert campaign_pause(campaign=campaign)
    with clock.frozen(START + dt.timedelta(minutes=10)):
        settle()
        # then nothing more went
        assert len(outbox) == 1
        # when it resumes
        assert campaign_resume(campaign=campaign)
        settle()
    for seconds in range(1, 10):
        with clock.frozen(START + dt.timedelta(minutes=10, seconds=seconds)):
            settle()

    # then everyone got exactly one, and it finished
    assert len(outbox) == 6
    assert len(set(sent_to(outbox))) == 6
    campaign.refresh_from_db()
    assert campaign.status == Status.SENT


def test_a_cancelled_campaign_sends_no_more(
    people, make_campaign, outbox, settle, frozen_clock
):
    (_, *_), everyone = people(*[f"P{i}" for i in range(6)])
    campaign = make_campaign(segments=[everyone], rate_per_minute=60)
    campaign_schedule(campaign=campaign)
    settle()

    dropped = campaign_cancel(campaign=campaign)

    with clock.frozen(START + dt.timedelta(minutes=10)):
        settle()
    assert len(outbox) == 1
    assert dropped >= 1
    campaign.refresh_from_db()
    assert campaign.status == Status.CANCELLED
    assert not Message.objects.filter(
        campaign_id=campaign.pk, status=Message.Status.QUEUED
    ).exists()
    # and a cancelled campaign cannot be resumed or cancelled again
    assert not campaign_resume(campaign=campaign)
    assert campaign_cancel(campaign=campaign) is None


def test_a_cancel_stops_a_batch_already_sending_within_a_group(
    people, make_campaign, outbox, settle, frozen_clock, monkeypatch
):
    from apps.campaigns import delivery
    from apps.campaigns.recording import RECORD_EVERY

    # given a campaign of 60, all in one send job, cancelled by staff while its
    # worker hands over the first email
    _, everyone = people(*[f"P{i}" for i in range(60)])
    campaign = make_campaign(segments=[everyone])
    hand = delivery._hand_to_esp

    def cancel_during_the_first(message, email, mailer=None):
        if not outbox:
            campaign_cancel(campaign=Campaign.objects.get(pk=campaign.pk))
        return hand(message, email, mailer)

    monkeypatch.setattr(delivery, "_hand_to_esp", cancel_during_the_first)

    # when it is sent
    campaign_schedule(campaign=campaign)
    settle()

    # then only the group in hand at the cancel went; the rest were cancelled
    assert len(outbox) == RECORD_EVERY
    statuses = Message.objects.filter(campaign_id=campaign.pk).values_list(
        "status", flat=True
    )
    assert sorted(set(statuses)) == [Message.Status.CANCELLED, Message.Status.SENT]
    assert list(statuses).count(Message.Status.CANCELLED) == 60 - RECORD_EVERY


def test_a_paused_campaigns_messages_wait_unclaimed_and_resume_at_its_rate(
    people, make_campaign, outbox, settle, frozen_clock
):
    # given an unthrottled campaign of 6 paused before its send jobs ran
    _, everyone = people(*[f"P{i}" for i in range(6)])
    campaign = make_campaign(segments=[everyone])
    campaign_schedule(campaign=campaign)
    from apps.campaigns.broadcasts import campaign_start
    from apps.campaigns.dispatch import campaign_dispatch

    campaign_start(campaign_id=campaign.pk)
    campaign_dispatch(campaign_id=campaign.pk)
    assert campaign_pause(campaign=Campaign.objects.get(pk=campaign.pk))

    # when workers and ticks run for ten minutes
    for minutes in range(1, 11):
        with clock.frozen(START + dt.timedelta(minutes=minutes)):
            settle()

    # then nothing went, and nothing was claimed over and over meanwhile
    assert outbox == []
    waiting = Message.objects.filter(campaign_id=campaign.pk)
    assert set(waiting.values_list("status", "attempts")) == {("queued", 0)}

    # when it resumes with a rate of 120 a minute set meanwhile (batches of 2)
    Campaign.objects.filter(pk=campaign.pk).update(rate_per_minute=120)
    resumed_at = START + dt.timedelta(minutes=10)
    with clock.frozen(resumed_at):
        assert campaign_resume(campaign=Campaign.objects.get(pk=campaign.pk))
        settle()

    # then they go at fresh slots of the rate, not all at once
    assert len(outbox) == 2
    assert sorted(set(waiting.values_list("send_after", flat=True))) == [
        resumed_at + dt.timedelta(seconds=s) for s in range(3)
    ]


def test_a_domains_lane_does_not_lift_the_limit_of_the_lane_for_all_email(
    people, make_campaign, outbox, settle, frozen_clock
):
    # given a fast lane for the sender's domain and a slow one for all email
    SendingLane.objects.create(name="shop.example", per_minute=600)
    SendingLane.objects.create(name="*", per_minute=60)
    _, everyone = people("A", "B", "C")
    campaign = make_campaign(segments=[everyone], from_email="news@shop.example")

    campaign_schedule(campaign=campaign)
    settle()

    # then the slower of the two sets the pace: a second apart
    slots = sorted(
        Message.objects.filter(campaign_id=campaign.pk).values_list(
            "send_after", flat=True
        )
    )
    assert slots == [START + dt.timedelta(seconds=s) for s in range(3)]

"""Broadcasts on a clock that runs, as in production, after what a crash or a
flushed Redis leaves behind, and the snapshot's reading of the address list."""

import pytest
from django.conf import settings

from apps.campaigns.broadcasts import campaign_schedule, campaign_start
from apps.campaigns.delivery import _claim_many
from apps.campaigns.dispatch import campaign_dispatch
from apps.campaigns.models import Campaign, CampaignRecipient, Message
from apps.contacts.models import Contact
from apps.contacts.suppression import address_suppress

from .conftest import sent_to

pytestmark = pytest.mark.django_db


def test_a_campaign_sent_now_starts_on_a_running_clock(
    people, make_campaign, outbox, settle
):
    # given a campaign to two people, to go now, and the real clock (not frozen)
    (_, _), everyone = people("Ada", "Bob")
    campaign = make_campaign(segments=[everyone])

    # when it is scheduled and the workers run
    campaign_schedule(campaign=campaign, by="marketer")
    settle()

    # then it started, both got it, and it finished
    campaign.refresh_from_db()
    assert sent_to(outbox) == [
        "ada@example.com",
        "bob@example.com",
    ]
    assert campaign.status == Campaign.Status.SENT


def test_a_batch_killed_mid_send_loses_only_the_group_in_hand(
    people, make_campaign, outbox, later, frozen_clock
):
    # given a campaign's three messages, queued
    (_, _, _), everyone = people("Ada", "Bob", "Cy")
    campaign = make_campaign(segments=[everyone])
    campaign_schedule(campaign=campaign)
    campaign_start(campaign_id=campaign.pk)
    campaign_dispatch(campaign_id=campaign.pk)
    ids = sorted(Message.objects.values_list("pk", flat=True))
    # and a batch send of all three that had claimed its first group (here the
    # first message) when its worker was killed (nothing after the claim ran)
    (first,) = _claim_many(ids[:1])
    rest = list(Message.objects.filter(pk__in=ids[1:]).order_by("pk"))
    assert {m.status for m in rest} == {Message.Status.QUEUED}

    # when the claim times out and the workers and the tick run
    later(seconds=settings.NUDGE_SENDING_TIMEOUT_SECONDS + 1)

    # then the one in hand is uncertain (it may have gone), never sent again
    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses[first.pk] == Message.Status.UNCERTAIN
    # and the two it had not reached went out, once each, by another job
    assert [statuses[m.pk] for m in rest] == [Message.Status.SENT] * 2
    assert sent_to(outbox) == sorted(m.contact.email for m in rest)
    assert Message.objects.get(pk=rest[0].pk).attempts == 1
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT


def test_an_address_on_the_list_is_left_out_however_its_contact_writes_it(
    people, make_campaign, frozen_clock
):
    # given people whose addresses are on the list, one stored as listed and one
    # differing only in case and surrounding whitespace (written straight to the
    # row), and two whose addresses only look like listed ones
    (ada, bob, val, vann), everyone = people("Ada", "Bob", "Val", "Vann")
    for address in ("ada@example.com", "val@agency.gov", "ann@example.com"):
        address_suppress(email=address, reason="complained")
    stored = {
        ada: " ADA@Example.com\t",
        val: "val@agency.gov",
        vann: "vann@example.com",
        bob: "bob@example.gov",
    }
    for contact, email in stored.items():
        Contact.objects.filter(pk=contact.pk).update(email=email)
    campaign = make_campaign(segments=[everyone])

    # when the campaign starts
    campaign_schedule(campaign=campaign)
    campaign_start(campaign_id=campaign.pk)

    # then the snapshot skipped exactly the listed addresses, hashed as the list
    # hashes them (email_hash), on PostgreSQL as on SQLite
    skipped = dict(
        CampaignRecipient.objects.filter(campaign=campaign).values_list(
            "contact_id", "skipped"
        )
    )
    listed = "the address is on the suppression list"
    assert skipped == {ada.pk: listed, val.pk: listed, vann.pk: "", bob.pk: ""}
    campaign.refresh_from_db()
    assert campaign.audience_detail["suppressed"] == 2

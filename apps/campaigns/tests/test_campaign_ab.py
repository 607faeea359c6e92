"""Broadcast campaigns: the A/B winner, the holdout and its lift, and a topic
campaign's one-click unsubscribe."""

import datetime as dt

import pytest

from apps.campaigns.broadcasts import (
    campaign_schedule,
)
from apps.campaigns.models import (
    Campaign,
    CampaignRecipient,
    Message,
    Topic,
)
from apps.contacts.models import ConsentStatus
from apps.core import clock

from .conftest import START

pytestmark = pytest.mark.django_db
Status = Campaign.Status
Group = CampaignRecipient.Group


# -- A/B test and holdout -----------------------------------------------------------


def _open(campaign, label: str, share: float) -> None:
    """The ESP reports opens for ``share`` of the variant's test messages."""
    ids = list(
        CampaignRecipient.objects.filter(
            campaign=campaign, group=Group.TEST, variant__label=label
        )
        .order_by("rank")
        .values_list("message_id", flat=True)
    )
    Message.objects.filter(pk__in=ids[: round(len(ids) * share)]).update(
        opened_at=clock.now(), delivered_at=clock.now()
    )


def test_the_ab_winner_is_chosen_by_opens_and_goes_to_the_rest(
    people, make_campaign, newsletter_template, outbox, settle, frozen_clock
):
    # given 400 people, a test of 50% with two subject lines, decided after 4 hours
    (_, *_), everyone = people(*[f"P{i}" for i in range(400)])
    b = newsletter_template.__class__.objects.create(
        name="B",
        subject="Our December picks",
        html_body=newsletter_template.html_body,
        layout=newsletter_template.layout,
    )
    campaign = make_campaign(
        segments=[everyone],
        templates=[newsletter_template, b],
        test_percent=50,
        decide_after_hours=4,
    )
    campaign_schedule(campaign=campaign)
    settle()

    # then only the test group got it, 100 each
    assert len(outbox) == 200
    assert (
        sorted(
            CampaignRecipient.objects.filter(campaign=campaign, group=Group.TEST)
            .values_list("variant__label", flat=True)
            .order_by("variant__label")
        )
        == ["A"] * 100 + ["B"] * 100
    )

    # when B is opened twice as often and the decision time comes
    _open(campaign, "A", 0.2)
    _open(campaign, "B", 0.4)
    with clock.frozen(START + dt.timedelta(hours=3)):
        settle()
    assert len(outbox) == 200  # not yet
    with clock.frozen(START + dt.timedelta(hours=4, minutes=1)):
        settle()

    # then B went to the other 200, the verdict says why, and the campaign is sent
    campaign.refresh_from_db()
    assert campaign.winner.label == "B"
    assert campaign.verdict.startswith("B won on opens: 40.0% against 20.0% for A")
    assert len(outbox) == 400
    assert len({e.to[0] for e in outbox}) == 400
    assert sum(e.subject == "Our December picks" for e in outbox) == 300
    assert campaign.status == Status.SENT


def test_with_no_clear_winner_the_campaigns_rule_decides(
    people, make_campaign, newsletter_template, outbox, settle, frozen_clock
):
    (_, *_), everyone = people(*[f"P{i}" for i in range(100)])
    b = newsletter_template.__class__.objects.create(
        name="B", subject="B", html_body="<p>B</p>", layout=newsletter_template.layout
    )
    campaign = make_campaign(
        segments=[everyone],
        templates=[newsletter_template, b],
        test_percent=40,
        decide_after_hours=1,
        no_winner=Campaign.NoWinner.DEFAULT,
    )
    campaign_schedule(campaign=campaign)
    settle()
    _open(campaign, "A", 0.2)
    _open(campaign, "B", 0.25)

    with clock.frozen(START + dt.timedelta(hours=2)):
        settle()

    campaign.refresh_from_db()
    assert campaign.winner.label == "A"
    assert campaign.verdict.startswith("No clear winner on opens: too few in the test")
    assert "Sent the first variant, A" in campaign.verdict
    assert len(outbox) == 100


def test_the_holdout_gets_nothing_and_the_report_measures_the_lift(
    people, make_campaign, outbox, settle, frozen_clock
):
    from apps.campaigns.campaign_reports import campaign_report
    from apps.events.services import event_record

    # given 200 people, 10% held out, conversions counted on "order_completed"
    (_, *_), everyone = people(*[f"P{i}" for i in range(200)])
    campaign = make_campaign(
        segments=[everyone],
        holdout_percent=10,
        conversion_event="order_completed",
        conversion_window_hours=24,
    )
    campaign_schedule(campaign=campaign)
    settle()

    # then the 20 held out got nothing
    held = set(
        CampaignRecipient.objects.filter(
            campaign=campaign, group=Group.HOLDOUT
        ).values_list("contact__email", flat=True)
    )
    assert len(held) == 20
    assert len(outbox) == 180
    assert not held & {e.to[0] for e in outbox}

    # when 36 who got it and 2 held out buy within the day (one after it, ignored)
    got = list(
        CampaignRecipient.objects.filter(campaign=campaign, group=Group.REST)
        .order_by("rank")
        .values_list("contact_id", flat=True)
    )
    out = list(
        CampaignRecipient.objects.filter(
            campaign=campaign, group=Group.HOLDOUT
        ).values_list("contact_id", flat=True)
    )
    for n, contact_id in enumerate(got[:36] + out[:2]):
        event_record(
            contact_id=contact_id,
            name="order_completed",
            properties={"revenue": "25.50"},
            dedupe_key=f"order-{n}",
            timestamp=START + dt.timedelta(hours=2),
        )
    event_record(
        contact_id=got[40],
        name="order_completed",
        properties={"revenue": 99},
        dedupe_key="too-late",
        timestamp=START + dt.timedelta(days=2),
    )

    # then the report: 20% of recipients converted against 10% of the holdout
    campaign.refresh_from_db()
    report = campaign_report(campaign)
    assert (report.total.sent, report.total.conversions) == (180, 36)
    assert str(report.total.revenue) == "918.00"
    assert (report.holdout.recipients, report.holdout.conversions) == (20, 2)
    assert report.lift_points == 10.0


def test_a_topic_campaigns_one_click_unsubscribe_leaves_only_that_topic(
    people, make_campaign, outbox, settle, frozen_clock
):
    from django.test import Client

    from apps.campaigns.topics import subscribed_to

    topic = Topic.objects.create(
        name="Newsletter", slug="newsletter", default=Topic.Default.OPT_OUT
    )
    (ada,), everyone = people("Ada")
    campaign = make_campaign(segments=[everyone], topic=topic)
    campaign_schedule(campaign=campaign)
    settle()

    # when Ada's mail client posts the RFC 8058 one-click unsubscribe
    header = outbox[0].extra_headers["List-Unsubscribe"].strip("<>")
    response = Client().post(
        header, {"List-Unsubscribe": "One-Click"}, headers={"host": "testserver"}
    )

    # then she left the newsletter, and is still subscribed to email
    assert response.status_code in (200, 204)
    ada.refresh_from_db()
    assert not subscribed_to(ada, topic)
    assert ada.email_consent == ConsentStatus.SUBSCRIBED

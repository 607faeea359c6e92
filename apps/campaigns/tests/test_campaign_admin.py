"""The campaigns admin as each role uses it: the list, the draft's form and its
errors, review and send, test sends, progress, pause / resume / cancel, the
report and the archive copy (apps/campaigns/campaign_admin.py, campaign_pages.py)."""

import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from apps.campaigns.broadcasts import (
    CampaignError,
    campaign_schedule,
    campaign_start,
)
from apps.campaigns.models import Campaign, Message, SendingLane, Topic
from apps.contacts.models import ConsentStatus, SuppressedAddress, email_hash
from apps.core import clock
from apps.core.roles import roles_sync
from apps.segments.models import Segment
from apps.segments.services import segment_add_contacts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen(frozen_clock):
    return frozen_clock


@pytest.fixture
def as_role(db):
    from django.apps import apps

    roles_sync(apps)

    def login(role: str) -> Client:
        user = User.objects.create_user(
            f"{role.lower()}-user", email=f"{role.lower()}@team.example", password="pw"
        )
        user.is_staff = True
        user.save()
        user.groups.add(Group.objects.get(name=role))
        client = Client(raise_request_exception=False)
        client.force_login(user)
        return client

    return login


def _url(name: str, campaign: Campaign, *extra) -> str:
    return reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk, *extra])


def _form(segment, template, **overrides) -> dict:
    data = {
        "name": "Spring sale",
        "segments": [segment.pk],
        "send_when": "now",
        "default_timezone": "UTC",
        "frequency_cap_max": "3",
        "frequency_cap_hours": "24",
        "test_percent": "0",
        "winning_metric": "opens",
        "conversion_window_hours": "72",
        "revenue_property": "revenue",
        "decide_after_hours": "4",
        "no_winner": "leader",
        "holdout_percent": "0",
        "variants-TOTAL_FORMS": "1",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "1",
        "variants-MAX_NUM_FORMS": "1000",
        "variants-0-label": "A",
        "variants-0-template": str(template.pk),
    }
    data.update(overrides)
    return data


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_the_list_shows_each_campaigns_figures_in_a_fixed_number_of_queries(
    as_role, people, make_campaign, settle, outbox, django_assert_max_num_queries
):
    # given a sent campaign (two emails, one opened) and two drafts
    (ada, _bob), everyone = people("Ada", "Bob")
    sent = make_campaign(segments=[everyone])
    campaign_schedule(campaign=sent)
    settle()
    Message.objects.filter(contact=ada).update(opened_at=clock.now())
    for name in ("Draft 1", "Draft 2"):
        make_campaign(segments=[everyone], name=name)
    client = as_role("Marketer")

    # when the list is shown
    with django_assert_max_num_queries(12):
        page = client.get(reverse("admin:campaigns_campaign_changelist"))

    # then the sent one has its audience, sends and rates, the drafts dashes
    assert page.status_code == 200
    row = re.search(r"December newsletter.*?</tr>", page.content.decode(), re.S)[0]
    assert "Sent" in row and "50.0%" in row and "0.0%" in row
    assert ">2<" in row  # audience and sent
    assert page.content.decode().count("—") >= 6


def test_bad_settings_are_form_errors_on_their_fields(as_role, people, template):
    _, everyone = people("Ada")
    client = as_role("Marketer")
    page = client.post(
        reverse("admin:campaigns_campaign_add"),
        _form(
            everyone,
            template,
            test_percent="60",
            holdout_percent="40",
            default_timezone="Mars/Olympus",
            window_start="08:00",
            send_when="at",
        ),
    )
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert "under 100%" in str(errors["holdout_percent"])
    assert "Mars/Olympus" in str(errors["default_timezone"])
    assert "needs an end" in str(errors["window_end"])
    assert "Give the time it goes" in str(errors["send_at"])
    # and an A/B test with one variant is said on the variants
    assert "two or more variants" in page.content.decode()
    assert not Campaign.objects.exists()


def test_a_valid_campaign_is_saved_and_the_review_comes_next(as_role, people, template):
    _, everyone = people("Ada")
    client = as_role("Marketer")
    page = client.post(
        reverse("admin:campaigns_campaign_add"), _form(everyone, template)
    )
    campaign = Campaign.objects.get()
    assert page.status_code == 302 and page.url == _url("review", campaign)
    assert campaign.status == Campaign.Status.DRAFT
    assert [v.template for v in campaign.variants.all()] == [template]


def test_a_segment_sent_to_and_excluded_is_refused(as_role, people, template):
    _, everyone = people("Ada")
    page = as_role("Marketer").post(
        reverse("admin:campaigns_campaign_add"),
        _form(everyone, template, exclude_segments=[everyone.pk]),
    )
    assert "reaches nobody" in str(page.context["adminform"].form.errors)


def test_once_scheduled_the_page_is_read_only_with_a_banner(
    as_role, people, make_campaign
):
    _, everyone = people("Ada")
    campaign = make_campaign(segments=[everyone], send_when="at", send_at=clock.now())
    campaign_schedule(campaign=campaign)
    client = as_role("Marketer")
    page = client.get(_url("change", campaign))
    assert page.status_code == 200
    html = page.content.decode()
    assert "its settings can no longer be changed" in html
    assert 'name="name"' not in html  # no input: read-only
    refused = client.post(_url("change", campaign), {"name": "Renamed"})
    assert refused.status_code == 403
    campaign.refresh_from_db()
    assert campaign.name == "December newsletter"


def test_the_review_gives_every_figure_and_masks_addresses_from_viewers(
    as_role, people, make_campaign
):
    # given five people: one excluded, one without consent, one on the list,
    # one already emailed as often as the cap allows
    (ada, bob, cy, dee, eve), everyone = people("Ada", "Bob", "Cy", "Dee", "Eve")
    vips = Segment.objects.create(name="VIPs", kind=Segment.Kind.STATIC)
    segment_add_contacts(segment=vips, contact_ids=[bob.pk])
    cy.email_consent = ConsentStatus.UNSUBSCRIBED
    cy.save()
    now = clock.now()
    SuppressedAddress.objects.create(
        email_hash=email_hash(dee.email),
        reason="manual",
        created_at=now,
        updated_at=now,
    )
    campaign = make_campaign(segments=[everyone], frequency_cap_max=1)
    campaign.exclude_segments.set([vips])
    template = campaign.variants.get().template
    Message.objects.create(
        contact=eve, template=template, created_at=now, send_after=now
    )

    # when a Marketer reviews it
    page = as_role("Marketer").get(_url("review", campaign))
    html = page.content.decode()

    # then each reason has its count, and one person will receive it
    report = page.context["report"]
    assert (report.in_segments, report.excluded_by_segment) == (5, [("VIPs", 1)])
    assert (report.no_consent, report.on_suppression_list) == (1, 1)
    assert (report.over_frequency_cap, report.will_receive) == (1, 1)
    assert "Send to 1 person now" in html
    assert "ada@example.com" in html
    assert "Hi Ada" not in html  # the preview is for nobody until one is chosen

    # and a Viewer sees the same figures, Ada's address masked, and no button
    viewer = as_role("Viewer").get(_url("review", campaign) + f"?contact={ada.pk}")
    shown = viewer.content.decode()
    assert viewer.status_code == 200
    assert "ada@example.com" not in shown and "a••@example.com" in shown
    assert "Hi Ada" not in shown  # (a chosen contact is ignored for them)
    assert "Send to 1 person now" not in shown


def test_the_preview_renders_each_variant_for_a_chosen_contact_links_inert(
    as_role, people, make_campaign, newsletter_template
):
    (ada,), everyone = people("Ada")
    campaign = make_campaign(
        segments=[everyone], templates=[newsletter_template, newsletter_template]
    )
    page = as_role("Marketer").get(_url("review", campaign) + f"?contact={ada.pk}")
    previews = page.context["previews"]
    assert [p["subject"] for p in previews] == ["Ada, what's new in December"] * 2
    assert "Hi Ada" in previews[0]["html"]
    assert "/e/c/" not in previews[0]["html"]  # no click-tracked live link


def test_a_test_send_goes_to_the_address_and_counts_nowhere(
    as_role, people, make_campaign, run_jobs, outbox
):
    (ada,), everyone = people("Ada")
    topic = Topic.objects.create(name="News", slug="news")
    campaign = make_campaign(segments=[everyone], topic=topic)
    client = as_role("Marketer")
    variant = campaign.variants.get()

    page = client.post(
        _url("test_send", campaign),
        {"to_email": "me@team.example", "variant": variant.pk, "contact": ada.pk},
    )
    assert page.status_code == 302
    run_jobs()
    assert [(m.to, m.subject) for m in outbox] == [
        (["me@team.example"], "[TEST] Ada, what's new in December")
    ]
    test = Message.objects.get()
    assert test.is_test and test.topic == topic and test.campaign_id is None

    # a bad address is said, and nothing is sent
    bad = client.post(
        _url("test_send", campaign),
        {"to_email": "not an address", "variant": variant.pk},
        follow=True,
    )
    assert any("Test not sent" in m for m in _messages(bad))
    assert Message.objects.count() == 1
    # a Viewer may not, and a GET does nothing
    assert as_role("Viewer").post(_url("test_send", campaign)).status_code == 403
    assert client.get(_url("test_send", campaign)).status_code == 405


def test_confirming_schedules_it_by_whom_and_it_goes(
    as_role, people, make_campaign, settle, outbox
):
    _, everyone = people("Ada", "Bob")
    campaign = make_campaign(segments=[everyone])
    assert as_role("Viewer").post(_url("schedule", campaign)).status_code == 403
    client = as_role("Marketer")
    assert client.get(_url("schedule", campaign)).status_code == 405

    page = client.post(_url("schedule", campaign))
    assert page.status_code == 302 and page.url == _url("change", campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert campaign.scheduled_by == "marketer-user"
    settle()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT
    assert len(outbox) == 2

    # then its page shows the report, and the review sends back to it
    shown = client.get(_url("change", campaign)).content.decode()
    assert "All who got it" in shown and "Report" in shown
    assert client.get(_url("review", campaign)).status_code == 302


def test_a_campaign_with_problems_is_not_scheduled_and_says_why(
    as_role, people, make_campaign
):
    _, everyone = people("Ada")
    campaign = make_campaign(segments=[everyone])
    Campaign.objects.filter(pk=campaign.pk).update(send_when="at")
    page = as_role("Marketer").post(_url("schedule", campaign), follow=True)
    assert any("Give the time it goes" in m for m in _messages(page))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_an_unknown_time_zone_stops_scheduling(people, make_campaign):
    _, everyone = people("Ada")
    campaign = make_campaign(segments=[everyone], default_timezone="Europe/Pariss")
    with pytest.raises(CampaignError, match="not a time zone name"):
        campaign_schedule(campaign=campaign)


def _sending(make_campaign, segment) -> Campaign:
    campaign = make_campaign(segments=[segment])
    campaign_schedule(campaign=campaign)
    assert campaign_start(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    return campaign


def test_progress_is_json_for_every_role(as_role, people, make_campaign):
    _, everyone = people("Ada", "Bob")
    campaign = _sending(make_campaign, everyone)
    data = as_role("Viewer").get(_url("progress", campaign)).json()
    assert data["status"] == "sending" and data["status_label"] == "Sending"
    assert (data["to_send"], data["waiting"], data["percent"]) == (2, 2, 0)


def test_pause_resume_and_cancel_say_the_counts_so_far(as_role, people, make_campaign):
    _, everyone = people("Ada", "Bob")
    campaign = _sending(make_campaign, everyone)
    client = as_role("Marketer")
    assert as_role("Viewer").post(_url("control", campaign, "pause")).status_code == 403

    # cancel asks first, with the counts
    ask = client.get(_url("control", campaign, "cancel"))
    assert ask.status_code == 200
    assert "never made" in ask.content.decode()

    paused = client.post(_url("control", campaign, "pause"), follow=True)
    assert any("paused: 0 sent so far" in m for m in _messages(paused))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    # a button for another state does nothing, and says so
    again = client.post(_url("control", campaign, "pause"), follow=True)
    assert any("Nothing done" in m for m in _messages(again))
    client.post(_url("control", campaign, "resume"))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING
    cancelled = client.post(_url("control", campaign, "cancel"), follow=True)
    assert any("cancelled" in m for m in _messages(cancelled))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert client.post(_url("control", campaign, "explode")).status_code == 403


def test_the_archive_copy_is_for_nobody_with_no_live_link(
    as_role, people, make_campaign
):
    _, everyone = people("Ada")
    campaign = make_campaign(segments=[everyone])
    page = as_role("Viewer").get(_url("archive", campaign))
    assert page.status_code == 200
    html = page.context["rendered"]["html"]
    assert "Ada" not in html and "/e/u/" not in html
    assert page.context["rendered"]["subject"] == "Hello, what's new in December"


def test_sending_lanes_are_for_admins_only(as_role):
    SendingLane.objects.create(name="*", per_minute=600)
    url = reverse("admin:campaigns_sendinglane_changelist")
    assert as_role("Marketer").get(url).status_code == 403
    assert as_role("Admin").get(url).status_code == 200


def test_the_campaigns_own_sender_is_the_one_its_emails_and_tests_carry(
    as_role, people, template, settle, outbox
):
    # (delivery used the template's sender only: the campaign's was ignored)
    _, everyone = people("Ada")
    client = as_role("Marketer")
    client.post(
        reverse("admin:campaigns_campaign_add"),
        _form(
            everyone,
            template,
            from_name="The Shop",
            from_email="news@shop.example",
            reply_to="help@shop.example",
        ),
    )
    campaign = Campaign.objects.get()
    review = client.get(_url("review", campaign)).content.decode()
    assert "The Shop &lt;news@shop.example&gt;" in review
    client.post(
        _url("test_send", campaign),
        {"to_email": "me@team.example", "variant": campaign.variants.get().pk},
    )
    client.post(_url("schedule", campaign))
    settle()
    assert sorted((m.to[0], m.from_email, tuple(m.reply_to)) for m in outbox) == [
        ("ada@example.com", "The Shop <news@shop.example>", ("help@shop.example",)),
        ("me@team.example", "The Shop <news@shop.example>", ("help@shop.example",)),
    ]

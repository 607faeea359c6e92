"""The campaigns admin in headless Chromium: a Marketer creates a campaign by
clicking, reviews it, previews it as a contact, sends a test, sends it, and
watches its progress reach 100% on the page without reloading it (the page polls
the progress JSON through static/nudge/admin/campaign_progress.js). The workers'
part runs in this thread (settle), with the clock moved, while the page watches.
"""

import datetime as dt
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.urls import reverse
from playwright.sync_api import expect

from apps.campaigns import campaign_pages
from apps.campaigns.models import Campaign, EmailTemplate, Message
from apps.contacts.models import Contact
from apps.core import clock
from apps.core.roles import roles_sync
from apps.segments.models import Segment
from apps.segments.services import segment_add_contacts

from .conftest import PASSWORD

pytestmark = pytest.mark.browser

SCREENS = Path("/work/notes/screens")
PEOPLE = 30
# 600 a minute: batches of 10, a second apart, so the page sees it part-way.
RATE = 600
# A Tuesday morning (UTC).
START = dt.datetime(2026, 3, 17, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def shop(transactional_db, layout):
    template = EmailTemplate.objects.create(
        name="Spring newsletter",
        subject="{{ contact.first_name | default: 'Hello' }}, spring is here",
        html_body="<h1>Spring picks</h1><p>Hi {{ contact.first_name }}, "
        "here is what is new this month.</p>",
        layout=layout,
    )
    segment = Segment.objects.create(name="Customers", kind=Segment.Kind.STATIC)
    names = ["Ada", "Bob", "Cy"] + [f"Person{n}" for n in range(PEOPLE - 3)]
    contacts = [
        Contact.objects.create(email=f"{name.lower()}@example.com", first_name=name)
        for name in names
    ]
    segment_add_contacts(segment=segment, contact_ids=[c.pk for c in contacts])
    return template, segment


@pytest.fixture
def marketer_page(page):
    roles_sync(apps)
    user = User.objects.create_user(
        "marketer", email="marketer@team.example", password=PASSWORD
    )
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name="Marketer"))
    page.goto(reverse("admin:login"))
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{reverse('admin:index')}")
    return page


def _shot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"campaign-{name}.png"), full_page=True)


def test_a_marketer_creates_previews_tests_and_sends_a_campaign_and_watches_it_go(
    marketer_page, shop, outbox, settle, run_jobs, monkeypatch
):
    page = marketer_page
    template, _segment = shop
    monkeypatch.setattr(campaign_pages, "POLL_MS", 250)
    with clock.frozen(START):
        # given the add page, when the campaign is made by clicking
        page.goto(reverse("admin:campaigns_campaign_add"))
        page.locator("#id_name").fill("Spring newsletter")
        page.locator("#id_segments_from").select_option(label="Customers")
        page.locator("#id_segments_add").click()
        page.locator("#id_variants-0-template").select_option(label=str(template))
        page.locator("#id_rate_per_minute").fill(str(RATE))
        page.get_by_role("button", name="Save", exact=True).click()

        # then the review comes next, with who will receive it
        campaign = Campaign.objects.get()
        page.wait_for_url(
            f"**{reverse('admin:campaigns_campaign_review', args=[campaign.pk])}"
        )
        expect(page.locator("#will-receive")).to_have_text(str(PEOPLE))
        confirm = page.get_by_role("button", name=f"Send to {PEOPLE} people now")
        expect(confirm).to_be_visible()

        # when it is previewed as Ada
        page.locator("#preview-contact").select_option(label="ada@example.com")
        page.get_by_role("button", name="Preview").click()
        subject = page.locator('[data-role="preview-subject"]')
        expect(subject).to_have_text("Ada, spring is here")
        frame = page.frame_locator('iframe[title="Preview of A"]')
        expect(frame.locator("p").first).to_contain_text("Hi Ada")
        _shot(page, "review")

        # when a test is sent to the marketer's own address
        test_box = page.locator("#review-test-send")
        expect(test_box.get_by_label("Send to")).to_have_value("marketer@team.example")
        test_box.get_by_role("button", name="Send test").click()
        expect(page.locator(".messagelist")).to_contain_text("queued to marketer@")
        run_jobs()
        assert [(m.to, m.subject) for m in outbox] == [
            (["marketer@team.example"], "[TEST] Ada, spring is here")
        ]

        # when it is sent
        page.get_by_role("button", name=f"Send to {PEOPLE} people now").click()
        page.wait_for_url(
            f"**{reverse('admin:campaigns_campaign_change', args=[campaign.pk])}"
        )
        progress = page.locator("#campaign-progress")
        expect(progress.locator('[data-field="status_label"]')).to_have_text(
            "Scheduled"
        )
        # (a reload would lose this)
        page.evaluate("window.stillTheSamePage = true")

        # then, as the workers go and the clock moves, the page follows
        settle()
        percent = progress.locator('[data-field="percent"]')
        expect(percent).to_have_text("33")
        expect(progress.locator('[data-field="status_label"]')).to_have_text("Sending")
        expect(progress.get_by_role("button", name="Pause")).to_be_visible()
        _shot(page, "progress")
        clock.advance(dt.timedelta(seconds=1))
        settle()
        expect(percent).to_have_text("67")
        clock.advance(dt.timedelta(seconds=1))
        settle()
        expect(percent).to_have_text("100")
        expect(progress.locator('[data-field="status_label"]')).to_have_text("Sent")
        expect(progress.get_by_role("button", name="Pause")).to_be_hidden()
        expect(progress.get_by_role("link", name="Show the report")).to_be_visible()
        assert page.evaluate("window.stillTheSamePage") is True

    # and every customer got it once, the test besides
    assert len(outbox) == PEOPLE + 1
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT

    # and the report shows it, once the ESP has reported some opens
    opened = Message.objects.filter(campaign_id=campaign.pk).order_by("pk")[:12]
    Message.objects.filter(pk__in=[m.pk for m in opened]).update(
        opened_at=clock.now(), delivered_at=clock.now()
    )
    progress.get_by_role("link", name="Show the report").click()
    report = page.locator("#campaign-report")
    expect(report).to_contain_text("All who got it")
    expect(report).to_contain_text("40.0%")
    _shot(page, "report")
    page.goto(reverse("admin:campaigns_campaign_changelist"))
    expect(page.locator("#result_list")).to_contain_text("40.0%")
    _shot(page, "list")

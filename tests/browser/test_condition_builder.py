"""static/nudge/admin/condition_builder.js in headless Chromium, against a live server.

A marketer builds a segment by clicking and typing, watches the live preview, saves,
and finds the rules again when the segment is reopened. Nothing sleeps: the tests
wait on what the page shows (Playwright's expect) and drain the job queues in-process.
"""

import datetime as dt
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import expect

from apps.contacts.models import Contact
from apps.core import clock
from apps.events.models import Event
from apps.events.services import source_create
from apps.segments.models import Segment

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1280, "height": 900}

SCREENSHOT = Path(settings.BASE_DIR) / "var" / "screenshots" / "segment-builder.png"

PRO_WINDOW_SHOPPERS = {
    "version": 1,
    "all": [
        {"attribute": "plan", "op": "eq", "value": "pro"},
        {
            "event": "product_viewed",
            "count": {"op": "gte", "value": 2},
            "window": {"last": 7, "unit": "days"},
            "where": [{"property": "category", "op": "eq", "value": "shoes"}],
        },
    ],
}


@pytest.fixture
def shoppers(transactional_db):
    """12 contacts; exactly 3 are on pro and viewed shoes twice in the last 7 days."""
    source, _key = source_create(name="Backend", kind="server")
    now = clock.now()
    sent = iter(range(1000))

    def viewed(contact, *, days_ago: float, times: int = 1, category="shoes"):
        for _ in range(times):
            at = now - dt.timedelta(days=days_ago)
            Event.objects.create(
                contact=contact,
                source=source,
                name="product_viewed",
                properties={"category": category, "price": 129},
                timestamp=at,
                received_at=at,
                message_id=f"m-{next(sent)}",
            )

    pro = [
        Contact.objects.create(email=f"pro{n}@example.com", attributes={"plan": "pro"})
        for n in range(6)
    ]
    free = [
        Contact.objects.create(
            email=f"free{n}@example.com", attributes={"plan": "free"}
        )
        for n in range(6)
    ]
    viewed(pro[0], days_ago=1, times=2)
    viewed(pro[1], days_ago=2, times=3)
    viewed(pro[2], days_ago=6, times=2)
    viewed(pro[3], days_ago=1)  # once only
    viewed(pro[4], days_ago=10, times=2)  # too long ago
    viewed(pro[5], days_ago=1, times=2, category="hats")  # not shoes
    viewed(free[0], days_ago=1, times=3)  # not on pro
    return pro[:3]


def builder(page):
    root = page.locator("#nudge-condition-builder")
    expect(root).to_have_attribute("data-state", "ready")
    return root


def rule(page, n: int):
    return page.locator('[data-role="rule"]').nth(n)


def add_plan_is_pro(page):
    page.locator('[data-role="add-rule"]').first.click()
    first = rule(page, 0)
    expect(first.locator('[data-role="rule-type"]')).to_be_focused()
    first.get_by_label("Attribute").fill("plan")
    expect(first.locator('[data-role="op"]')).to_have_value("eq")
    first.get_by_label("Value", exact=True).fill("pro")


def add_viewed_shoes_twice_this_week(page, *, times: str = "2"):
    page.locator('[data-role="add-rule"]').first.click()
    second = rule(page, 1)
    second.get_by_label("Rule type").select_option(label="Event count")
    second.get_by_label("Event name").fill("product_viewed")
    second.get_by_label("How many times").select_option("gte")
    second.get_by_label("Number of times").fill(times)
    second.get_by_label("Time window", exact=True).select_option(label="in the last")
    second.get_by_label("Time window: how many").fill("7")
    second.get_by_label("Time window: unit").select_option("days")
    second.get_by_role("button", name="Add a property filter").click()
    second.get_by_label("Property", exact=True).fill("category")
    second.locator('[data-role="filter"] [data-role="value"]').fill("shoes")


def test_a_segment_built_by_clicking_previews_saves_and_reopens_with_its_rules(
    admin_page, shoppers, run_jobs
):
    page = admin_page
    # given the add segment page
    page.goto(reverse("admin:segments_segment_add"))
    area = builder(page)
    expect(page.locator("#id_condition")).to_be_hidden()
    page.locator("#id_name").fill("Pro window shoppers")

    # when the marketer adds "plan is pro" and "viewed shoes twice this week"
    add_plan_is_pro(page)
    expect(area.locator(".nudge-count")).to_have_text("6 contacts match")
    add_viewed_shoes_twice_this_week(page)

    # then the preview says it in English, counts 3 and lists them
    expect(area.locator(".nudge-count")).to_have_text("3 contacts match")
    expect(area.locator(".nudge-sentence")).to_have_text(
        "Plan is “pro” and Product Viewed where category is “shoes” "
        "at least 2 times in the last 7 days"
    )
    expect(area.locator(".nudge-errors")).to_be_empty()
    sample = area.locator(".nudge-sample a")
    expect(sample).to_have_count(3)
    assert sorted(sample.all_inner_texts()) == sorted(c.email for c in shoppers)
    assert json.loads(page.locator("#id_condition").input_value()) == (
        PRO_WINDOW_SHOPPERS
    )
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    area.screenshot(path=str(SCREENSHOT))

    # when it is saved and the refresh job runs
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(f"**{reverse('admin:segments_segment_changelist')}")
    run_jobs()

    # then the stored condition is the one built, with its 3 members
    segment = Segment.objects.get(name="Pro window shoppers")
    assert segment.condition == PRO_WINDOW_SHOPPERS
    segment.refresh_from_db()
    assert segment.member_count == 3

    # when it is reopened, then the two rules are there as they were entered
    page.goto(reverse("admin:segments_segment_change", args=[segment.pk]))
    area = builder(page)
    first, second = rule(page, 0), rule(page, 1)
    expect(first.get_by_label("Rule type")).to_have_value("attribute")
    expect(first.get_by_label("Attribute")).to_have_value("plan")
    expect(first.get_by_label("Operator")).to_have_value("eq")
    expect(first.get_by_label("Value", exact=True)).to_have_value("pro")
    expect(second.get_by_label("Rule type")).to_have_value("event")
    expect(second.get_by_label("Event name")).to_have_value("product_viewed")
    expect(second.get_by_label("How many times")).to_have_value("gte")
    expect(second.get_by_label("Number of times")).to_have_value("2")
    expect(second.get_by_label("Time window: how many")).to_have_value("7")
    expect(second.get_by_label("Property", exact=True)).to_have_value("category")
    expect(area.locator(".nudge-count")).to_have_text("3 contacts match")

    # ... and saving it untouched stores the same condition
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(f"**{reverse('admin:segments_segment_changelist')}")
    segment.refresh_from_db()
    assert segment.condition == PRO_WINDOW_SHOPPERS


def test_a_rule_left_incomplete_shows_the_error_and_is_not_saved(admin_page, shoppers):
    page = admin_page
    page.goto(reverse("admin:segments_segment_add"))
    area = builder(page)
    page.locator("#id_name").fill("Half done")

    # when the count of an event rule is left empty
    add_plan_is_pro(page)
    add_viewed_shoes_twice_this_week(page, times="")

    # then the preview names the problem and outlines the rule
    expect(area.locator(".nudge-errors")).to_contain_text(
        "all[1].count.value: a whole number, 0 or more"
    )
    expect(area.locator(".nudge-count")).to_be_empty()
    expect(rule(page, 1)).to_have_class("nudge-rule nudge-invalid")
    expect(rule(page, 0)).not_to_have_class("nudge-rule nudge-invalid")

    # when they save anyway, then the server refuses, and the rules are still there
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-condition .errorlist")).to_contain_text(
        "all[1].count.value"
    )
    assert not Segment.objects.exists()
    builder(page)
    expect(rule(page, 1).get_by_label("Event name")).to_have_value("product_viewed")
    expect(rule(page, 1).get_by_label("Number of times")).to_have_value("")

    # when the count is filled in, then the segment saves
    rule(page, 1).get_by_label("Number of times").fill("2")
    expect(area.locator(".nudge-count")).to_have_text("3 contacts match")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(f"**{reverse('admin:segments_segment_changelist')}")
    assert Segment.objects.get().condition == PRO_WINDOW_SHOPPERS


def test_parts_the_builder_cannot_show_are_kept_and_unknown_operators_reported(
    admin_page, shoppers
):
    page = admin_page
    # given a segment stored with an unknown operator and a node type from elsewhere
    stored = {
        "version": 1,
        "any": [
            {"attribute": "plan", "op": "gtt", "value": "pro"},
            {"geofence": {"lat": 52.5, "lon": 13.4}, "radius_km": 5},
            {"not": {"consent": ["subscribed", "pending"]}},
        ],
    }
    segment = Segment.objects.create(name="Imported", condition=stored)

    # when it is opened
    page.goto(reverse("admin:segments_segment_change", args=[segment.pk]))
    area = builder(page)

    # then the unknown node is shown read-only, the operator kept and both reported
    expect(page.locator('[data-role="raw"]')).to_contain_text('"geofence"')
    expect(rule(page, 0).get_by_label("Operator")).to_have_value("gtt")
    expect(rule(page, 2).get_by_label("Rule type")).to_have_value("consent")
    expect(rule(page, 2).locator('[data-role="not"]')).to_be_checked()
    expect(area.locator(".nudge-errors")).to_contain_text(
        "any[0].op: unknown operator 'gtt'"
    )
    expect(area.locator(".nudge-errors")).to_contain_text("any[1]: unknown condition")

    # when the operator is fixed, then the unknown node is still in the JSON
    rule(page, 0).get_by_label("Operator").select_option("eq")
    expect(area.locator(".nudge-errors")).not_to_contain_text("any[0]")
    condition = json.loads(page.locator("#id_condition").input_value())
    assert condition["any"][0] == {"attribute": "plan", "op": "eq", "value": "pro"}
    assert condition["any"][1:] == stored["any"][1:]


def test_the_builder_hides_for_a_static_list_and_types_trait_values(
    admin_page, shoppers
):
    page = admin_page
    page.goto(reverse("admin:segments_segment_add"))
    area = builder(page)

    # when a trait rule is given a number and a list of true / false values
    page.locator('[data-role="add-rule"]').first.click()
    page.get_by_label("Attribute").fill("seats")
    page.get_by_label("Operator").select_option("gte")
    page.get_by_label("Type of value").select_option("number")
    page.get_by_label("Value", exact=True).fill("5")
    page.get_by_role("button", name="Add group").click()
    group = area.locator('[data-role="group"] [data-role="group"]')
    group.get_by_label("Match all or any of these rules").select_option("any")
    group.get_by_label("Attribute").fill("trial")
    group.get_by_label("Operator").select_option("in")
    group.get_by_label("Type of value").select_option("bool")
    group.get_by_label("Values, separated by commas").fill("true, false")
    group.locator('[data-role="not"]').first.check()

    # then the JSON carries typed values
    expect(area.locator(".nudge-sentence")).to_contain_text("Seats is at least 5")
    assert json.loads(page.locator("#id_condition").input_value()) == {
        "version": 1,
        "all": [
            {"attribute": "seats", "op": "gte", "value": 5},
            {
                "not": {
                    "any": [{"attribute": "trial", "op": "in", "value": [True, False]}]
                }
            },
        ],
    }

    # when the segment becomes a static list, then the builder goes away
    page.locator("#id_kind").select_option("static")
    expect(area).to_be_hidden()
    page.locator("#id_kind").select_option("dynamic")
    expect(area).to_be_visible()


def test_a_marketer_picks_a_topic_subscription_rule(admin_page, transactional_db):
    # given two topics and a contact who left the opt-out newsletter
    from apps.campaigns.models import Topic
    from apps.campaigns.topics import topic_set
    from apps.contacts.consent import ConsentProof, Source

    newsletter = Topic.objects.create(
        name="Newsletter", slug="newsletter", default=Topic.Default.OPT_OUT
    )
    Topic.objects.create(name="Offers", slug="offers")
    gone = Contact.objects.create(email="gone@example.com")
    Contact.objects.create(email="stays@example.com")
    topic_set(
        contact=gone,
        topic=newsletter,
        subscribed=False,
        proof=ConsentProof(source=Source.STAFF),
    )
    page = admin_page
    page.goto(reverse("admin:segments_segment_add"))
    area = builder(page)
    # when the marketer adds a Topic subscription rule for the newsletter
    page.locator('[data-role="add-rule"]').first.click()
    first = rule(page, 0)
    first.get_by_label("Rule type").select_option(label="Topic subscription")
    first.get_by_label("Topic", exact=True).select_option(label="Newsletter")
    # then it reads in English and counts everyone who did not leave it
    expect(area.locator(".nudge-sentence")).to_have_text(
        "Is subscribed to the topic “Newsletter”"
    )
    expect(area.locator(".nudge-count")).to_have_text("1 contact matches")
    # when they flip it to "is not subscribed"
    first.get_by_label("Subscribed or not").select_option(label="is not subscribed")
    expect(area.locator(".nudge-count")).to_have_text("1 contact matches")
    assert json.loads(page.locator("#id_condition").input_value()) == {
        "version": 1,
        "all": [{"topic": "newsletter", "subscribed": False}],
    }

"""nudge.js and the server's consent gate agree: the snippet sends the visitor's
consent categories as Segment's context.consent.categoryPreferences, with the
category names the Source is gated on, and the server keeps only what that category
allows. Headless Chromium against a live server; nothing sleeps (see
test_snippet.py)."""

import pytest
from django.urls import reverse

from apps.events.demo import DEMO_CONSENT_CATEGORY, demo_source
from apps.events.models import Event
from apps.events.privacy import dropped_without_consent

from .test_snippet import LOADED, flush, nudge_cookie

pytestmark = pytest.mark.browser

MARKETING_ONLY = {"categoryPreferences": {DEMO_CONSENT_CATEGORY: True}}


@pytest.fixture
def shop(transactional_db):
    """The demo shop's source, gated on the category its consent page asks for."""
    source = demo_source()
    assert source.consent_category == DEMO_CONSENT_CATEGORY
    return source


def nudge_storage(page) -> list[str]:
    return page.evaluate(
        "() => Object.keys(localStorage).filter(key => key.startsWith('nudge'))"
    )


def test_accepting_on_a_page_with_a_consent_category_sends_it_with_every_event(
    page, shop
):
    # given the consent page, whose snippet has consentCategory: 'Marketing'
    page.goto(reverse("demo:consent"))
    page.wait_for_function(LOADED)

    # when the visitor accepts and does something
    page.get_by_role("button", name="Accept").click()
    page.get_by_role("button", name="Send a test event").click()

    # then every event carries the category, and the server kept them all
    assert flush(page) == {"pending": 0, "error": None}
    events = list(Event.objects.all())
    assert sorted(event.name for event in events) == ["consent_demo_clicked", "page"]
    assert [event.context["consent"] for event in events] == [MARKETING_ONLY] * 2
    assert dropped_without_consent([shop.pk]) == {shop.pk: 0}

    # when they come back later, then the answer, categories and all, is remembered
    page.reload()
    assert flush(page) == {"pending": 0, "error": None}
    assert Event.objects.filter(name="page").count() == 2
    assert all(
        event.context["consent"] == MARKETING_ONLY for event in Event.objects.all()
    )


def test_a_visitor_who_declines_the_sources_category_is_not_tracked(page, shop):
    api_requests: list[str] = []
    page.on(
        "request",
        lambda request: "/api/v1/" in request.url and api_requests.append(request.url),
    )
    # given the consent page
    page.goto(reverse("demo:consent"))
    page.wait_for_function(LOADED)

    # when the consent tool reports analytics accepted but marketing declined
    page.evaluate(
        "() => nudge('consent', {Marketing: false, Analytics: true, Ads: 'maybe'})"
    )
    page.evaluate("() => nudge('track', 'after_declining', {})")

    # then the snippet neither stores nor sends anything
    assert flush(page) == {"pending": 0, "error": None}
    assert api_requests == []
    assert nudge_cookie(page) is None
    assert nudge_storage(page) == []
    assert not Event.objects.exists()


def test_categories_the_snippet_sends_are_checked_by_the_server_gate(page, shop):
    # given a shop page whose snippet does not wait for consent (no category of
    # its own), whose page view went without a consent context
    page.goto(reverse("demo:shop"))
    page.wait_for_function(LOADED)
    assert flush(page) == {"pending": 0, "error": None}

    # when its consent tool reports marketing declined, and the page tracks
    page.evaluate("() => nudge('consent', {Marketing: false, Analytics: true})")
    page.evaluate("() => nudge('track', 'declined_marketing', {})")

    # then the snippet sends it with the categories, gets its success (the queue
    # is empty), and the server keeps nothing of it but the count
    assert flush(page) == {"pending": 0, "error": None}
    assert not Event.objects.filter(name="declined_marketing").exists()
    assert dropped_without_consent([shop.pk]) == {shop.pk: 1}

    # when the visitor changes their mind (the category in another case)
    page.evaluate("() => nudge('consent', {marketing: true, Analytics: true})")
    page.evaluate("() => nudge('track', 'accepted_marketing', {})")

    # then that event is kept, with the categories it was sent with
    assert flush(page) == {"pending": 0, "error": None}
    kept = Event.objects.get(name="accepted_marketing")
    assert kept.context["consent"] == {
        "categoryPreferences": {"marketing": True, "Analytics": True}
    }
    assert "consent" not in Event.objects.get(name="page").context

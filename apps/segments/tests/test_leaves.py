"""Each leaf type on hand-made data, both implementations at once (see conftest)."""

import datetime as dt

import pytest

from apps.segments.models import Segment, SegmentMembership

pytestmark = pytest.mark.django_db
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def test_attribute_comparisons_are_typed(make_contact, matches):
    pro = make_contact(attributes={"plan": "pro", "seats": 10, "vip": True})
    free = make_contact(attributes={"plan": "free", "seats": "10"})
    bare = make_contact(attributes={})
    assert matches({"attribute": "plan", "op": "eq", "value": "pro"}) == {pro.pk}
    assert matches({"attribute": "plan", "op": "ne", "value": "pro"}) == {
        free.pk,
        bare.pk,
    }
    assert matches({"attribute": "seats", "op": "gte", "value": 5}) == {
        pro.pk
    }  # "10" is text
    assert matches({"attribute": "seats", "op": "eq", "value": "10"}) == {free.pk}
    assert matches({"attribute": "vip", "op": "eq", "value": True}) == {pro.pk}
    assert matches({"attribute": "plan", "op": "in", "value": ["free", "team"]}) == {
        free.pk
    }
    assert matches({"attribute": "plan", "op": "exists"}) == {pro.pk, free.pk}
    assert matches({"attribute": "plan", "op": "not_exists"}) == {bare.pk}


def test_text_operators_ignore_ascii_case(make_contact, matches):
    gmail = make_contact(email="ada@Gmail.com", attributes={"company": "ACME Corp"})
    make_contact(email="bob@example.com", attributes={"company": "Initech"})
    assert matches({"attribute": "email", "op": "contains", "value": "gmail"}) == {
        gmail.pk
    }
    assert matches({"attribute": "company", "op": "starts_with", "value": "acme"}) == {
        gmail.pk
    }


def test_contains_on_a_list_trait_means_has_the_element(make_contact, matches):
    tagged = make_contact(attributes={"tags": ["vip", "beta"]})
    make_contact(attributes={"tags": ["vipish"]})
    assert matches({"attribute": "tags", "op": "contains", "value": "vip"}) == {
        tagged.pk
    }


def test_nested_traits(make_contact, matches):
    paris = make_contact(attributes={"address": {"city": "Paris"}})
    make_contact(attributes={"address": "Paris"})
    assert matches({"attribute": "address.city", "op": "eq", "value": "Paris"}) == {
        paris.pk
    }


def test_date_traits_relative_absolute_and_anniversary(make_contact, matches):
    renews_soon = make_contact(attributes={"renews_on": "2026-12-01"})
    renewed = make_contact(attributes={"renews_on": "2026-11-01"})
    birthday_today = make_contact(attributes={"birthday": "1990-11-25"})
    # on Kiritimati (UTC+14) it is already the 26th at 12:00 UTC
    birthday_tokyo = make_contact(
        attributes={"birthday": "1985-11-26"}, timezone="Pacific/Kiritimati"
    )
    make_contact(attributes={"birthday": "not a date"})
    assert matches({"attribute": "renews_on", "op": "within_future", "value": 7}) == {
        renews_soon.pk
    }
    assert matches(
        {"attribute": "renews_on", "op": "before", "value": "2026-11-25"}
    ) == {renewed.pk}
    assert matches({"attribute": "birthday", "op": "anniversary"}) == {
        birthday_today.pk,
        birthday_tokyo.pk,
    }
    assert matches({"attribute": "renews_on", "op": "anniversary", "value": 6}) == {
        renews_soon.pk
    }


def test_builtin_fields(make_contact, matches, now):
    from apps.contacts.models import Contact

    old = make_contact(email="old@example.com", score=40)
    new = make_contact(email="new@example.com", score=5, last_seen_at=now - D)
    Contact.objects.filter(pk=old.pk).update(created_at=now - 400 * D)
    Contact.objects.filter(pk=new.pk).update(created_at=now - 2 * D)
    assert matches({"attribute": "created_at", "op": "within_past", "value": 30}) == {
        new.pk
    }
    assert matches(
        {"attribute": "created_at", "op": "more_than_past", "value": 365}
    ) == {old.pk}
    assert matches({"attribute": "last_seen_at", "op": "not_exists"}) == {old.pk}
    assert matches({"score": {"op": "gte", "value": 10}}) == {old.pk}


def test_event_counts_with_windows_and_property_filters(
    make_contact, add_event, matches
):
    keen = make_contact()
    once = make_contact()
    never = make_contact()
    for ago in (H, 2 * H, 3 * D):
        add_event(keen, "product_viewed", ago, category="shoes", seconds=45)
    add_event(keen, "product_viewed", 10 * D, category="shoes")
    add_event(once, "product_viewed", H, category="hats", seconds=5)
    three_in_a_week = {
        "event": "product_viewed",
        "window": {"last": 7, "unit": "days"},
        "count": {"op": "gte", "value": 3},
    }
    assert matches(three_in_a_week) == {keen.pk}
    assert matches({"event": "product_viewed", "count": {"op": "eq", "value": 0}}) == {
        never.pk
    }
    assert matches(
        {
            "event": "product_viewed",
            "where": [{"property": "seconds", "op": "gt", "value": 30}],
        }
    ) == {keen.pk}
    assert matches(
        {
            "event": "product_viewed",
            "window": {"last": 90, "unit": "minutes"},
            "count": {"op": "lt", "value": 2},
        }
    ) == {keen.pk, once.pk, never.pk}


def test_absence_no_purchase_in_24_hours(make_contact, add_event, matches):
    bought = make_contact()
    browsing = make_contact()
    add_event(bought, "order_completed", 2 * H)
    add_event(browsing, "order_completed", 3 * D)
    no_purchase = {
        "not": {"event": "order_completed", "window": {"last": 24, "unit": "hours"}}
    }
    assert matches(no_purchase) == {browsing.pk}


def test_sequence_then_within_and_not_followed_by(make_contact, add_event, matches):
    journey = make_contact()
    add_event(journey, "product_viewed", 30 * H, product_id="A")
    add_event(journey, "product_viewed", 20 * H, product_id="B")
    converted = make_contact()
    add_event(converted, "product_viewed", 30 * H, product_id="A")
    add_event(converted, "product_viewed", 20 * H, product_id="B")
    add_event(converted, "order_completed", 10 * H)
    backwards = make_contact()
    add_event(backwards, "product_viewed", 30 * H, product_id="B")
    add_event(backwards, "product_viewed", 20 * H, product_id="A")
    condition = {
        "sequence": [
            {
                "event": "product_viewed",
                "where": [{"property": "product_id", "op": "eq", "value": "A"}],
            },
            {
                "event": "product_viewed",
                "where": [{"property": "product_id", "op": "eq", "value": "B"}],
            },
        ],
        "within": {"last": 48, "unit": "hours"},
        "not_followed_by": {"event": "order_completed"},
    }
    assert matches(condition) == {journey.pk}
    condition["within"] = {"last": 5, "unit": "hours"}
    assert matches(condition) == set()


def test_last_event_property(make_contact, add_event, matches):
    shoes_last = make_contact()
    add_event(shoes_last, "product_viewed", 2 * H, category="hats")
    add_event(shoes_last, "product_viewed", H, category="shoes")
    hats_last = make_contact()
    add_event(hats_last, "product_viewed", 2 * H, category="shoes")
    add_event(hats_last, "product_viewed", H, category="hats")
    condition = {
        "last_event": "product_viewed",
        "property": "category",
        "op": "eq",
        "value": "shoes",
    }
    assert matches(condition) == {shoes_last.pk}


def test_segment_membership(make_contact, matches, now):
    segment = Segment.objects.create(name="VIP", kind=Segment.Kind.STATIC)
    member, former = make_contact(), make_contact()
    SegmentMembership.objects.create(segment=segment, contact=member, entered_at=now)
    SegmentMembership.objects.create(
        segment=segment, contact=former, entered_at=now - D, exited_at=now
    )
    assert matches({"segment": segment.pk}) == {member.pk}


def test_email_engagement_ignores_test_sends(make_contact, add_event, matches):
    opener = make_contact()
    add_event(opener, "email_opened", H, template="Cart reminder")
    add_event(make_contact(), "email_opened", H, template="Welcome")
    add_event(make_contact(), "email_opened", H, template="Cart reminder", is_test=True)
    condition = {
        "email": "opened",
        "template": "Cart reminder",
        "window": {"last": 7, "unit": "days"},
    }
    assert matches(condition) == {opener.pk}


def test_consent(make_contact, matches):
    out = make_contact(email_consent="unsubscribed")
    make_contact(email_consent="subscribed")
    assert matches({"consent": ["unsubscribed", "bounced"]}) == {out.pk}


def test_since_enrollment_windows_use_the_enrollment_time(make_contact, add_event, now):
    from apps.segments.conditions import evaluate

    contact = make_contact()
    add_event(contact, "order_completed", 2 * H)
    condition = {"event": "order_completed", "window": {"since": "enrollment"}}
    assert evaluate(condition, contact, now=now, since=now - 3 * H)
    assert not evaluate(condition, contact, now=now, since=now - H)

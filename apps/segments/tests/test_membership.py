"""Membership stays fresh: incremental on events, full on a schedule; static lists."""

import datetime as dt
import uuid

import httpx
import pytest

from apps.contacts.models import Contact
from apps.core import clock
from apps.core.scheduler import tick
from apps.events.ingestion import events_ingest
from apps.events.models import Event, Source
from apps.events.schemas import Identify, Track
from apps.events.services import INTERNAL_SOURCE_NAME
from apps.segments.models import Segment, SegmentMembership, SegmentRefresh
from apps.segments.services import (
    Changes,
    _apply,
    segment_import_csv,
    segment_refresh_full,
    segment_update_for_contacts,
)

pytestmark = pytest.mark.django_db

KEEN = {
    "all": [
        {
            "event": "product_viewed",
            "count": {"op": "gte", "value": 2},
            "window": {"last": 7, "unit": "days"},
        },
        {"not": {"event": "order_completed", "window": {"last": 24, "unit": "hours"}}},
    ]
}


def _track(anonymous_id, event, **props):
    return Track(
        anonymousId=anonymous_id,
        event=event,
        properties=props,
        messageId=str(uuid.uuid4()),
    )


@pytest.fixture
def keen(db):
    return Segment.objects.create(name="Keen", condition=KEEN)


def test_an_event_flips_membership_and_emits_segment_entered_once(
    keen, browser_source, run_jobs
):
    # given a visitor who viewed one product
    events_ingest(source=browser_source, messages=[_track("v1", "product_viewed")])
    run_jobs()
    contact = Contact.objects.get()
    assert not SegmentMembership.objects.exists()
    # when a second view arrives
    events_ingest(source=browser_source, messages=[_track("v1", "product_viewed")])
    run_jobs()
    # then they are in, with one segment_entered event
    membership = SegmentMembership.objects.get()
    assert (membership.contact_id, membership.exited_at) == (contact.pk, None)
    assert Event.objects.filter(name="segment_entered", contact=contact).count() == 1
    entered = Event.objects.get(name="segment_entered")
    assert entered.properties == {"segment_id": keen.pk, "segment": "Keen"}
    # and a third view changes nothing
    events_ingest(source=browser_source, messages=[_track("v1", "product_viewed")])
    run_jobs()
    assert Event.objects.filter(name="segment_entered").count() == 1
    keen.refresh_from_db()
    assert keen.member_count == 1
    # when they buy, they leave, once
    events_ingest(source=browser_source, messages=[_track("v1", "order_completed")])
    run_jobs()
    assert SegmentMembership.objects.get().exited_at is not None
    assert Event.objects.filter(name="segment_exited").count() == 1


def test_two_jobs_racing_over_one_contact_record_one_change(
    keen, make_contact, add_event, now
):
    # given a contact who qualifies, evaluated by two jobs at once: both saw them out
    contact = make_contact()
    add_event(contact, "product_viewed", dt.timedelta(hours=2))
    add_event(contact, "product_viewed", dt.timedelta(hours=3))
    first = _apply(keen, Changes(entered=[contact.pk]), now)
    second = _apply(keen, Changes(entered=[contact.pk]), now)
    # then one membership, one segment_entered, a count of one
    assert (first.entered, second.entered) == ([contact.pk], [])
    assert SegmentMembership.objects.filter(segment=keen).count() == 1
    assert Event.objects.filter(name="segment_entered").count() == 1
    keen.refresh_from_db()
    assert keen.member_count == 1
    # and the same for leaving
    out = [_apply(keen, Changes(exited=[contact.pk]), now) for _ in range(2)]
    assert [o.exited for o in out] == [[contact.pk], []]
    assert Event.objects.filter(name="segment_exited").count() == 1
    keen.refresh_from_db()
    assert keen.member_count == 0


def test_the_first_change_on_a_new_installation_creates_the_internal_source(
    keen, make_contact, add_event, now
):
    Source.objects.filter(name=INTERNAL_SOURCE_NAME).delete()
    contact = make_contact()
    add_event(contact, "product_viewed", dt.timedelta(hours=2))
    add_event(contact, "product_viewed", dt.timedelta(hours=3))
    segment_update_for_contacts(segment=keen, contact_ids=[contact.pk], now=now)
    entered = Event.objects.get(name="segment_entered")
    assert entered.source == Source.objects.get(name=INTERNAL_SOURCE_NAME)
    assert entered.message_id.startswith(f"seg:{keen.pk}:entered:{contact.pk}:")


def test_a_trait_change_moves_attribute_segments(browser_source, run_jobs):
    pro = Segment.objects.create(
        name="Pro", condition={"attribute": "plan", "op": "eq", "value": "pro"}
    )
    events_ingest(
        source=browser_source,
        messages=[Identify(anonymousId="v2", traits={"plan": "pro"})],
    )
    run_jobs()
    assert (
        SegmentMembership.objects.filter(segment=pro, exited_at__isnull=True).count()
        == 1
    )


def test_the_full_refresh_reconciles_and_records_its_run(
    keen, make_contact, add_event, now
):
    stays, joins, leaves_ = make_contact(), make_contact(), make_contact()
    for contact in (stays, joins):
        add_event(contact, "product_viewed", dt.timedelta(hours=2))
        add_event(contact, "product_viewed", dt.timedelta(hours=3))
    SegmentMembership.objects.create(segment=keen, contact=stays, entered_at=now)
    SegmentMembership.objects.create(segment=keen, contact=leaves_, entered_at=now)
    refresh = segment_refresh_full(segment=keen, now=now)
    assert (refresh.entered, refresh.exited, refresh.members) == (1, 1, 2)
    assert refresh.duration_ms >= 0
    open_ids = set(
        SegmentMembership.objects.filter(exited_at__isnull=True).values_list(
            "contact_id", flat=True
        )
    )
    assert open_ids == {stays.pk, joins.pk}
    # time passes: the week-long window slides past the views
    later = segment_refresh_full(segment=keen, now=now + dt.timedelta(days=8))
    assert (later.entered, later.exited, later.members) == (0, 2, 0)
    assert SegmentRefresh.objects.filter(segment=keen).count() == 2


def test_the_tick_schedules_due_refreshes(keen, run_jobs, make_contact, add_event):
    contact = make_contact()
    add_event(contact, "product_viewed", dt.timedelta(minutes=1))
    add_event(contact, "product_viewed", dt.timedelta(minutes=2))
    with clock.frozen(dt.datetime(2026, 11, 25, 12, 1, tzinfo=dt.UTC)):
        assert tick()["segments"] == 1
        run_jobs()
        assert tick()["segments"] == 0  # not due again yet
    keen.refresh_from_db()
    assert keen.member_count == 1
    assert keen.last_refreshed_at is not None


def test_a_csv_upload_adds_whom_it_names_and_reports_the_rest(make_contact):
    static = Segment.objects.create(name="Webinar", kind=Segment.Kind.STATIC)
    ada = make_contact(email="ada@example.com")
    bob = make_contact(external_id="u-2")
    data = b"email\nADA@example.com\nu-2\nnobody@example.com\n\n"
    report = segment_import_csv(segment=static, data=data)
    assert report.added == 2
    assert report.unmatched == [(4, "nobody@example.com")]
    assert set(static.memberships.values_list("contact_id", flat=True)) == {
        ada.pk,
        bob.pk,
    }


def test_a_csv_for_a_dynamic_segment_is_refused_and_changes_nothing(keen):
    from apps.segments.services import ImportError_

    with pytest.raises(ImportError_, match="only static lists"):
        segment_import_csv(segment=keen, data=b"ada@example.com\n")


@pytest.mark.django_db(transaction=True)
def test_static_lists_over_the_api(
    live_server, server_source, browser_source, make_contact
):
    static = Segment.objects.create(name="Beta", kind=Segment.Kind.STATIC)
    ada = make_contact(email="ada@example.com")
    url = f"{live_server.url}/api/v1/segments/{static.pk}/members"
    response = httpx.post(
        url,
        json={"add": ["ada@example.com", "ghost@example.com"]},
        auth=(server_source.key, ""),
    )
    assert response.status_code == 200
    assert response.json() == {
        "added": 1,
        "removed": 0,
        "unmatched": ["ghost@example.com"],
        "members": 1,
    }
    assert static.memberships.get().contact_id == ada.pk
    assert (
        httpx.post(url, json={"add": []}, auth=(browser_source.key, "")).status_code
        == 403
    )
    dynamic = Segment.objects.create(name="Dyn", condition=KEEN)
    response = httpx.post(
        f"{live_server.url}/api/v1/segments/{dynamic.pk}/members",
        json={"add": ["ada@example.com"]},
        auth=(server_source.key, ""),
    )
    assert response.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_static_list_keys_with_a_nul_character_get_400_naming_it(
    live_server, server_source
):
    static = Segment.objects.create(name="Beta", kind=Segment.Kind.STATIC)
    response = httpx.post(
        f"{live_server.url}/api/v1/segments/{static.pk}/members",
        json={"remove": ["\x00"]},
        auth=(server_source.key, ""),
    )
    assert response.status_code == 400
    assert response.json()["detail"][0]["field"] == "remove[0]"

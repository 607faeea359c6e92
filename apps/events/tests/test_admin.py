import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command

from apps.contacts.models import Contact
from apps.events.ingestion import events_ingest
from apps.events.models import Event, EventFailure, Source, hash_key
from apps.events.privacy import count_dropped_without_consent
from apps.events.processing import events_process
from apps.events.schemas import Identify, Track
from apps.events.selectors import is_pending

pytestmark = pytest.mark.django_db


def test_the_contact_page_shows_the_timeline_newest_first_and_escaped(
    admin_client, browser_source
):
    events_ingest(
        source=browser_source,
        messages=[
            Identify(
                anonymousId="a",
                traits={"email": "ada@example.com"},
                messageId="m0",
                timestamp="2026-11-01T10:00:00Z",
            ),
            Track(
                anonymousId="a",
                event="product_viewed",
                messageId="m1",
                timestamp="2026-11-01T10:01:00Z",
                properties={"name": "<script>alert(1)</script>"},
            ),
            Track(
                anonymousId="a",
                event="add_to_cart",
                messageId="m2",
                timestamp="2026-11-01T10:02:00Z",
                properties={"cart_id": "c1"},
            ),
        ],
    )
    contact = Contact.objects.get()
    page = admin_client.get(f"/admin/contacts/contact/{contact.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert (
        html.index("add_to_cart")
        < html.index("product_viewed")
        < html.index(">identify<")
    )
    assert "a</td>" in html or ">a<" in html  # the anonymous id is listed


def test_the_timeline_is_paginated(admin_client, browser_source):
    events_ingest(
        source=browser_source,
        messages=[
            Track(anonymousId="a", event=f"e{i}", messageId=str(uuid.uuid4()))
            for i in range(30)
        ],
    )
    contact = Contact.objects.get()
    page2 = admin_client.get(
        f"/admin/contacts/contact/{contact.pk}/change/?timeline_page=2"
    )
    assert "page 2 of 2 (30 events)" in page2.content.decode()


def test_contacts_can_be_searched_and_filtered(admin_client, server_source):
    events_ingest(
        source=server_source,
        messages=[
            Identify(
                userId="u-1", traits={"email": "ada@example.com", "firstName": "Ada"}
            ),
            Identify(userId="u-2", traits={"email": "bob@example.com"}),
        ],
    )
    found = admin_client.get("/admin/contacts/contact/?q=ada").content.decode()
    assert "ada@example.com" in found and "bob@example.com" not in found
    filtered = admin_client.get("/admin/contacts/contact/?email_consent=unsubscribed")
    assert "ada@example.com" not in filtered.content.decode()


def test_adding_a_server_source_in_admin_shows_its_key_once(admin_client):
    response = admin_client.post(
        "/admin/events/source/add/",
        {"name": "Backend", "kind": "server", "allowed_origins": "", "enabled": "on"},
        follow=True,
    )
    source = Source.objects.get()
    message = next(m.message for m in response.context["messages"])
    key = message.split(": ")[1].split(".")[0]
    assert key.startswith("sk_")
    assert source.secret_key_hash == hash_key(key)
    assert (
        key
        not in admin_client.get(
            f"/admin/events/source/{source.pk}/change/"
        ).content.decode()
    )


def test_a_bad_origin_is_refused_with_the_line_that_is_wrong(admin_client):
    response = admin_client.post(
        "/admin/events/source/add/",
        {
            "name": "Web",
            "kind": "browser",
            "allowed_origins": "https://ok.example\nnot a url",
        },
    )
    assert response.status_code == 200
    assert "line 2" in response.content.decode()
    assert not Source.objects.exists()


def test_rotating_a_key_invalidates_the_old_one(admin_client, browser_source):
    old = browser_source.public_key
    admin_client.post(
        "/admin/events/source/",
        {"action": "rotate_keys", "_selected_action": [browser_source.pk]},
    )
    browser_source.refresh_from_db()
    assert browser_source.public_key != old
    assert browser_source.key_rotated_at is not None


def test_create_source_prints_the_key_on_its_last_line(capsys):
    call_command("create_source", "Shop", "--origin", "https://shop.example.com")
    browser_key = capsys.readouterr().out.strip().splitlines()[-1]
    call_command("create_source", "Backend", "--server")
    server_key = capsys.readouterr().out.strip().splitlines()[-1]
    shop = Source.objects.get(name="Shop")
    assert shop.public_key == browser_key
    assert shop.allowed_origins == ["https://shop.example.com"]
    assert Source.objects.get(name="Backend").secret_key_hash == hash_key(server_key)


def _dead_letter(source, failing_for, settings) -> Event:
    """An event that failed processing and was set aside."""
    settings.NUDGE_EVENT_MAX_ATTEMPTS = 1
    with failing_for("poison"):
        result = events_ingest(
            source=source,
            messages=[Track(anonymousId="a", event="poison", messageId="m-poison")],
        )
        events_process(event_ids=result.event_ids)
    return Event.objects.get(pk=result.event_ids[0])


def test_failed_events_are_listed_with_their_error_and_can_be_retried(
    admin_client, browser_source, failing_for, settings, run_jobs
):
    # given a dead-lettered event
    poison = _dead_letter(browser_source, failing_for, settings)
    # when an admin looks at the failed events
    page = admin_client.get("/admin/events/eventfailure/")
    # then it is there, with its name, contact and error
    html = page.content.decode()
    assert page.status_code == 200
    assert "poison" in html
    assert f"cannot handle poison #{poison.pk}" in html
    assert "Dead-lettered" in html
    assert f"/admin/contacts/contact/{poison.contact_id}/change/" in html
    detail = admin_client.get(f"/admin/events/eventfailure/{poison.pk}/change/")
    assert detail.status_code == 200
    assert "Traceback (most recent call last)" in detail.content.decode()
    # and retrying it puts it back in the queue
    response = admin_client.post(
        "/admin/events/eventfailure/",
        {"action": "retry_events", "_selected_action": [poison.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 event will be tried again" in response.content.decode()
    poison.refresh_from_db()
    assert is_pending(poison.pk)
    assert EventFailure.objects.get().status == EventFailure.Status.FAILING
    # and, its cause gone, the worker processes it
    run_jobs()
    poison.refresh_from_db()
    assert not is_pending(poison.pk)
    assert not EventFailure.objects.exists()


def test_retrying_failed_events_needs_the_retry_permission(
    client, browser_source, failing_for, settings
):
    # given a dead-lettered event, and staff who may only look at failed events
    poison = _dead_letter(browser_source, failing_for, settings)
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_eventfailure"))
    client.force_login(staff)
    assert client.get("/admin/events/eventfailure/").status_code == 200
    # when they try the retry action
    client.post(
        "/admin/events/eventfailure/",
        {"action": "retry_events", "_selected_action": [poison.pk]},
    )
    # then nothing changed
    poison.refresh_from_db()
    assert not is_pending(poison.pk)
    assert EventFailure.objects.get().status == EventFailure.Status.DEAD
    # and with the permission, they can
    staff.user_permissions.add(Permission.objects.get(codename="retry_eventfailure"))
    client.post(
        "/admin/events/eventfailure/",
        {"action": "retry_events", "_selected_action": [poison.pk]},
    )
    assert EventFailure.objects.get().status == EventFailure.Status.FAILING


# -- consent-gated sources -------------------------------------------------------------


def test_the_sources_page_shows_each_ones_consent_rule_and_events_dropped_for_it(
    admin_client, browser_source, server_source
):
    # given a gated browser source that has dropped 3 events, and a server source
    browser_source.consent_category = "Marketing"
    browser_source.save()
    count_dropped_without_consent(source_id=browser_source.pk, dropped=3)
    # when an operator opens the sources' page
    html = admin_client.get("/admin/events/source/").content.decode()
    # then the gated source says its rule and its count; the other, no gating
    row = html[html.index(">Web<") :]
    assert "Marketing (calls without consent context kept)" in row
    assert '<td class="field-dropped_without_consent">3</td>' in row
    server_row = html[html.index(">Backend<") :]
    assert '<td class="field-consent">no</td>' in server_row
    assert '<td class="field-dropped_without_consent">0</td>' in server_row
    # ... and the source's own page shows the count too
    page = admin_client.get(f"/admin/events/source/{browser_source.pk}/change/")
    assert "Events dropped without consent" in page.content.decode()
    assert '<div class="readonly">3</div>' in page.content.decode()


def test_a_consent_category_is_saved_trimmed_with_what_to_do_without_context(
    admin_client, browser_source
):
    response = admin_client.post(
        f"/admin/events/source/{browser_source.pk}/change/",
        {
            "name": "Web",
            "allowed_origins": "",
            "consent_category": "  Marketing ",
            "consent_when_missing": "drop",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    browser_source.refresh_from_db()
    assert browser_source.consent_category == "Marketing"
    assert browser_source.consent_when_missing == Source.WhenConsentMissing.DROP


def test_dropping_calls_without_consent_context_needs_a_category(
    admin_client, browser_source
):
    response = admin_client.post(
        f"/admin/events/source/{browser_source.pk}/change/",
        {"name": "Web", "consent_when_missing": "drop", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "choose one first" in response.content.decode()
    browser_source.refresh_from_db()
    assert browser_source.consent_when_missing == Source.WhenConsentMissing.KEEP


def test_a_server_source_cannot_be_given_a_consent_category(admin_client):
    response = admin_client.post(
        "/admin/events/source/add/",
        {"name": "Backend", "kind": "server", "consent_category": "Marketing"},
    )
    assert response.status_code == 200
    assert "never gated" in response.content.decode()
    assert not Source.objects.exists()


def test_only_who_may_export_and_erase_can_allow_a_key_privacy_requests(
    client, admin_client, server_source, browser_source
):
    # given: staff who may change sources but not export or erase people
    staff = User.objects.create_user("sources", password="pw", is_staff=True)
    for codename in ("view_source", "change_source"):
        staff.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(staff)
    url = f"/admin/events/source/{server_source.pk}/change/"
    form = {"name": "Backend", "rate_limit_per_second": 100, "enabled": "on"}
    # when they tick "privacy requests"
    response = client.post(url, {**form, "privacy_requests": "on"})
    # then it is not a field of theirs: saved without it
    assert response.status_code == 302
    server_source.refresh_from_db()
    assert not server_source.privacy_requests
    # when an Admin (a superuser here) does
    response = admin_client.post(url, {**form, "privacy_requests": "on"})
    assert response.status_code == 302
    server_source.refresh_from_db()
    assert server_source.privacy_requests
    # then the staff above cannot get its key by rotating it either
    hash_before = server_source.secret_key_hash
    listing = client.post(
        "/admin/events/source/",
        {"action": "rotate_keys", "_selected_action": [server_source.pk]},
        follow=True,
    )
    assert "Left as it was" in listing.content.decode()
    server_source.refresh_from_db()
    assert server_source.secret_key_hash == hash_before
    # and a browser key can never have it
    response = admin_client.post(
        f"/admin/events/source/{browser_source.pk}/change/",
        {"name": "Web", "rate_limit_per_second": 100, "privacy_requests": "on"},
    )
    assert response.status_code == 200
    assert "a browser key is public" in response.content.decode()
    browser_source.refresh_from_db()
    assert not browser_source.privacy_requests

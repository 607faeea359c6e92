"""A person's export: every table that holds something about them, built in the
background with progress, downloadable by those allowed, for a limited time."""

import datetime as dt
import io
import json
import zipfile

import pytest
from django.contrib.auth.models import Group, User

from apps.contacts.models import Contact
from apps.core import clock
from apps.core.roles import roles_sync
from apps.events.models import Source
from apps.privacy.exports import export_path, sections
from apps.privacy.models import DataExport, Erasure

from .conftest import EMAIL, PRODUCT, USER_ID

pytestmark = pytest.mark.django_db(transaction=True)


def archive_of(content: bytes) -> dict[str, list[dict]]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {
            name: [json.loads(line) for line in archive.read(name).splitlines()]
            for name in archive.namelist()
            if name.endswith(".jsonl")
        }


def test_the_export_holds_every_table_about_the_person_row_for_row(person, run_jobs):
    # when
    response = person.api.post("/privacy/exports", json={"email": EMAIL})
    assert response.status_code == 202, response.text
    export_id = response.json()["id"]
    run_jobs()
    status = person.api.get(f"/privacy/exports/{export_id}").json()
    archive = person.api.get(status["archive_url"].split("/api/v1", 1)[1])
    # then: done, with its progress complete
    assert status["status"] == "ready"
    assert status["sections_done"] == status["sections_total"] > 10
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/zip"
    files = archive_of(archive.content)
    # every table is there, with exactly the rows the database holds about them
    for section in sections(person.contact):
        assert section.name in files, section.name
        assert len(files[section.name]) == section.rows.count(), section.name
    assert files["contacts.contact.jsonl"][0]["email"] == EMAIL
    assert files["contacts.contact.jsonl"][0]["external_id"] == USER_ID
    # what they did, what they were sent and what happened to it, their consent
    assert any(
        e["properties"].get("title") == PRODUCT for e in files["events.event.jsonl"]
    )
    assert files["campaigns.message.jsonl"][0]["subject"].startswith("Thanks")
    assert {e["event_type"] for e in files["campaigns.espevent.jsonl"]} >= {
        "bounced",
        "clicked",
    }
    assert files["contacts.consentrecord.jsonl"]
    assert files["contacts.contactmerge.jsonl"][0]["snapshot"]
    assert files["workflows.steprun.jsonl"]
    assert files["segments.segmentmembership.jsonl"]
    assert files["segments.scoreaward.jsonl"]


def test_only_a_key_allowed_privacy_requests_can_export_or_erase(
    person, live_server, browser_source
):
    import httpx

    from apps.events.services import source_create

    _, other_key = source_create(name="Shop backend", kind=Source.Kind.SERVER)
    for key in (browser_source.key, other_key):
        api = httpx.Client(base_url=f"{live_server.url}/api/v1", auth=(key, ""))
        asked = api.post("/privacy/exports", json={"email": EMAIL})
        assert asked.status_code == 403, asked.text
        erase = api.post("/privacy/erasures", json={"email": EMAIL})
        assert erase.status_code == 403, erase.text
    assert "privacy requests" in asked.json()["error"]
    assert not DataExport.objects.exists() and not Erasure.objects.exists()
    person.contact.refresh_from_db()
    assert person.contact.erased_at is None and person.contact.email == EMAIL


def test_an_unknown_person_is_a_404(person):
    missing = person.api.post("/privacy/exports", json={"email": "no@example.com"})
    assert missing.status_code == 404
    assert person.api.get("/privacy/exports/999999").status_code == 404


def test_a_worker_killed_while_building_leaves_it_to_the_tick(person, settle):
    # given: a build that started and died (status building, no file)
    export = DataExport.objects.create(
        contact=person.contact,
        requested_by="staff dpo",
        requested_at=clock.now(),
        status=DataExport.Status.BUILDING,
        sections_done=3,
    )
    # when
    settle()
    # then
    export.refresh_from_db()
    assert export.status == DataExport.Status.READY
    assert export.sections_done == export.sections_total
    assert export_path(export.file_name).exists()


@pytest.fixture
def staff(db):
    from django.apps import apps

    roles_sync(apps)

    def make(role: str):
        user = User.objects.create_user(f"{role.lower()}-1", password="pw")
        user.is_staff = True
        user.save()
        user.groups.add(Group.objects.get(name=role))
        return user

    return make


def test_an_admin_exports_from_the_contact_page_and_downloads_it_until_it_expires(
    person, run_jobs, settle, client, staff, settings
):
    # given
    client.force_login(staff("Admin"))
    page = f"/admin/contacts/contact/{person.contact.pk}/change/"
    assert b"Export this person" in client.get(page).content
    # when
    response = client.post(f"/admin/privacy/dataexport/request/{person.contact.pk}/")
    run_jobs()
    # then
    assert response.status_code == 302
    export = DataExport.objects.get()
    assert export.requested_by == "staff admin-1"
    assert b"Download" in client.get(page).content
    download = client.get(f"/admin/privacy/dataexport/{export.pk}/download/")
    assert download.status_code == 200
    assert EMAIL in json.dumps(archive_of(b"".join(download.streaming_content)))
    # when: the time it is kept has passed
    clock.advance(dt.timedelta(hours=settings.NUDGE_EXPORT_HOURS, minutes=1))
    settle()
    # then: the file is gone and the link with it
    export.refresh_from_db()
    assert export.status == DataExport.Status.EXPIRED
    assert not list(export_path("x").parent.iterdir())
    gone = client.get(f"/admin/privacy/dataexport/{export.pk}/download/")
    assert gone.status_code == 404


@pytest.mark.parametrize("role", ["Viewer", "Marketer"])
def test_only_admins_may_export_erase_or_download(
    person, run_jobs, client, staff, role
):
    # given: a ready export
    person.api.post("/privacy/exports", json={"email": EMAIL})
    run_jobs()
    export = DataExport.objects.get()
    client.force_login(staff(role))
    contact_id = person.contact.pk
    # then
    assert (
        client.post(f"/admin/privacy/dataexport/request/{contact_id}/").status_code
        == 403
    )
    assert (
        client.get(f"/admin/privacy/dataexport/{export.pk}/download/").status_code
        == 403
    )
    assert client.get(f"/admin/privacy/erasure/erase/{contact_id}/").status_code == 403
    assert (
        client.post(
            f"/admin/privacy/erasure/erase/{contact_id}/",
            {"confirm": str(contact_id), "reason": "x"},
        ).status_code
        == 403
    )
    assert Contact.objects.get(pk=contact_id).erased_at is None


def test_the_erase_page_asks_for_the_contacts_number_and_a_reason(
    person, client, staff
):
    client.force_login(staff("Admin"))
    url = f"/admin/privacy/erasure/erase/{person.contact.pk}/"
    # when: the wrong number
    wrong = client.post(url, {"confirm": "12345", "reason": "ticket 42"})
    # then: a form error, nothing erased
    assert wrong.status_code == 200
    assert b"to confirm" in wrong.content
    assert Contact.objects.get(pk=person.contact.pk).erased_at is None
    # when: the right one
    right = client.post(
        url, {"confirm": f"#{person.contact.pk}", "reason": "ticket 42"}
    )
    # then
    assert right.status_code == 302
    assert Contact.objects.get(pk=person.contact.pk).erased_at is not None
    listing = client.get(right["Location"])
    assert b"was erased" in listing.content


def test_a_contact_is_erased_from_its_page_never_deleted(person, client, staff):
    # given: an Admin on the contact's page
    client.force_login(staff("Admin"))
    contact_id = person.contact.pk
    page = client.get(f"/admin/contacts/contact/{contact_id}/change/")
    # then: it offers erasure, not Django's Delete (which would leave the person's
    # data in merge snapshots, ESP payloads and mail files)
    assert f"/admin/privacy/erasure/erase/{contact_id}/".encode() in page.content
    assert b"/delete/" not in page.content
    delete = f"/admin/contacts/contact/{contact_id}/delete/"
    assert client.get(delete).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403
    listing = client.get("/admin/contacts/contact/")
    assert b"delete_selected" not in listing.content
    assert Contact.objects.filter(pk=contact_id, erased_at=None).exists()

"""Erasure: no row of any table still holds the person's data afterwards, reports
still count what they did, and nothing is sent to them after it."""

import pytest
from django.apps import apps
from django.db import models
from django.db.models.functions import Cast

from apps.campaigns.models import Message
from apps.contacts.models import ConsentRecord, Contact
from apps.contacts.suppression import address_suppression
from apps.core import clock
from apps.events.models import Event
from apps.privacy.mailfiles import RETRY_AFTER
from apps.privacy.models import DataExport, Erasure
from apps.workflows.models import Enrollment

from .conftest import EMAIL, NEEDLES, USER_ID

pytestmark = pytest.mark.django_db(transaction=True)

TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField)


def rows_mentioning(needles: list[str]) -> dict[str, list]:
    """Every column of every table (found by walking the models) that still holds
    one of ``needles``, with the needles it holds."""
    found = {}
    for model in apps.get_models():
        if not model._meta.managed or model._meta.proxy:
            continue
        for field in model._meta.concrete_fields:
            if not isinstance(field, TEXT_FIELDS):
                continue
            text = model._default_manager.annotate(
                _text=Cast(field.attname, models.TextField())
            )
            held = [n for n in needles if text.filter(_text__icontains=n).exists()]
            if held:
                found[f"{model._meta.db_table}.{field.column}"] = held
    return found


def test_the_person_is_everywhere_before_the_erasure(person):
    # the scenario really left their data in the tables the erasure must clean
    found = rows_mentioning(NEEDLES)
    for column in [
        "contacts_contact.email",
        "contacts_identity.anonymous_id",
        "contacts_contactmerge.snapshot",
        "events_event.properties",
        "campaigns_message.to_email",
        "campaigns_message.subject",
        "workflows_enrollment.trigger_event",
        "workflows_webhookdelivery.payload",
        "workflows_triggerdecision.reason",
    ]:
        assert column in found, column


def test_after_an_erasure_no_table_holds_the_persons_data(person, run_jobs):
    # given: an export of their data too
    response = person.api.post("/privacy/exports", json={"userId": USER_ID})
    assert response.status_code == 202, response.text
    run_jobs()
    assert DataExport.objects.get().status == DataExport.Status.READY
    assert ConsentRecord.objects.filter(contact=person.contact).exists()
    counts = (
        Message.objects.filter(contact=person.contact).count(),
        Event.objects.filter(contact=person.contact).count(),
        Enrollment.objects.filter(contact=person.contact).count(),
    )
    # when
    response = person.api.post(
        "/privacy/erasures", json={"email": EMAIL, "reason": "ticket 42"}
    )
    # then
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "done"
    assert rows_mentioning(NEEDLES) == {}
    assert DataExport.objects.count() == 0
    # their proof of consent is theirs: it goes too
    assert not ConsentRecord.objects.filter(contact=person.contact).exists()
    # reports still count what the tombstone did
    tombstone = Contact.objects.get(pk=person.contact.pk)
    assert tombstone.erased_at is not None and str(tombstone).startswith("erased")
    assert counts == (
        Message.objects.filter(contact=tombstone).count(),
        Event.objects.filter(contact=tombstone).count(),
        Enrollment.objects.filter(contact=tombstone).count(),
    )
    # the erasure record holds no personal data
    erasure = Erasure.objects.get()
    assert erasure.status == Erasure.Status.DONE
    assert erasure.requested_by.startswith("API key of")
    assert erasure.removed["mail_files"] == 1


def test_the_mail_files_keep_other_peoples_messages(person, settings):
    # when
    person.api.post("/privacy/erasures", json={"userId": USER_ID})
    # then
    from pathlib import Path

    text = "".join(p.read_text() for p in Path(settings.MAIL_DIR).iterdir())
    assert "g@example.com" in text
    assert EMAIL not in text


def test_mail_files_the_erasure_could_not_rewrite_are_scrubbed_by_the_tick(
    person, settings, settle
):
    from pathlib import Path

    # given: the mail files with the person's messages cannot be rewritten while
    # the erasure runs (the name each one's new version is written under is taken)
    files = [p for p in Path(settings.MAIL_DIR).iterdir() if EMAIL in p.read_text()]
    assert files
    blockers = [p.with_name(p.name + ".erasing") for p in files]
    for blocker in blockers:
        blocker.mkdir()
    # when
    assert person.api.post("/privacy/erasures", json={"userId": USER_ID}).is_success
    # then: the person is erased; the files are still to do, noted by hash only
    erasure = Erasure.objects.get()
    assert erasure.status == Erasure.Status.DONE
    assert erasure.mail_files_pending
    assert EMAIL not in str(erasure.mail_files_pending)
    assert any(EMAIL in p.read_text() for p in files)
    assert erasure.mail_files_failed_at is not None
    # when: the obstacle is gone, and the tick runs once the retry is due
    for blocker in blockers:
        blocker.rmdir()
    settle()
    assert Erasure.objects.get().mail_files_pending  # (not yet due)
    with clock.frozen(clock.now() + RETRY_AFTER):
        settle()
    # then: the files no longer hold the person's messages, and nothing is pending
    erasure.refresh_from_db()
    assert erasure.mail_files_pending == []
    assert erasure.removed["mail_files"] >= 1
    assert not any(EMAIL in p.read_text() for p in files)
    assert "g@example.com" in "".join(p.read_text() for p in files)


def test_a_message_that_only_mentions_the_address_is_dropped_too(person, settings):
    from email.mime.text import MIMEText
    from pathlib import Path
    from urllib.parse import urlencode

    from django.core.mail import EmailMessage
    from django.core.mail.backends.filebased import EmailBackend

    # given: team notifications that name the person only in their text, as
    # Django's file backend writes them: quoted-printable (a curly apostrophe),
    # 8-bit (Cyrillic), a link's URL-encoded query, quoted, and one in base64;
    # and two that do not
    folder = Path(settings.MAIL_DIR) / "team"
    folder.mkdir()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": str(folder)},
        }
    }
    padding = "x" * 40  # puts the address across a quoted-printable line break
    bodies = {
        "qp": f"It\u2019s a new lead: {padding} {EMAIL} wants a call.",
        "8bit": f"Новый клиент: {EMAIL}",
        "link": "See https://crm.example.com/?" + urlencode({"email": EMAIL}),
        "quoted": f"value='{EMAIL}'",
        "other": "Someone else: someone@example.org",
        "lookalike": f"Not them: jim{EMAIL}",
    }
    EmailBackend(file_path=str(folder)).send_messages(
        [
            EmailMessage(subject=name, body=body, to=["team@example.com"])
            for name, body in bodies.items()
        ]
    )
    (path,) = list(folder.iterdir())
    # and one in base64, as Python's email package writes UTF-8 text by default
    hidden = MIMEText(f"Новый клиент: {EMAIL}", "plain", "utf-8")
    hidden["Subject"], hidden["To"] = "base64", "team@example.com"
    with path.open("a") as file:
        file.write(hidden.as_string() + "\n" + "-" * 79 + "\n")
    # (as written, the quoted-printable, base64 and link ones hide the address)
    assert path.read_text().count(EMAIL) == 3
    # when
    person.api.post("/privacy/erasures", json={"userId": USER_ID})
    # then: the five that name the person are gone, the two others stay
    subjects = [
        line.removeprefix("Subject: ")
        for line in path.read_text().splitlines()
        if line.startswith("Subject: ")
    ]
    assert subjects == ["other", "lookalike"]


def test_an_erased_address_that_comes_back_is_not_mailed(person, run_jobs):
    # given
    person.api.post("/privacy/erasures", json={"userId": USER_ID})
    # when: the shop identifies the same address again
    response = person.api.post(
        "/identify", json={"userId": "u-new", "traits": {"email": EMAIL}}
    )
    assert response.status_code == 200
    run_jobs()
    # then: a new contact, whose address is on the list (as a hash, no hint)
    entry = address_suppression(EMAIL)
    assert entry is not None and entry.hint == ""
    assert (
        Contact.objects.filter(email__iexact=EMAIL)
        .exclude(pk=person.contact.pk)
        .exists()
    )


def test_erasing_twice_is_refused_and_an_unknown_person_is_a_404(person):
    assert person.api.post("/privacy/erasures", json={"userId": USER_ID}).is_success
    again = person.api.post("/privacy/erasures", json={"email": "nobody@example.com"})
    assert again.status_code == 404
    nameless = person.api.post("/privacy/erasures", json={"reason": "x"})
    assert nameless.status_code == 400

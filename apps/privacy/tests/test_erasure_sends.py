"""An erasure and the sends around it: what is in flight finishes first, what has
not started never does, and nothing goes out after it."""

import datetime as dt

import pytest

from apps.campaigns.models import (
    Campaign,
    CampaignRecipient,
    CampaignVariant,
    EmailTemplate,
    Message,
)
from apps.campaigns.services import message_create
from apps.contacts.models import ConsentStatus, Contact
from apps.contacts.services import contact_merge
from apps.core import clock
from apps.privacy.erasure import erasure_request
from apps.privacy.models import Erasure
from apps.workflows.models import Enrollment, WebhookDelivery
from apps.workflows.services import workflow_activate, workflow_create

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen_clock():
    with clock.frozen(START):
        yield START


@pytest.fixture
def template(layout):
    return EmailTemplate.objects.create(
        name="Hello", subject="Hello {{ contact.first_name }}", html_body="<p>Hi</p>"
    )


@pytest.fixture
def ada(db):
    return Contact.objects.create(email="ada@example.com", first_name="Ada")


def queued(contact, template, **fields) -> Message:
    message, _ = message_create(contact=contact, template=template, **fields)
    return message


def test_an_erasure_waits_for_the_email_in_flight_and_cancels_the_queued_ones(
    frozen_clock, ada, template, outbox, settle
):
    # given: one email being handed to the ESP, one waiting its turn
    in_flight = queued(ada, template)
    Message.objects.filter(pk=in_flight.pk).update(
        status=Message.Status.SENDING, claimed_at=clock.now()
    )
    waiting = queued(ada, template, send_after=START + dt.timedelta(hours=1))
    # when
    erasure = erasure_request(contact=ada, requested_by="staff dpo")
    # then: nothing new goes, the person is not erased yet
    assert erasure.status == Erasure.Status.WAITING
    waiting.refresh_from_db()
    assert waiting.status == Message.Status.CANCELLED
    ada.refresh_from_db()
    assert ada.email == "ada@example.com"
    assert ada.email_consent == ConsentStatus.UNSUBSCRIBED
    # when: the send in flight is recorded, and the tick comes round
    Message.objects.filter(pk=in_flight.pk).update(status=Message.Status.SENT)
    clock.advance(dt.timedelta(hours=2))
    settle()
    # then
    erasure.refresh_from_db()
    assert erasure.status == Erasure.Status.DONE
    ada.refresh_from_db()
    assert ada.email is None and ada.erased_at is not None
    assert set(Message.objects.values_list("to_email", flat=True)) == {""}
    assert outbox == []


def test_a_message_queued_by_a_late_dispatch_is_not_sent_to_an_erased_person(
    frozen_clock, ada, template, outbox, settle
):
    # given: erased
    erasure_request(contact=ada, requested_by="staff dpo")
    # when: a message made from a copy of the contact read before the erasure
    late = queued(ada, template, to_email="ada@example.com")
    settle()
    # then
    late.refresh_from_db()
    assert late.status == Message.Status.CANCELLED
    assert late.to_email == ""
    assert outbox == []


def test_running_enrollments_exit_and_their_pending_webhooks_never_go(
    frozen_clock, ada, template
):
    # given
    workflow = workflow_create(
        name="Slow",
        definition={
            "trigger": {"type": "manual"},
            "steps": [
                {"key": "w", "type": "wait", "config": {"duration": {"days": 3}}}
            ],
        },
    )
    workflow_activate(workflow=workflow)
    enrollment = Enrollment.objects.create(
        workflow=workflow,
        version=workflow.current_version,
        contact=ada,
        status=Enrollment.Status.WAITING,
        resume_at=START + dt.timedelta(days=3),
        entered_at=START,
    )
    hook = WebhookDelivery.objects.create(
        enrollment=enrollment,
        url="https://crm.example.com/hook",
        payload={"email": "ada@example.com"},
        next_attempt_at=START,
        created_at=START,
    )
    # when
    erasure = erasure_request(contact=ada, requested_by="staff dpo")
    # then
    enrollment.refresh_from_db()
    hook.refresh_from_db()
    assert enrollment.status == Enrollment.Status.EXITED
    assert hook.status == WebhookDelivery.Status.FAILED
    assert hook.payload == {}
    assert erasure.removed["enrollments_exited"] == 1
    assert erasure.removed["webhooks_cancelled"] == 1


def test_a_campaign_recipient_not_yet_dispatched_is_skipped(
    frozen_clock, ada, template
):
    # given
    campaign = Campaign.objects.create(name="Winter", status=Campaign.Status.SENDING)
    variant = CampaignVariant.objects.create(
        campaign=campaign, label="A", template=template
    )
    recipient = CampaignRecipient.objects.create(
        campaign=campaign, contact=ada, variant=variant, due_at=START
    )
    # when
    erasure_request(contact=ada, requested_by="staff dpo")
    # then
    recipient.refresh_from_db()
    assert recipient.message_id is None
    assert "erased" in recipient.skipped


def test_an_erasure_follows_a_contact_merged_meanwhile(frozen_clock, ada, template):
    # given: a send in flight keeps the erasure waiting
    in_flight = queued(ada, template)
    Message.objects.filter(pk=in_flight.pk).update(status=Message.Status.SENDING)
    erasure = erasure_request(contact=ada, requested_by="staff dpo")
    # when: the contact is merged into another before the erasure finishes
    Message.objects.filter(pk=in_flight.pk).update(status=Message.Status.SENT)
    other = Contact.objects.create(external_id="u-1", first_name="Ada")
    contact_merge(source=ada, target=other, reason="same person")
    from apps.privacy.erasure import erasure_run

    # then: the erasure erases the contact it became
    assert erasure_run(erasure_id=erasure.pk) == Erasure.Status.DONE
    other.refresh_from_db()
    assert other.erased_at is not None and other.external_id is None


def test_an_erased_contact_cannot_be_erased_or_exported_again(
    frozen_clock, ada, client, admin_user
):
    from apps.privacy.erasure import ErasureRefused

    erasure_request(contact=ada, requested_by="staff dpo")
    ada.refresh_from_db()
    with pytest.raises(ErasureRefused):
        erasure_request(contact=ada, requested_by="staff dpo")
    client.force_login(admin_user)
    assert client.get(f"/admin/privacy/erasure/erase/{ada.pk}/").status_code == 404
    response = client.post(f"/admin/privacy/dataexport/request/{ada.pk}/")
    assert response.status_code == 404


def test_no_email_of_any_kind_goes_while_an_erasure_waits(
    frozen_clock, ada, template, outbox, settle
):
    # given: an erasure waiting for the email in flight
    in_flight = queued(ada, template)
    Message.objects.filter(pk=in_flight.pk).update(status=Message.Status.SENDING)
    erasure_request(contact=ada, requested_by="staff dpo")
    # when: a receipt (transactional, which needs no marketing consent) is queued
    receipt = queued(ada, template, transactional=True)
    settle()
    # then
    receipt.refresh_from_db()
    assert receipt.status == Message.Status.CANCELLED
    assert outbox == []


def test_other_peoples_merge_records_stay_even_if_they_hold_the_same_digits(
    frozen_clock, db
):
    from apps.contacts.models import ContactMerge

    # given: a person with a short user id, and someone else's merge record
    person = Contact.objects.create(email="p@example.com", external_id="42")
    other = Contact.objects.create(email="o@example.com")
    theirs = ContactMerge.objects.create(
        merged_contact_id=9042,
        into=other,
        reason="same person",
        snapshot={"email": "old@example.com", "external_id": "u-420", "score": 42},
        merged_at=START,
    )
    mine = ContactMerge.objects.create(
        merged_contact_id=9043,
        into=other,
        reason="same person",
        snapshot={"email": "P@example.com", "external_id": None},
        merged_at=START,
    )
    # when
    erasure_request(contact=person, requested_by="staff dpo")
    # then: the record naming the person is emptied, the other untouched
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.snapshot["external_id"] == "u-420"
    assert mine.snapshot == {}


def test_a_team_notifications_address_is_not_taken_for_the_persons(
    frozen_clock, ada, template, settings, tmp_path
):
    from django.core.mail import EmailMessage
    from django.core.mail.backends.filebased import EmailBackend

    from apps.privacy.erasure import _addresses

    # given: a "notify the team" email about Ada, to staff
    Message.objects.create(
        contact=ada,
        kind=Message.Kind.NOTIFICATION,
        to_email="team@shop.example",
        created_at=START,
        send_after=START,
    )
    settings.MAIL_DIR = str(tmp_path)
    EmailBackend(file_path=str(tmp_path)).send_messages(
        [EmailMessage("About Grace", "...", "shop@example.com", ["team@shop.example"])]
    )
    # then: the person's addresses are hers alone
    assert _addresses(ada) == ["ada@example.com"]
    # when
    erasure_request(contact=ada, requested_by="staff dpo")
    # then: the team's mail about someone else stays
    assert "About Grace" in "".join(p.read_text() for p in tmp_path.iterdir())


def test_an_export_being_built_when_the_person_is_erased_leaves_no_file(
    frozen_clock, ada, settings, tmp_path
):
    from apps.privacy.exports import export_build, export_files_of
    from apps.privacy.models import DataExport

    settings.NUDGE_EXPORT_DIR = str(tmp_path)
    # given: an export whose job has started writing
    export = DataExport.objects.create(
        contact=ada,
        requested_by="staff dpo",
        requested_at=START,
        status=DataExport.Status.BUILDING,
    )
    (tmp_path / f"nudge-export-{ada.pk}-abc.zip").write_bytes(b"PK")
    # when: the person is erased, and the job then carries on
    erasure_request(contact=ada, requested_by="staff dpo")
    finished = export_build(export_id=export.pk)
    # then
    assert finished == DataExport.Status.EXPIRED
    assert export_files_of(ada.pk) == []

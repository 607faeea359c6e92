"""Send and notify steps as rows: a loop back through a send step sends once per
pass, a team notification survives a flushed Redis, and the address suppression list
holds for both."""

import django_rq
import pytest

from apps.campaigns.models import Message
from apps.contacts.models import Contact, SuppressedAddress
from apps.contacts.suppression import address_suppress
from apps.core import clock
from apps.events.models import Event
from apps.events.services import internal_source
from apps.workflows import handlers
from apps.workflows.definition import validate_definition
from apps.workflows.engine import enrollments_advance
from apps.workflows.models import Enrollment, Step, StepRun
from apps.workflows.services import (
    enqueue_advance,
    enrollment_start,
    workflow_archive,
    workflow_pause,
    workflow_resume,
)

pytestmark = pytest.mark.django_db

REMIND_UNTIL_BOUGHT = dict(
    trigger={"type": "manual"},
    steps=[
        {
            "key": "remind",
            "type": "send_email",
            "config": {"template": "Cart reminder"},
            "next": {"next": "wait"},
        },
        {
            "key": "wait",
            "type": "wait_for_event",
            "config": {"event": "order_completed", "timeout": {"days": 1}},
            # no purchase within a day: remind again
            "next": {"happened": "", "timed_out": "remind"},
        },
    ],
)

NOTIFY_SALES = dict(
    trigger={"type": "manual"},
    steps=[
        {
            "key": "tell",
            "type": "notify",
            "config": {
                "to": "sales@example.com",
                "subject": "Hot lead: {{ contact.email }}",
                "body": "{{ contact.name }} is back",
            },
        }
    ],
)


def test_a_loop_back_through_a_send_step_sends_once_per_pass(
    make_workflow, customer, frozen_clock, settle, later, outbox
):
    # given a reminder that repeats daily until a purchase
    workflow = make_workflow("Remind daily", **REMIND_UNTIL_BOUGHT)
    contact = customer("loop")
    enrollment_start(workflow=workflow, contact=contact)
    settle()
    # when two days pass without a purchase
    later(days=1, minutes=1)
    later(days=1, minutes=1)
    # then three reminders went out, one per pass, each its own message
    messages = list(Message.objects.order_by("pk"))
    assert [m.visit for m in messages] == [0, 2, 4]
    assert [m.status for m in messages] == [Message.Status.SENT] * 3
    assert len([m for m in outbox if m.to == ["loop@example.com"]]) == 3
    # and each "sent" in the trace names the message it created
    sends = StepRun.objects.filter(step_key="remind").order_by("pk")
    assert [run.detail["message_id"] for run in sends] == [m.pk for m in messages]
    assert Enrollment.objects.get().status == Enrollment.Status.WAITING


def test_a_step_run_again_after_a_crash_does_not_send_twice(
    make_workflow, customer, frozen_clock, settle, run_jobs
):
    # given a pass through the send step that created its message
    workflow = make_workflow("Remind daily", **REMIND_UNTIL_BOUGHT)
    enrollment, _ = enrollment_start(workflow=workflow, contact=customer("again"))
    settle()
    # when the engine runs the same pass again (a worker died before recording it)
    Enrollment.objects.filter(pk=enrollment.pk).update(
        status=Enrollment.Status.ACTIVE,
        current_step=workflow.current_version.steps.get(key="remind"),
        steps_taken=0,
    )
    enqueue_advance([enrollment.pk])
    run_jobs()
    # then the message of that pass is found, not made again
    assert Message.objects.count() == 1
    last = StepRun.objects.filter(step_key="remind").order_by("pk").last()
    assert last.detail["reason"] == "message already created"


def test_a_team_notification_is_a_message_that_survives_a_flushed_redis(
    make_workflow, customer, frozen_clock, run_jobs, later, outbox
):
    # given a notify step that ran, its email not yet sent
    workflow = make_workflow("Ops", **NOTIFY_SALES)
    enrollment_start(workflow=workflow, contact=customer("lead", first_name="Lea"))
    run_jobs(["workflows"])
    [message] = Message.objects.all()
    assert (message.kind, message.status) == (Message.Kind.NOTIFICATION, "queued")
    # when Redis loses every job
    django_rq.get_connection("default").flushdb()
    later(seconds=30)  # the scheduler tick finds the queued row again
    # then it is sent once, as plain text to the team
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    [email] = outbox
    assert email.to == ["sales@example.com"]
    assert email.subject == "Hot lead: lead@example.com"
    assert "List-Unsubscribe" not in email.extra_headers
    # and it is nobody's marketing email: no event on the contact, no frequency cap
    assert not message.contact.events.filter(name="email_sent").exists()


def test_the_suppression_list_holds_for_sends_and_notifications(
    make_workflow, customer, frozen_clock, settle, outbox
):
    # given both addresses on the suppression list
    address_suppress(email="Gone@Example.com", reason=SuppressedAddress.Reason.BOUNCED)
    address_suppress(
        email="sales@example.com", reason=SuppressedAddress.Reason.COMPLAINED
    )
    send = make_workflow("Remind daily", **REMIND_UNTIL_BOUGHT)
    notify = make_workflow("Ops", **NOTIFY_SALES)
    # when a subscribed contact with that address goes through both
    contact = customer("gone", email="gone@example.com")
    enrollment_start(workflow=send, contact=contact)
    enrollment_start(workflow=notify, contact=contact)
    settle()
    # then nothing went out, and each says why
    assert outbox == []
    skipped = StepRun.objects.get(step_key="remind")
    assert skipped.outcome == "skipped"
    assert "suppression list (hard bounce)" in skipped.detail["reason"]
    note = Message.objects.get(kind=Message.Kind.NOTIFICATION)
    assert note.status == Message.Status.SUPPRESSED
    assert "suppression list (spam complaint)" in note.error


ONE_EMAIL = dict(
    trigger={"type": "manual"},
    goal={"event": "order_completed"},
    steps=[
        {
            "key": "remind",
            "type": "send_email",
            "config": {"template": "A"},
            "next": {"next": "then"},
        },
        {"key": "then", "type": "wait", "config": {"duration": {"days": 2}}},
    ],
)


def _queued_email(make_workflow, customer, user: str):
    """A workflow whose run has queued its email, not yet sent (its job not run)."""
    workflow = make_workflow(f"Remind {user}", **ONE_EMAIL)
    enrollment, _reason = enrollment_start(workflow=workflow, contact=customer(user))
    enrollments_advance(enrollment_ids=[enrollment.pk])
    message = Message.objects.get(enrollment_id=enrollment.pk)
    assert message.status == Message.Status.QUEUED
    return workflow, enrollment, message


def test_an_email_queued_before_a_pause_waits_for_the_resume(
    make_workflow, customer, frozen_clock, settle, later, outbox
):
    # given an email queued, and then its workflow paused
    workflow, _enrollment, message = _queued_email(make_workflow, customer, "p1")
    workflow_pause(workflow=workflow)
    # when its send job runs, and for hours after
    settle()
    later(hours=3)
    # then it is held, its retries untouched
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("queued", 0)
    assert message.error == "held: its workflow is paused"
    assert outbox == []
    # and when the contact changes address meanwhile and the workflow resumes, it
    # goes out at once, once, to the address they have now
    Contact.objects.filter(external_id="p1").update(email="p1-new@example.com")
    workflow_resume(workflow=workflow)
    settle()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert [m.to for m in outbox] == [["p1-new@example.com"]]
    later(minutes=6)
    assert len(outbox) == 1


def test_an_email_queued_before_its_workflow_was_archived_is_cancelled(
    make_workflow, customer, frozen_clock, settle, outbox
):
    workflow, _enrollment, message = _queued_email(make_workflow, customer, "a1")
    workflow_archive(workflow=workflow)

    settle()

    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert message.error == "not sent: its workflow was archived"
    assert outbox == []


def test_an_email_still_queued_when_its_run_converts_is_cancelled(
    make_workflow, customer, frozen_clock, settle, outbox
):
    # given an email queued (a backlog, or an ESP retry), and then the goal is met
    _workflow, enrollment, message = _queued_email(make_workflow, customer, "c1")
    now = clock.now()
    order = Event.objects.create(
        contact_id=enrollment.contact_id,
        source=internal_source(),
        name="order_completed",
        timestamp=now,
        received_at=now,
        message_id="order-c1",
    )
    handlers.on_events_ingested(events=[order])
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.CONVERTED
    # when its send job runs
    settle()
    # then the reminder does not go out
    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert message.error.startswith("not sent: the run ended: goal: order_completed")
    assert outbox == []


@pytest.mark.parametrize("last", ["exit", "goal"])
def test_an_email_followed_by_an_exit_or_goal_step_goes_out(
    make_workflow, customer, frozen_clock, settle, outbox, last
):
    # given a run that sends and then ends by a step (in the same job)
    workflow = make_workflow(
        f"Send then {last}",
        trigger={"type": "manual"},
        steps=[
            {
                "key": "offer",
                "type": "send_email",
                "config": {"template": "A"},
                "next": {"next": "end"},
            },
            {"key": "end", "type": last, "config": {}},
        ],
    )
    enrollment, _ = enrollment_start(workflow=workflow, contact=customer(last))
    # when it runs
    settle()
    # then the run ended as its steps say, and the email it meant to send went
    enrollment.refresh_from_db()
    assert enrollment.status in (Enrollment.Status.EXITED, Enrollment.Status.CONVERTED)
    message = Message.objects.get(enrollment_id=enrollment.pk)
    assert message.status == Message.Status.SENT, message.error
    assert [m.to for m in outbox] == [[f"{last}@example.com"]]


def test_a_runs_trace_says_what_became_of_each_email_in_one_query(
    make_workflow, customer, frozen_clock, settle, later, admin_client
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    # given a run that sent its reminder four times, and one that sent it once
    workflow = make_workflow("Remind daily", **REMIND_UNTIL_BOUGHT)
    often, _ = enrollment_start(workflow=workflow, contact=customer("often"))
    settle()
    for _day in range(3):
        later(days=1, minutes=1)
    once, _ = enrollment_start(workflow=workflow, contact=customer("once"))
    settle()
    sent = Message.objects.filter(enrollment_id=often.pk).order_by("pk")
    assert sent.count() == 4
    assert Message.objects.filter(enrollment_id=once.pk).count() == 1

    def trace(enrollment):
        url = reverse("admin:workflows_enrollment_change", args=[enrollment.pk])
        with CaptureQueriesContext(connection) as queries:
            page = admin_client.get(url)
        return page.content.decode(), len(queries)

    # when staff open each run's page
    short, short_queries = trace(once)
    assert "sent" in short
    long, long_queries = trace(often)
    # then each send step says what became of its email
    for message in sent:
        assert f"message #{message.pk}: sent" in long
    # and a longer trace costs no more queries (the first page also looked up
    # content types, cached since)
    assert long_queries <= short_queries


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        "ops", email="ops@shop.example", is_staff=True
    )


def _notify(to: str) -> dict:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "key": "tell",
                "type": "notify",
                "config": {"to": to, "subject": "About {{ contact.email }}"},
            }
        ],
    }


def test_a_notification_goes_to_a_staff_user_by_username(
    make_workflow, customer, staff, settle, outbox
):
    # given a workflow that tells a staff user, by username
    workflow = make_workflow("Tell ops", **_notify("ops"))
    # when a contact runs through it
    enrollment_start(workflow=workflow, contact=customer("lead"))
    settle()
    # then the staff user's address gets it
    assert [m.to for m in outbox] == [["ops@shop.example"]]


@pytest.mark.parametrize(
    ("to", "error"),
    [
        ("owner", "never to an address taken from the contact's data"),
        ("nobody", "an email address, or the username of an active staff user"),
        ("{{ contact.attributes.owner_email }}", "an email address, or the username"),
    ],
)
def test_a_notify_recipient_from_contact_data_fails_validation(to, error, staff):
    errors = validate_definition(_notify(to))
    assert any(
        e.startswith("steps[0] (tell).config.to:") and error in e for e in errors
    ), errors


def test_an_old_notify_to_the_owner_fails_its_step_and_sends_nothing(
    make_workflow, customer, settle, outbox
):
    # given a workflow saved when "owner" meant the contact's owner_email
    workflow = make_workflow("Tell the owner", **_notify("sales@example.com"))
    Step.objects.filter(version__workflow=workflow, key="tell").update(
        config={"to": "owner", "subject": "About {{ contact.email }}"}
    )
    contact = customer("lead", attributes={"owner_email": "mallory@evil.example"})
    # when a contact runs through it
    enrollment_start(workflow=workflow, contact=contact)
    settle()
    # then nothing is sent, and the trace says why
    assert outbox == []
    assert not Message.objects.exists()
    run = StepRun.objects.get(step_key="tell")
    assert run.outcome == "failed"
    assert "never to an address taken from the contact's data" in run.detail["reason"]

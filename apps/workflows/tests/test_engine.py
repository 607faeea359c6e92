"""The engine's rules: holding, exiting, webhooks, failures, versions, validation."""

import datetime as dt
import hashlib
import hmac
import http.server
import json
import threading

import httpx
import pytest
from django.db import connection

from apps.contacts.models import Contact
from apps.core import clock
from apps.segments.models import Segment
from apps.workflows.definition import validate_definition
from apps.workflows.engine import enrollment_advance
from apps.workflows.models import Enrollment, StepRun, WebhookDelivery, Workflow
from apps.workflows.services import (
    enrollment_start,
    workflow_archive,
    workflow_pause,
    workflow_resume,
    workflow_save_version,
)

from .conftest import emails_to

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_THEN_SEND = dict(
    trigger={"type": "manual"},
    steps=[
        {
            "key": "wait",
            "type": "wait",
            "config": {"duration": {"hours": 1}},
            "next": {"next": "send"},
        },
        {"key": "send", "type": "send_email", "config": {"template": "A"}},
    ],
)


def test_a_paused_workflow_holds_its_contacts_and_resuming_continues(
    make_workflow, customer, settle, later, outbox, frozen_clock
):
    workflow = make_workflow("Hold", **WAIT_THEN_SEND)
    enrollment_start(workflow=workflow, contact=customer("p1"))
    settle()
    assert workflow_pause(workflow=workflow) == 1
    later(hours=2)
    assert outbox == []
    assert Enrollment.objects.get().status == Enrollment.Status.WAITING
    assert workflow_resume(workflow=workflow) == 1
    settle()
    assert emails_to(outbox, "p1@example.com") == ["A for you"]


def test_archiving_exits_running_contacts_with_the_reason(
    make_workflow, customer, settle
):
    workflow = make_workflow("Old", **WAIT_THEN_SEND)
    enrollment_start(workflow=workflow, contact=customer("a1"))
    settle()
    assert workflow_archive(workflow=workflow) == 1
    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.exit_reason) == (
        "exited",
        "workflow archived",
    )
    assert enrollment_start(workflow=workflow, contact=customer("a2")) == (
        None,
        "workflow is archived",
    )


def test_the_exit_condition_is_checked_before_each_step(
    make_workflow, customer, settle, later, outbox, frozen_clock
):
    workflow = make_workflow(
        "Exit", exit_condition={"consent": "unsubscribed"}, **WAIT_THEN_SEND
    )
    contact = customer("e1")
    enrollment_start(workflow=workflow, contact=contact)
    settle()
    Contact.objects.filter(pk=contact.pk).update(email_consent="unsubscribed")
    later(hours=2)
    enrollment = Enrollment.objects.get()
    assert enrollment.status == Enrollment.Status.EXITED
    assert enrollment.exit_reason == "exit condition: Email consent is unsubscribed"
    assert outbox == []


def test_a_goal_reached_while_waiting_converts_the_run(
    shop, make_workflow, customer, settle, outbox
):
    make_workflow(
        "Goal",
        goal={"condition": {"attribute": "plan", "op": "eq", "value": "pro"}},
        trigger={"type": "event", "event": "trial_started"},
        steps=WAIT_THEN_SEND["steps"],
    )
    customer("g1")
    shop.track("g1", "trial_started")
    settle()
    shop.identify("g1", plan="pro")
    settle()
    # the goal reads an attribute, not an event: it is checked at the next step
    clock.advance(dt.timedelta(hours=2))
    settle()
    enrollment = Enrollment.objects.get()
    assert enrollment.status == Enrollment.Status.CONVERTED
    assert enrollment.exit_reason == "goal: Plan is “pro”"
    assert outbox == []


class _Receiver(http.server.BaseHTTPRequestHandler):
    calls: list = []
    statuses: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.calls.append((dict(self.headers), body))
        status = _Receiver.statuses.pop(0) if _Receiver.statuses else 200
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.calls, _Receiver.statuses = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_a_webhook_is_signed_retried_and_its_response_recorded(
    make_workflow, customer, settle, later, receiver, settings, frozen_clock
):
    settings.NUDGE_WEBHOOK_SECRET = "s3cret"
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the receiver is local
    _Receiver.statuses = [500]
    workflow = make_workflow(
        "Hook",
        trigger={"type": "manual"},
        steps=[{"key": "crm", "type": "webhook", "config": {"url": receiver}}],
    )
    enrollment_start(
        workflow=workflow, contact=customer("w1", attributes={"plan": "pro"})
    )
    settle()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (
        "pending",
        1,
        500,
    )
    later(seconds=31)  # RQ's scheduler retries after 30 s
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (
        "delivered",
        2,
        200,
    )
    assert delivery.response_body == '{"ok": true}'
    headers, body = _Receiver.calls[-1]
    payload = json.loads(body)
    assert payload["contact"]["email"] == "w1@example.com"
    assert payload["contact"]["attributes"] == {"plan": "pro"}
    stamp, mac = headers["X-Nudge-Signature"].split(",")
    expected = hmac.new(
        b"s3cret", f"{stamp[2:]}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert mac == f"v1={expected}"
    assert Enrollment.objects.get().status == Enrollment.Status.COMPLETED


def test_notify_and_update_contact_steps(make_workflow, customer, settle, outbox):
    vip = Segment.objects.create(name="VIP", kind=Segment.Kind.STATIC)
    workflow = make_workflow(
        "Ops",
        trigger={"type": "manual"},
        steps=[
            {
                "key": "tag",
                "type": "update_contact",
                "config": {
                    "set": {"tier": "gold"},
                    "unset": ["trial"],
                    "add_to_list": vip.pk,
                    "add_score": 10,
                },
                "next": {"next": "tell"},
            },
            {
                "key": "tell",
                "type": "notify",
                "config": {
                    "to": "sales@example.com",
                    "subject": "New gold: {{ contact.email }}",
                    "body": "tier {{ contact.attributes.tier }}",
                },
            },
        ],
    )
    contact = customer("n1", attributes={"trial": True})
    enrollment_start(workflow=workflow, contact=contact)
    settle()
    contact.refresh_from_db()
    assert contact.attributes == {"tier": "gold"}
    assert contact.score == 10
    assert vip.memberships.filter(contact=contact, exited_at__isnull=True).exists()
    [email] = [m for m in outbox if m.to == ["sales@example.com"]]
    assert email.subject == "New gold: n1@example.com"
    assert email.body == "tier gold"


def test_a_step_that_fails_ends_the_run_as_failed_with_the_reason(
    make_workflow, customer, settle
):
    workflow = make_workflow(
        "Broken",
        trigger={"type": "manual"},
        steps=[{"key": "send", "type": "send_email", "config": {"template": "A"}}],
    )
    from apps.campaigns.models import EmailTemplate

    EmailTemplate.objects.filter(name="A").delete()
    enrollment_start(workflow=workflow, contact=customer("f1"))
    settle()
    enrollment = Enrollment.objects.get()
    assert enrollment.status == Enrollment.Status.FAILED
    assert "send failed: DoesNotExist" in enrollment.exit_reason


def test_two_workers_advancing_one_enrollment_run_each_step_once(
    make_workflow, customer, outbox, require_postgres
):
    workflow = make_workflow(
        "Race",
        trigger={"type": "manual"},
        steps=[{"key": "send", "type": "send_email", "config": {"template": "A"}}],
    )
    enrollment, _ = enrollment_start(
        workflow=workflow, contact=customer("c1"), advance=False
    )
    barrier = threading.Barrier(2)
    outcomes = []

    def worker():
        barrier.wait()
        try:
            outcomes.append(enrollment_advance(enrollment_id=enrollment.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert StepRun.objects.count() == 1
    assert "completed" in outcomes
    from apps.campaigns.models import Message

    assert Message.objects.count() == 1


def test_a_new_version_leaves_running_enrollments_on_theirs(
    make_workflow, customer, settle, later, outbox, frozen_clock
):
    workflow = make_workflow("Versioned", **WAIT_THEN_SEND)
    enrollment_start(workflow=workflow, contact=customer("v1"))
    settle()
    new = {
        **workflow.current_version.definition,
        "steps": [{"key": "send-b", "type": "send_email", "config": {"template": "B"}}],
    }
    version = workflow_save_version(workflow=workflow, definition=new)
    assert version.number == 2
    assert set(version.changes) == {
        "step send-b added",
        "step wait removed",
        "step send removed",
    }
    enrollment_start(
        workflow=Workflow.objects.get(pk=workflow.pk), contact=customer("v2")
    )
    later(hours=2)
    assert emails_to(outbox, "v1@example.com") == [
        "A for you"
    ]  # the old version's steps
    assert emails_to(outbox, "v2@example.com") == ["B for you"]


def test_wait_until_a_time_of_day_in_the_contacts_timezone(
    make_workflow, customer, settle, later, outbox, frozen_clock
):
    workflow = make_workflow(
        "Morning",
        trigger={"type": "manual"},
        steps=[
            {
                "key": "nine",
                "type": "wait_until_time",
                "config": {"time": "09:00"},
                "next": {"next": "send"},
            },
            {"key": "send", "type": "send_email", "config": {"template": "A"}},
        ],
    )
    enrollment_start(
        workflow=workflow, contact=customer("tokyo", timezone="Asia/Tokyo")
    )
    settle()
    enrollment = Enrollment.objects.get()
    # 12:00 UTC is 21:00 in Tokyo: next 09:00 there is 00:00 UTC tomorrow
    assert enrollment.resume_at == dt.datetime(2026, 11, 26, 0, 0, tzinfo=dt.UTC)
    later(hours=12, minutes=1)
    assert emails_to(outbox, "tokyo@example.com") == ["A for you"]


def test_enrolling_over_the_api(
    live_server, server_source, browser_source, make_workflow, customer, settle
):
    workflow = make_workflow(
        "Manual",
        trigger={"type": "manual"},
        steps=[{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}],
    )
    customer("api1")
    url = f"{live_server.url}/api/v1/workflows/{workflow.pk}/enroll"
    response = httpx.post(
        url,
        json={"contacts": ["api1@example.com", "nobody@example.com"]},
        auth=(server_source.key, ""),
    )
    assert response.status_code == 200
    body = response.json()
    assert len(body["enrolled"]) == 1 and body["unmatched"] == ["nobody@example.com"]
    again = httpx.post(
        url, json={"contacts": ["api1"]}, auth=(server_source.key, "")
    ).json()
    assert len(again["enrolled"]) == 1  # the default re-entry rule is "every time"
    assert (
        httpx.post(
            url, json={"contacts": ["api1"]}, auth=(browser_source.key, "")
        ).status_code
        == 403
    )


def test_enrolling_over_the_api_with_a_nul_character_gets_400_naming_it(
    live_server, server_source, make_workflow
):
    # given an active workflow
    workflow = make_workflow(
        "Manual",
        trigger={"type": "manual"},
        steps=[{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}],
    )
    # when a key holds a NUL, which PostgreSQL cannot compare
    response = httpx.post(
        f"{live_server.url}/api/v1/workflows/{workflow.pk}/enroll",
        json={"contacts": ["ada@example.com", "ada\x00@example.com"]},
        auth=(server_source.key, ""),
    )
    # then
    assert response.status_code == 400
    assert response.json()["detail"] == [
        {
            "field": "contacts[1]",
            "message": "contains a NUL character (\\u0000), which cannot be stored",
        }
    ]
    assert not Enrollment.objects.exists()


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        (
            [{"key": "a", "type": "send_email", "config": {}}],
            "steps[0] (a).config.template: choose a template",
        ),
        (
            [
                {
                    "key": "a",
                    "type": "wait",
                    "config": {"duration": {"hours": 1}},
                    "next": {"next": "ghost"},
                }
            ],
            "steps[0] (a).next.next: no step 'ghost' (a dangling outlet)",
        ),
        (
            [{"key": "a", "type": "exit"}, {"key": "b", "type": "exit"}],
            "steps[1] (b): unreachable: no step leads here",
        ),
        (
            [
                {
                    "key": "a",
                    "type": "branch",
                    "config": {"condition": {"score": {"op": "gte", "value": 1}}},
                    "next": {"yes": "b", "no": ""},
                },
                {
                    "key": "b",
                    "type": "update_contact",
                    "config": {"add_score": 1},
                    "next": {"next": "a"},
                },
            ],
            "steps[0] (a): a loop without a wait: a -> b -> a",
        ),
        (
            [
                {
                    "key": "a",
                    "type": "wait",
                    "config": {"duration": {"hours": 1}},
                    "next": {"yes": ""},
                }
            ],
            "steps[0] (a).next.yes: this step has no outlet 'yes'",
        ),
    ],
)
def test_each_validation_error_names_its_step(steps, error, templates):
    errors = validate_definition({"trigger": {"type": "manual"}, "steps": steps})
    assert error in errors


def test_a_loop_through_a_wait_is_allowed(templates):
    steps = [
        {
            "key": "a",
            "type": "wait",
            "config": {"duration": {"days": 1}},
            "next": {"next": "b"},
        },
        {
            "key": "b",
            "type": "branch",
            "config": {"condition": {"score": {"op": "gte", "value": 1}}},
            "next": {"yes": "", "no": "a"},
        },
    ]
    assert validate_definition({"trigger": {"type": "manual"}, "steps": steps}) == []


@pytest.mark.parametrize(
    ("step", "error"),
    [
        (
            {"key": "a", "type": "wait", "config": "1h"},
            "steps[0] (a).config: an object",
        ),
        (
            {
                "key": "a",
                "type": "wait",
                "config": {"duration": {"hours": 1}},
                "next": "b",
            },
            "steps[0] (a).next: an object of outlet -> step key",
        ),
        (
            {"key": "a", "type": "split", "config": {"variants": ["A", "B"]}},
            "steps[0] (a).config: malformed for a split step",
        ),
    ],
)
def test_malformed_json_is_an_error_not_a_crash(step, error):
    assert error in validate_definition(
        {"trigger": {"type": "manual"}, "steps": [step]}
    )

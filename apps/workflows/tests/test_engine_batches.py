"""A job's enrollments advance together: one claim, one transaction, one INSERT of
their trace; a failing step or a refused batch holds no other enrollment back."""

import threading

import django_rq
import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.contacts.models import Contact
from apps.workflows import engine
from apps.workflows.engine import enrollments_advance
from apps.workflows.models import Enrollment, StepRun
from apps.workflows.services import enrollment_start, workflow_pause
from apps.workflows.steps import Outcome, StepType, register_step
from apps.workflows.steps.base import STEP_TYPES

from .conftest import assert_read_by_key, emails_to, enrolled_on_stale_statistics

pytestmark = pytest.mark.django_db(transaction=True)

# The benchmark's workflow (bench/engine.py): four instant steps, one of them writing.
FOUR_STEPS = dict(
    trigger={"type": "manual"},
    steps=[
        {
            "key": "check",
            "type": "branch",
            "config": {"condition": {"attribute": "plan", "op": "eq", "value": "pro"}},
            "next": {"yes": "tag", "no": "tag"},
        },
        {
            "key": "tag",
            "type": "update_contact",
            "config": {"set": {"seen": True}},
            "next": {"next": "ab"},
        },
        {
            "key": "ab",
            "type": "split",
            "config": {
                "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}]
            },
            "next": {"A": "done", "B": "done"},
        },
        {"key": "done", "type": "exit", "config": {"reason": "all done"}},
    ],
)


class Touch(StepType):
    """Marks the contact, then does what its ``mode`` attribute says: "raise" raises
    after the write, "refused" runs SQL the database refuses."""

    name = "test_touch"
    label = "Touch (tests)"

    def validate(self, config, where):
        return []

    def run(self, ctx):
        attributes = {**ctx.contact.attributes, "touched": True}
        Contact.objects.filter(pk=ctx.contact.pk).update(attributes=attributes)
        ctx.contact.attributes = attributes
        mode = attributes.get("mode")
        if mode == "raise":
            raise RuntimeError("the step broke")
        if mode == "refused":
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table")
        return Outcome("touched", reason="marked")

    def describe(self, config):
        return "Touch the contact"


@pytest.fixture
def touch_workflow(make_workflow):
    register_step(Touch())
    yield make_workflow(
        "Touch",
        trigger={"type": "manual"},
        steps=[
            {"key": "touch", "type": "test_touch", "next": {"next": "done"}},
            {"key": "done", "type": "exit"},
        ],
    )
    STEP_TYPES.pop(Touch.name)


def enroll(workflow, contacts) -> list[int]:
    return [
        enrollment_start(workflow=workflow, contact=c, advance=False)[0].pk
        for c in contacts
    ]


def statements(queries, start: str, table: str) -> int:
    return sum(
        1
        for q in queries.captured_queries
        if q["sql"].startswith(start) and f'"{table}"' in q["sql"]
    )


def test_a_job_claims_runs_and_writes_its_enrollments_together(make_workflow, customer):
    workflow = make_workflow("Four steps", **FOUR_STEPS)
    contacts = [
        customer(f"b{i}", attributes={"plan": "pro" if i % 2 else "free"})
        for i in range(6)
    ]
    ids = enroll(workflow, contacts)
    with CaptureQueriesContext(connection) as queries:
        outcomes = enrollments_advance(enrollment_ids=ids)
    assert outcomes == {"exited": 6}
    assert statements(queries, "SELECT", "workflows_enrollment") == 1
    assert statements(queries, "INSERT", "workflows_steprun") == 1
    # The same steps at the same time: the same changes, so one UPDATE for all.
    assert statements(queries, "UPDATE", "workflows_enrollment") == 1
    for enrollment in Enrollment.objects.filter(pk__in=ids):
        assert enrollment.status == Enrollment.Status.EXITED
        assert enrollment.exit_reason == "all done"
        assert enrollment.current_step.key == "done"
        runs = list(enrollment.runs.order_by("pk"))
        assert [r.step_key for r in runs] == ["check", "tag", "ab", "done"]
        plan = enrollment.contact.attributes["plan"]
        assert runs[0].outcome == ("yes" if plan == "pro" else "no")
        assert runs[0].detail["reason"].endswith("true" if plan == "pro" else "false")
        assert runs[0].detail["step"].startswith("If ")
        assert runs[1].detail["step"] == "Update contact: set seen=True"
        assert runs[3].detail == {"reason": "all done", "step": "Exit (all done)"}
    assert Contact.objects.filter(attributes__seen=True).count() == 6


def test_held_and_not_yet_due_enrollments_in_a_job_are_left_as_they_are(
    make_workflow, customer, frozen_clock
):
    paused = make_workflow("Paused", **FOUR_STEPS)
    waits = make_workflow(
        "Waits",
        trigger={"type": "manual"},
        steps=[{"key": "wait", "type": "wait", "config": {"duration": {"hours": 1}}}],
    )
    runs = make_workflow("Runs", **FOUR_STEPS)
    [held] = enroll(paused, [customer("h1")])
    workflow_pause(workflow=paused)
    [waiting] = enroll(waits, [customer("w1")])
    enrollments_advance(enrollment_ids=[waiting])
    [running] = enroll(runs, [customer("r1")])
    outcomes = enrollments_advance(enrollment_ids=[held, waiting, running])
    assert outcomes == {"held: workflow paused": 1, "waiting": 1, "exited": 1}
    assert Enrollment.objects.get(pk=held).status == Enrollment.Status.ACTIVE
    assert not StepRun.objects.filter(enrollment_id=held).exists()
    assert StepRun.objects.filter(enrollment_id=waiting).count() == 1


def test_a_step_that_raises_fails_only_its_own_enrollment(
    touch_workflow, make_workflow, customer
):
    contacts = [
        customer("t1"),
        customer("t2", attributes={"mode": "raise"}),
        customer("t3"),
    ]
    ids = enroll(touch_workflow, contacts)
    # The failing contact's next enrollment in the same batch writes its attributes.
    tier = make_workflow(
        "Tier",
        trigger={"type": "manual"},
        steps=[
            {"key": "tag", "type": "update_contact", "config": {"set": {"t": 1}}},
        ],
    )
    [tagged] = enroll(tier, [contacts[1]])
    outcomes = enrollments_advance(enrollment_ids=[*ids, tagged])
    assert outcomes == {"exited": 2, "failed": 1, "completed": 1}
    broken = Enrollment.objects.get(pk=ids[1])
    assert broken.status == Enrollment.Status.FAILED
    assert broken.exit_reason == "touch failed: RuntimeError: the step broke"
    # Its savepoint is rolled back: the write it made before raising is gone, and
    # the contact's other enrollment does not bring it back.
    assert Contact.objects.get(pk=contacts[1].pk).attributes == {
        "mode": "raise",
        "t": 1,
    }
    for pk in (ids[0], ids[2]):
        assert Enrollment.objects.get(pk=pk).status == Enrollment.Status.EXITED
    assert Contact.objects.filter(attributes__touched=True).count() == 2
    assert [r.outcome for r in broken.runs.all()] == ["error"]


def test_when_the_database_refuses_a_batch_the_others_advance_one_at_a_time(
    touch_workflow, customer
):
    contacts = [
        customer("d1"),
        customer("d2", attributes={"mode": "refused"}),
        customer("d3"),
    ]
    ids = enroll(touch_workflow, contacts)
    with pytest.raises(DatabaseError):
        enrollments_advance(enrollment_ids=ids)
    # The others ran once each (the rolled-back batch left nothing behind)...
    for pk in (ids[0], ids[2]):
        assert Enrollment.objects.get(pk=pk).status == Enrollment.Status.EXITED
        assert StepRun.objects.filter(enrollment_id=pk).count() == 2
    # ...and the refused one is untouched, for the job's retry.
    refused = Enrollment.objects.get(pk=ids[1])
    assert refused.status == Enrollment.Status.ACTIVE
    assert not refused.runs.exists()
    assert Contact.objects.get(pk=contacts[1].pk).attributes == {"mode": "refused"}

    Contact.objects.filter(pk=contacts[1].pk).update(attributes={})
    assert enrollments_advance(enrollment_ids=ids) == {
        "finished or busy": 2,
        "exited": 1,
    }


def test_an_enrollment_another_worker_holds_is_skipped(
    make_workflow, customer, require_postgres
):
    workflow = make_workflow("Four steps", **FOUR_STEPS)
    ids = enroll(workflow, [customer("k1"), customer("k2"), customer("k3")])
    locked, release = threading.Event(), threading.Event()

    def other_worker():
        try:
            with transaction.atomic():
                Enrollment.objects.select_for_update().get(pk=ids[1])
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=other_worker)
    holder.start()
    try:
        assert locked.wait(10)
        outcomes = enrollments_advance(enrollment_ids=ids)
    finally:
        release.set()
        holder.join()
    assert outcomes == {"exited": 2, "finished or busy": 1}
    assert Enrollment.objects.get(pk=ids[1]).status == Enrollment.Status.ACTIVE
    assert not StepRun.objects.filter(enrollment_id=ids[1]).exists()
    assert enrollments_advance(enrollment_ids=[ids[1]]) == {"exited": 1}


def test_a_contacts_enrollments_in_one_batch_keep_each_others_changes(
    make_workflow, customer
):
    def tagging(name, attributes):
        return make_workflow(
            name,
            trigger={"type": "manual"},
            steps=[
                {"key": "tag", "type": "update_contact", "config": attributes},
            ],
        )

    contact = customer("s1", attributes={"plan": "pro"})
    first = enroll(tagging("Tier", {"set": {"tier": "gold"}}), [contact])
    second = enroll(tagging("Seen", {"set": {"seen": True}}), [contact])
    third = enroll(tagging("Score", {"add_score": 5}), [contact])
    branch = make_workflow(
        "Reads score",
        trigger={"type": "manual"},
        steps=[
            {
                "key": "check",
                "type": "branch",
                "config": {"condition": {"score": {"op": "gte", "value": 5}}},
            }
        ],
    )
    fourth = enroll(branch, [contact])
    enrollments_advance(enrollment_ids=first + second + third + fourth)
    contact.refresh_from_db()
    assert contact.attributes == {"plan": "pro", "tier": "gold", "seen": True}
    assert contact.score == 5
    assert StepRun.objects.get(enrollment_id=fourth[0]).outcome == "yes"


def test_enrollments_that_wait_together_resume_in_one_job(
    make_workflow, customer, later, outbox, frozen_clock
):
    workflow = make_workflow(
        "Wait then send",
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
    ids = enroll(workflow, [customer(f"r{i}") for i in range(3)])
    assert enrollments_advance(enrollment_ids=ids) == {"waiting": 3}
    registry = django_rq.get_queue("workflows").scheduled_job_registry
    [job] = registry.get_job_ids()
    assert registry.get_scheduled_time(job) is not None
    later(hours=2)
    for i in range(3):
        assert emails_to(outbox, f"r{i}@example.com") == ["A for you"]


def test_a_long_chain_continues_in_a_fresh_job(
    make_workflow, customer, settle, monkeypatch
):
    monkeypatch.setattr(engine, "MAX_STEPS_PER_JOB", 2)
    workflow = make_workflow("Four steps", **FOUR_STEPS)
    ids = enroll(workflow, [customer("c1"), customer("c2")])
    assert enrollments_advance(enrollment_ids=ids) == {"continued": 2}
    assert StepRun.objects.count() == 4
    assert set(Enrollment.objects.values_list("current_step__key", flat=True)) == {"ab"}
    settle()
    assert StepRun.objects.count() == 8
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"exited"}


def test_claiming_a_batch_reads_its_runs_by_key_on_stale_statistics(
    require_postgres, make_workflow, frozen_clock
):
    # given statistics taken while nothing was enrolled, and then a schedule that
    # enrolled thousands, all of them due
    _contacts, enrollments = enrolled_on_stale_statistics(make_workflow)
    batch = [e.pk for e in enrollments[100:110]]

    # when a job claims ten of them
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        claimed = engine._claim(batch)
        # then it holds those ten, read by key, never walking the other runs
        assert_read_by_key(queries)
    assert sorted(e.pk for e in claimed) == batch


def test_an_update_step_keeps_the_traits_an_identify_wrote_after_the_claim(
    require_postgres, make_workflow, customer, monkeypatch
):
    """PostgreSQL: SQLite lets no identify write while the engine's transaction is
    open, so there the race cannot happen."""
    from apps.contacts.services import contact_update_traits

    # given a run that tags its contact, and an identify call that lands after the
    # engine loaded the contact (the contact row is not locked by the claim)
    contact = customer("s2", attributes={"plan": "free"})
    tag = make_workflow(
        "Seen",
        trigger={"type": "manual"},
        steps=[{"key": "tag", "type": "update_contact", "config": {"set": {"s": 1}}}],
    )
    ids = enroll(tag, [contact])
    claim = engine._claim

    def claim_then_identify(enrollment_ids):
        claimed = claim(enrollment_ids)

        failed = []

        def identify():
            try:
                contact_update_traits(
                    contact=Contact.objects.get(pk=contact.pk),
                    traits={"plan": "pro", "shoe_size": 42},
                    trusted=True,
                )
            except Exception as exc:  # seen by the test, not lost in the thread
                failed.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=identify)
        thread.start()
        thread.join()
        assert failed == []
        return claimed

    monkeypatch.setattr(engine, "_claim", claim_then_identify)

    # when the step runs on the copy loaded before it
    assert enrollments_advance(enrollment_ids=ids) == {"completed": 1}

    # then both the identify's traits and the step's attribute are kept
    contact.refresh_from_db()
    assert contact.attributes == {"plan": "pro", "shoe_size": 42, "s": 1}

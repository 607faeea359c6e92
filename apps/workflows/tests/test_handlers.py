"""Workflows reacting to events: starting runs, resuming waits. In real worker
processes each worker caches the active triggers, and every status change must reach
that cache."""

import datetime as dt
import uuid

import django_rq
import pytest
from rq import Worker

from apps.core import clock
from apps.events.models import Event, PendingEvent
from apps.events.selectors import is_pending
from apps.events.services import internal_source
from apps.workflows import handlers
from apps.workflows.models import Enrollment, TriggerDecision
from apps.workflows.services import (
    enrollment_start,
    workflow_activate,
    workflow_archive,
    workflow_pause,
    workflow_resume,
)

from .conftest import (
    Shop,
    assert_read_by_key,
    emails_to,
    enrolled_on_stale_statistics,
    wait_for,
)

WAIT_A_DAY = [{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}]
# Enough events for two workers that take turns to have each run one; a deadline,
# not an expectation.
MAX_EVENTS = 20


class Workers:
    """Two event workers, and which of them processed an event."""

    def __init__(self, worker, shop: Shop) -> None:
        self.shop = shop
        self.connection = django_rq.get_connection("events")
        worker("worker-1.log", queues=("events",))
        worker("worker-2.log", queues=("events",))
        wait_for(lambda: len(self.jobs_done()) == 2, "both workers to start")
        self.pids = set(self.jobs_done())
        self.sent = 0

    def jobs_done(self) -> dict[int, int]:
        return {
            w.pid: w.successful_job_count
            for w in Worker.all(connection=self.connection)
        }

    def track(self, user: str) -> int:
        """Send add_to_cart for ``user``; the pid of the worker that processed it."""
        before = self.jobs_done()
        self.shop.track(user, "add_to_cart")
        self.sent += 1
        wait_for(
            lambda: sum(self.jobs_done().values()) == sum(before.values()) + 1,
            f"a worker to process {user}'s event",
        )
        assert not PendingEvent.objects.exists()
        after = self.jobs_done()
        (pid,) = [pid for pid in after if after[pid] > before[pid]]
        return pid

    def in_each(self, prefix: str, check) -> None:
        """Events from new contacts until each worker has processed one; ``check``
        each contact's outcome."""
        seen: set[int] = set()
        for n in range(MAX_EVENTS):
            user = f"{prefix}{n}"
            seen.add(self.track(user))
            check(user)
            if seen == self.pids:
                return
        raise AssertionError(f"one worker processed none of {MAX_EVENTS} events")


def enrolled(workflow, user: str) -> bool:
    return Enrollment.objects.filter(
        workflow=workflow, contact__external_id=user
    ).exists()


@pytest.mark.django_db(transaction=True)
def test_pausing_archiving_and_activating_reach_every_worker_at_once(
    processes, live_server, server_source, make_workflow
):
    worker = processes.worker
    shop = Shop(live_server.url, server_source.key)
    carts = make_workflow(
        "Carts", trigger={"type": "event", "event": "add_to_cart"}, steps=WAIT_A_DAY
    )
    newer = make_workflow(
        "Newer",
        activate=False,
        trigger={"type": "event", "event": "add_to_cart"},
        steps=WAIT_A_DAY,
    )
    workers = Workers(worker, shop)

    # given two workers that each enrolled someone from an add_to_cart (their
    # cached trigger indexes are warm)
    def enrolled_in_carts_only(user: str) -> None:
        assert enrolled(carts, user)
        assert not enrolled(newer, user)

    workers.in_each("warm", enrolled_in_carts_only)

    # when, in this process, one workflow is paused and another activated
    workflow_pause(workflow=carts)
    workflow_activate(workflow=newer)

    # then the next event, whichever worker processes it, enrolls nobody in the
    # paused one and enrolls in the newly active one
    def enrolled_in_newer_only(user: str) -> None:
        assert not enrolled(carts, user)
        assert enrolled(newer, user)

    workers.in_each("after-pause", enrolled_in_newer_only)

    # and once that one is archived too, nobody is enrolled at all
    workflow_archive(workflow=newer)

    def enrolled_nowhere(user: str) -> None:
        assert not enrolled(carts, user)
        assert not enrolled(newer, user)

    workers.in_each("after-archive", enrolled_nowhere)
    assert workers.sent <= 3 * MAX_EVENTS


WAIT_FOR_ORDER_THEN_PAUSE = [
    {
        "key": "await-order",
        "type": "wait_for_event",
        "config": {"event": "order_completed", "timeout": {"hours": 1}},
        "next": {"happened": "", "timed_out": "pause"},
    },
    {
        "key": "pause",
        "type": "wait",
        "config": {"duration": {"days": 3}},
        "next": {"next": "remind"},
    },
    {"key": "remind", "type": "send_email", "config": {"template": "A"}},
]


def _event(contact, name: str) -> Event:
    now = clock.now()
    return Event.objects.create(
        contact=contact,
        source=internal_source(),
        name=name,
        timestamp=now,
        received_at=now,
        message_id=str(uuid.uuid4()),
    )


@pytest.mark.django_db
def test_an_event_resumes_only_the_wait_that_was_waiting_for_it(
    make_workflow, customer, settle, later, outbox, frozen_clock, monkeypatch
):
    # given a run waiting for order_completed, as an events job loads it
    workflow = make_workflow(
        "Orders", trigger={"type": "manual"}, steps=WAIT_FOR_ORDER_THEN_PAUSE
    )
    contact = customer("slow")
    enrollment_start(workflow=workflow, contact=contact)
    settle()
    loaded = handlers._running_enrollments({contact.pk}, None)
    assert loaded[0].awaiting_event == "order_completed"
    # and, meanwhile, the engine times that wait out and moves the run on to a
    # three-day plain wait
    later(hours=1, minutes=1)
    enrollment = Enrollment.objects.get()
    assert (enrollment.current_step.key, enrollment.awaiting_event) == ("pause", "")

    # when the events job, holding what it loaded, reacts to the order
    monkeypatch.setattr(handlers, "_running_enrollments", lambda *_args: loaded)
    handlers.on_events_ingested(events=[_event(contact, "order_completed")])
    settle()

    # then the later wait is not ended: no email goes out days early
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.current_step.key) == ("waiting", "pause")
    assert enrollment.resume_outlet == ""
    assert outbox == []
    later(days=3)
    assert emails_to(outbox, "slow@example.com") == ["A for you"]


@pytest.mark.django_db
def test_the_awaited_event_resumes_its_wait(
    make_workflow, customer, settle, frozen_clock
):
    workflow = make_workflow(
        "Orders", trigger={"type": "manual"}, steps=WAIT_FOR_ORDER_THEN_PAUSE
    )
    contact = customer("buyer")
    enrollment_start(workflow=workflow, contact=contact)
    settle()
    handlers.on_events_ingested(events=[_event(contact, "order_completed")])
    settle()
    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.exit_reason) == (
        "completed",
        "reached the end",
    )


WAIT_THEN_REMIND_UNTIL_ORDERED = dict(
    trigger={"type": "manual"},
    goal={"event": "order_completed"},
    steps=[
        {
            "key": "hold",
            "type": "wait",
            "config": {"duration": {"hours": 1}},
            "next": {"next": "remind"},
        },
        {
            "key": "remind",
            "type": "send_email",
            "config": {"template": "A"},
            "next": {"next": "pause"},
        },
        {"key": "pause", "type": "wait", "config": {"duration": {"days": 3}}},
    ],
)


def _loaded_then_moved_on(make_workflow, customer, settle, later, user, *hours):
    """A run as an events job loads it, and the same run after the engine moved it
    on (the clock moved by each of ``hours`` in turn); the events job holds the
    first."""
    workflow = make_workflow("Remind", **WAIT_THEN_REMIND_UNTIL_ORDERED)
    contact = customer(user)
    enrollment_start(workflow=workflow, contact=contact)
    settle()
    loaded = handlers._running_enrollments({contact.pk}, None)
    assert loaded[0].current_step.key == "hold"
    for step in hours:
        later(hours=step)
    return contact, loaded, Enrollment.objects.get()


@pytest.mark.django_db
def test_a_goal_seen_by_an_events_job_keeps_what_the_engine_did_since(
    make_workflow, customer, settle, later, outbox, frozen_clock, monkeypatch
):
    # given a run loaded at its first wait, which the engine has since moved on:
    # the reminder went out and the run waits at "pause"
    contact, loaded, moved = _loaded_then_moved_on(
        make_workflow, customer, settle, later, "keen", 1.1
    )
    assert (moved.current_step.key, moved.steps_taken) == ("pause", 2)
    assert emails_to(outbox, "keen@example.com") == ["A for you"]

    # when the events job, holding the old copy, sees the goal event
    monkeypatch.setattr(handlers, "_running_enrollments", lambda *_args: loaded)
    handlers.on_events_ingested(events=[_event(contact, "order_completed")])

    # then the run converts, and the engine's progress is not written back over
    moved.refresh_from_db()
    assert moved.status == Enrollment.Status.CONVERTED
    assert moved.exit_reason.startswith("goal: order_completed")
    assert (moved.current_step.key, moved.steps_taken) == ("pause", 2)


@pytest.mark.django_db
def test_a_goal_seen_by_an_events_job_never_revives_a_run_that_ended(
    make_workflow, customer, settle, later, outbox, frozen_clock, monkeypatch
):
    # given a run loaded at its first wait, which has since reached its end
    contact, loaded, ended = _loaded_then_moved_on(
        make_workflow, customer, settle, later, "done", 1.1, 80
    )
    assert (ended.status, ended.exit_reason) == ("completed", "reached the end")
    outcomes = list(ended.runs.values_list("outcome", flat=True))

    # when the events job, holding the old copy, sees the goal event
    monkeypatch.setattr(handlers, "_running_enrollments", lambda *_args: loaded)
    handlers.on_events_ingested(events=[_event(contact, "order_completed")])

    # then the run stays as it ended, and its trace gains no conversion
    ended.refresh_from_db()
    assert (ended.status, ended.exit_reason) == ("completed", "reached the end")
    assert ended.converted_at is None
    assert list(ended.runs.values_list("outcome", flat=True)) == outcomes


CARTS = dict(
    trigger={"type": "event", "event": "add_to_cart"},
    steps=[{"key": "remind", "type": "send_email", "config": {"template": "A"}}],
)


def _decisions(user: str) -> list[str]:
    return list(
        TriggerDecision.objects.filter(contact__external_id=user).values_list(
            "reason", flat=True
        )
    )


@pytest.mark.django_db(transaction=True)
def test_an_event_from_before_the_workflow_went_live_never_triggers_it(
    shop, settle, make_workflow
):
    # given a workflow activated now
    make_workflow("Carts", **CARTS)
    # when a delayed batch brings an add_to_cart from an hour before
    shop.track("late", "add_to_cart", timestamp=clock.now() - dt.timedelta(hours=1))
    # and one from now
    shop.track("now", "add_to_cart")
    settle()
    # then only the one from now enrolls, and the other's reason is recorded
    assert [e.contact.external_id for e in Enrollment.objects.all()] == ["now"]
    assert _decisions("late") == [
        "the event happened (2026-11-25 11:00) before the workflow went live "
        "(2026-11-25 12:00)"
    ]


@pytest.mark.django_db(transaction=True)
def test_an_event_older_than_the_triggers_maximum_age_does_not_trigger(
    shop, settle, later, make_workflow
):
    # given workflows live for a week, one with the default maximum age (1 day) and
    # one that takes events up to 3 days old
    make_workflow("Default", **CARTS)
    lenient = make_workflow(
        "Lenient",
        trigger={"type": "event", "event": "add_to_cart", "max_age": {"days": 3}},
        steps=CARTS["steps"],
    )
    later(days=7)
    # when a back-filled add_to_cart from two days ago arrives
    shop.track("backfill", "add_to_cart", timestamp=clock.now() - dt.timedelta(days=2))
    settle()
    # then only the lenient one enrolls; the other says why not
    assert [e.workflow for e in Enrollment.objects.all()] == [lenient]
    assert _decisions("backfill") == [
        "the event happened 2 days before it arrived, longer than the trigger's "
        "maximum event age (1 day)"
    ]


@pytest.mark.django_db(transaction=True)
def test_an_event_that_arrived_on_time_triggers_however_late_it_is_processed(
    shop, settle, later, make_workflow
):
    # given a workflow with the default maximum age (1 day), and an add_to_cart
    # that arrives as it happens while nothing processes events (a backlog, or a
    # failure retried from admin later)
    workflow = make_workflow("Default", **CARTS)
    later(minutes=1)
    shop.track("late", "add_to_cart", timestamp=clock.now())
    assert is_pending(Event.objects.get(name="add_to_cart").pk)
    # when it is processed two days later
    later(days=2)
    # then it starts its run
    assert [e.workflow for e in Enrollment.objects.all()] == [workflow]


@pytest.mark.django_db(transaction=True)
def test_resuming_after_a_pause_does_not_reach_back_to_events_from_the_pause(
    shop, settle, later, make_workflow
):
    # given a workflow paused for an hour, then resumed
    workflow = make_workflow("Carts", **CARTS)
    workflow_pause(workflow=workflow)
    during = clock.now() + dt.timedelta(minutes=30)
    later(hours=1)
    workflow_resume(workflow=workflow)
    # when an add_to_cart from the pause arrives late
    shop.track("paused", "add_to_cart", timestamp=during)
    settle()
    # then it does not enroll
    assert not Enrollment.objects.exists()
    assert _decisions("paused") == [
        "the event happened (2026-11-25 12:30) before the workflow went live "
        "(2026-11-25 13:00)"
    ]


@pytest.mark.django_db
def test_finding_a_contacts_runs_does_not_walk_a_big_workflows_runs(
    require_postgres, make_workflow, frozen_clock
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given statistics taken while nothing was enrolled, and then a schedule that
    # enrolled thousands
    contacts, _enrollments = enrolled_on_stale_statistics(make_workflow)

    # when an event's job looks up its contact's runs
    with CaptureQueriesContext(connection) as queries:
        runs = handlers._running_enrollments({contacts[5].pk}, None)

    # then it finds the one, and every statement reads the rows it needs by index,
    # none of them all of the workflow's runs
    assert [r.contact_id for r in runs] == [contacts[5].pk]
    assert_read_by_key(queries)

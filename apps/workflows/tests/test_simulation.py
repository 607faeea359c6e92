"""Simulation takes the real engine's path, on a virtual clock, and leaves no trace."""

import datetime as dt
import threading

import django_rq
import pytest
from django.db import connection, transaction

from apps.campaigns.models import Message
from apps.contacts.models import Contact
from apps.events.models import Event
from apps.workflows import simulation
from apps.workflows.models import Enrollment
from apps.workflows.services import enrollment_start, workflow_activate
from apps.workflows.simulation import SimulatedEvent, parse_events, simulate

from .test_scenarios import CART_ABANDONMENT

pytestmark = pytest.mark.django_db(transaction=True)
T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


# The cart workflow edited: a 5-minute wait, then the reminder.
EDITED_CART = {
    **CART_ABANDONMENT,
    "steps": [
        {
            "key": "wait",
            "type": "wait",
            "config": {"duration": {"minutes": 5}},
            "next": {"next": "remind"},
        },
        {
            "key": "remind",
            "type": "send_email",
            "config": {"template": "Cart reminder"},
        },
    ],
}
WAIT_SECONDS = 30


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def steps_of(simulation) -> list[str]:
    return [line.detail["outcome"] for line in simulation.lines if line.kind == "step"]


def nothing_left_behind():
    assert not Enrollment.objects.exists()
    assert not Message.objects.exists()
    assert not Event.objects.exists()
    assert all(
        django_rq.get_queue(q).count == 0 for q in ("events", "workflows", "email")
    )


@pytest.fixture
def cart(make_workflow):
    return make_workflow("Cart", activate=False, **CART_ABANDONMENT)


def test_an_abandoned_cart_is_reminded_after_the_timeout(cart, customer):
    contact = customer("sim1")
    result = simulate(
        workflow=cart,
        contact=contact,
        events=[SimulatedEvent(at(0), "add_to_cart", {"cart_id": "c1"})],
    )
    assert steps_of(result) == ["waiting", "timed out", "sent"]
    assert result.status == "completed"
    email = next(line for line in result.lines if line.kind == "email")
    assert email.text == "would send “Cart reminder”"
    assert email.at == at(60)
    nothing_left_behind()


def test_buying_the_same_cart_converts_without_an_email(cart, customer):
    result = simulate(
        workflow=cart,
        contact=customer("sim2"),
        events=[
            SimulatedEvent(at(0), "add_to_cart", {"cart_id": "c2"}),
            SimulatedEvent(at(10), "order_completed", {"cart_id": "c2"}),
        ],
    )
    assert steps_of(result) == ["waiting", "converted"]
    assert result.status == "converted"
    assert not [line for line in result.lines if line.kind == "email"]
    nothing_left_behind()


def test_buying_another_cart_is_still_reminded(cart, customer):
    result = simulate(
        workflow=cart,
        contact=customer("sim3"),
        events=[
            SimulatedEvent(at(0), "add_to_cart", {"cart_id": "c3"}),
            SimulatedEvent(at(10), "order_completed", {"cart_id": "other"}),
        ],
    )
    assert steps_of(result) == ["waiting", "timed out", "sent"]


def test_a_described_contact_in_quiet_hours_is_deferred_with_the_reason(make_workflow):
    workflow = make_workflow(
        "Late",
        activate=False,
        trigger={"type": "event", "event": "promo"},
        quiet_hours={"start": "21:00", "end": "08:00", "mode": "defer"},
        steps=[{"key": "send", "type": "send_email", "config": {"template": "A"}}],
    )
    result = simulate(
        workflow=workflow,
        traits={"email": "p@example.com", "timezone": "Europe/Paris"},
        events=[SimulatedEvent(at(10 * 60), "promo")],
    )  # 23:00 in Paris
    steps = [line for line in result.lines if line.kind == "step"]
    assert [s.detail["outcome"] for s in steps] == ["deferred", "sent"]
    assert "quiet hours (21:00-08:00 Europe/Paris)" in steps[0].detail["reason"]
    assert steps[1].at == dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.UTC)
    assert not Contact.objects.exists()


def test_a_contact_kept_out_by_the_entry_condition_says_why(make_workflow, customer):
    workflow = make_workflow(
        "Pro only",
        activate=False,
        trigger={"type": "event", "event": "promo"},
        entry_condition={"attribute": "plan", "op": "eq", "value": "pro"},
        steps=[{"key": "send", "type": "send_email", "config": {"template": "A"}}],
    )
    result = simulate(
        workflow=workflow,
        contact=customer("free", attributes={"plan": "free"}),
        events=[SimulatedEvent(at(0), "promo")],
    )
    assert result.status == "not enrolled"
    [line] = [line for line in result.lines if line.kind == "not enrolled"]
    assert line.text == "entry condition not met: Plan is “pro”"


def test_an_unsaved_definition_can_be_simulated(cart, customer):
    result = simulate(
        workflow=cart,
        contact=customer("sim4"),
        definition=EDITED_CART,
        events=[SimulatedEvent(at(0), "add_to_cart", {"cart_id": "c9"})],
    )
    assert steps_of(result) == ["waiting", "waited", "sent"]
    cart.refresh_from_db()
    assert cart.current_version.number == 1  # the edit was not saved


def test_a_live_enrollment_does_not_wait_for_a_simulation_of_its_workflow(
    require_postgres, cart, customer, monkeypatch
):
    """PostgreSQL: SQLite lets one transaction write at a time, so there any
    simulation holds every other write back."""
    # given the cart workflow live, and a simulation of an edit of it held midway
    # (after it has set the workflow up, before its first event)
    workflow_activate(workflow=cart)
    simulated, live = customer("sim5"), customer("live")
    midway, go = threading.Event(), threading.Event()
    advance_until = simulation._advance_until

    def held_midway(*args) -> None:
        if not midway.is_set():
            midway.set()
            go.wait(WAIT_SECONDS)
        advance_until(*args)

    monkeypatch.setattr(simulation, "_advance_until", held_midway)
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(
                simulate(
                    workflow=cart,
                    contact=simulated,
                    definition=EDITED_CART,
                    events=[SimulatedEvent(at(0), "add_to_cart", {"cart_id": "c5"})],
                )
            )
        except BaseException as exc:  # the test reports it below
            outcome.append(exc)
        finally:
            midway.set()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert midway.wait(WAIT_SECONDS)

    # when another contact enrolls into the workflow meanwhile, giving up on any
    # lock after 2 s
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            enrollment, reason = enrollment_start(
                workflow=cart, contact=live, advance=False
            )
    finally:
        go.set()
        thread.join()

    # then it enrolled without waiting for the simulation
    assert (enrollment.contact, reason) == (live, "")
    # and the simulation took its path, leaving the workflow as it was
    [result] = outcome
    assert steps_of(result) == ["waiting", "waited", "sent"]
    cart.refresh_from_db()
    assert (cart.status, cart.current_version.number) == ("active", 1)
    assert list(Enrollment.objects.all()) == [enrollment]


def test_events_are_written_as_offsets_or_times():
    events = parse_events(
        '+0m add_to_cart {"cart_id": "c1"}\n\n+1.5h order_completed\n'
        "2026-11-26 09:00 page",
        start=T0,
    )
    assert [(e.at, e.name, e.properties) for e in events] == [
        (T0, "add_to_cart", {"cart_id": "c1"}),
        (T0 + dt.timedelta(minutes=90), "order_completed", {}),
        (dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC), "page", {}),
    ]
    with pytest.raises(ValueError, match="line 2: the properties are not JSON"):
        parse_events("+1m a\n+2m b {nope", start=T0)

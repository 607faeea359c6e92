"""The flows marketers build, end to end: events over HTTP in, emails out."""

import pytest

from apps.campaigns.models import Message
from apps.workflows.models import Enrollment, StepRun, TriggerDecision

from .conftest import emails_to

pytestmark = pytest.mark.django_db(transaction=True)

CART_ABANDONMENT = dict(
    trigger={"type": "event", "event": "add_to_cart", "key": "cart_id"},
    goal={"event": "order_completed", "match_key": "cart_id", "within_days": 7},
    steps=[
        {
            "key": "wait",
            "type": "wait_for_event",
            "config": {
                "event": "order_completed",
                "match_key": "cart_id",
                "timeout": {"hours": 1},
            },
            "next": {"happened": "", "timed_out": "remind"},
        },
        {
            "key": "remind",
            "type": "send_email",
            "config": {"template": "Cart reminder"},
        },
    ],
)


def test_an_abandoned_cart_gets_one_reminder_after_an_hour(
    shop, settle, later, make_workflow, customer, outbox
):
    make_workflow("Cart abandonment", **CART_ABANDONMENT)
    customer("u1", first_name="Ada")
    shop.track("u1", "add_to_cart", cart_id="c1", product="boots")
    settle()
    assert outbox == []
    later(minutes=59)
    assert outbox == []
    later(minutes=2)
    assert emails_to(outbox, "u1@example.com") == ["Cart reminder for Ada"]
    assert "cart c1" in outbox[0].alternatives[0][0]
    enrollment = Enrollment.objects.get()
    assert enrollment.status == Enrollment.Status.COMPLETED
    assert [r.outcome for r in enrollment.runs.all()] == [
        "waiting",
        "timed out",
        "sent",
    ]
    later(hours=5)
    assert len(outbox) == 1


def test_buying_the_same_cart_during_the_wait_converts_at_once(
    shop, settle, later, make_workflow, customer, outbox
):
    make_workflow("Cart abandonment", **CART_ABANDONMENT)
    customer("u2")
    shop.track("u2", "add_to_cart", cart_id="c2")
    settle()
    later(minutes=10)
    shop.track("u2", "order_completed", cart_id="c2")
    settle()
    enrollment = Enrollment.objects.get()
    assert enrollment.status == Enrollment.Status.CONVERTED
    assert enrollment.exit_reason.startswith("goal: order_completed (same cart_id c2)")
    later(hours=2)
    assert outbox == []


def test_buying_another_cart_still_gets_the_reminder(
    shop, settle, later, make_workflow, customer, outbox
):
    make_workflow("Cart abandonment", **CART_ABANDONMENT)
    customer("u3")
    shop.track("u3", "add_to_cart", cart_id="c3")
    settle()
    later(minutes=10)
    shop.track("u3", "order_completed", cart_id="another")
    later(hours=1)
    assert emails_to(outbox, "u3@example.com") == ["Cart reminder for you"]
    assert Enrollment.objects.get().status == Enrollment.Status.COMPLETED


def test_browse_abandonment_needs_three_views(
    shop, settle, later, make_workflow, customer, outbox
):
    make_workflow(
        "Browse abandonment",
        trigger={"type": "event", "event": "product_viewed"},
        entry_condition={
            "all": [
                {
                    "event": "product_viewed",
                    "count": {"op": "gte", "value": 3},
                    "window": {"last": 1, "unit": "days"},
                },
                {
                    "not": {
                        "event": "add_to_cart",
                        "window": {"last": 1, "unit": "days"},
                    }
                },
            ]
        },
        reentry={"rule": "once_per_period", "days": 7},
        steps=[
            {
                "key": "pause",
                "type": "wait",
                "config": {"duration": {"minutes": 30}},
                "next": {"next": "check"},
            },
            {
                "key": "check",
                "type": "branch",
                "config": {
                    "condition": {
                        "event": "add_to_cart",
                        "window": {"since": "enrollment"},
                    }
                },
                "next": {"yes": "", "no": "send"},
            },
            {"key": "send", "type": "send_email", "config": {"template": "Browse"}},
        ],
    )
    customer("u4")
    shop.track("u4", "product_viewed", sku="a")
    shop.track("u4", "product_viewed", sku="b")
    settle()
    assert not Enrollment.objects.exists()
    assert (
        TriggerDecision.objects.filter(
            reason__startswith="entry condition not met"
        ).count()
        == 2
    )
    shop.track("u4", "product_viewed", sku="c")
    shop.track(
        "u4", "product_viewed", sku="d"
    )  # a 4th view: "once per 7 days" keeps one run
    settle()
    assert Enrollment.objects.count() == 1
    assert (
        TriggerDecision.objects.filter(reason__startswith="re-entry rule").count() == 1
    )
    later(minutes=31)
    assert emails_to(outbox, "u4@example.com") == ["Browse for you"]


def test_welcome_series_branches_on_engagement(
    shop, settle, later, make_workflow, customer, outbox
):
    from apps.campaigns.tracking import email_event_record

    make_workflow(
        "Welcome",
        trigger={"type": "event", "event": "signed_up"},
        reentry={"rule": "once"},
        steps=[
            {
                "key": "welcome",
                "type": "send_email",
                "config": {"template": "Welcome"},
                "next": {"next": "wait"},
            },
            {
                "key": "wait",
                "type": "wait",
                "config": {"duration": {"days": 2}},
                "next": {"next": "opened"},
            },
            {
                "key": "opened",
                "type": "branch",
                "config": {
                    "condition": {
                        "email": "opened",
                        "template": "Welcome",
                        "window": {"since": "enrollment"},
                    }
                },
                "next": {"yes": "tips", "no": "nudge"},
            },
            {"key": "tips", "type": "send_email", "config": {"template": "Tips"}},
            {"key": "nudge", "type": "send_email", "config": {"template": "Nudge"}},
        ],
    )
    customer("reader")
    customer("skimmer")
    shop.track("reader", "signed_up")
    shop.track("skimmer", "signed_up")
    settle()
    welcome = Message.objects.get(contact__external_id="reader")
    email_event_record(
        esp="Postmark",
        event_type="opened",
        event_id="open-1",
        message_id=welcome.pk,
        recipient="reader@example.com",
    )
    settle()
    later(days=2, minutes=1)
    assert emails_to(outbox, "reader@example.com") == [
        "Welcome for you",
        "Tips for you",
    ]
    assert emails_to(outbox, "skimmer@example.com") == [
        "Welcome for you",
        "Nudge for you",
    ]
    branch = StepRun.objects.get(
        enrollment__contact__external_id="reader", step_key="opened"
    )
    assert branch.outcome == "yes"
    assert (
        branch.detail["condition"] == "Opened “Welcome” since they entered the workflow"
    )
    shop.track("reader", "signed_up")  # "once": never a second welcome
    settle()
    assert Enrollment.objects.filter(contact__external_id="reader").count() == 1


def test_birthday_emails_go_once_on_the_day(
    settle, later, make_workflow, customer, outbox, frozen_clock
):
    make_workflow(
        "Birthday",
        trigger={"type": "date", "attribute": "birthday"},
        steps=[
            {"key": "card", "type": "send_email", "config": {"template": "Birthday"}}
        ],
    )
    customer("bday", attributes={"birthday": "1990-11-26"})
    customer("other", attributes={"birthday": "1990-06-01"})
    settle()
    assert outbox == []
    later(days=1)
    later(hours=3)
    assert emails_to(outbox, "bday@example.com") == ["Birthday for you"]
    assert len(outbox) == 1
    assert Enrollment.objects.get().occurrence_key == "birthday:2026"


def test_win_back_after_thirty_days_of_silence(
    settle, later, make_workflow, customer, outbox, frozen_clock
):
    import datetime as dt

    from apps.core import clock

    make_workflow(
        "Win back",
        trigger={"type": "inactivity", "days": 30},
        steps=[
            {
                "key": "come-back",
                "type": "send_email",
                "config": {"template": "Win back"},
            }
        ],
    )
    customer("gone", last_seen_at=clock.now() - dt.timedelta(days=29))
    customer("here", last_seen_at=clock.now() - dt.timedelta(days=2))
    settle()
    assert outbox == []
    later(days=1, hours=1)
    assert emails_to(outbox, "gone@example.com") == ["Win back for you"]
    later(days=3)
    assert len(outbox) == 1


@pytest.mark.parametrize(
    ("rule", "runs"),
    [
        ({"rule": "every_time"}, 3),
        ({"rule": "once"}, 1),
        ({"rule": "while_not_enrolled"}, 2),  # the 1st is still waiting at the 2nd
        ({"rule": "once_per_period", "days": 1}, 2),
    ],
)
def test_reentry_rules(
    shop, settle, later, make_workflow, customer, outbox, rule, runs
):
    make_workflow(
        "Re-entry",
        trigger={"type": "event", "event": "ping"},
        reentry=rule,
        steps=[{"key": "hold", "type": "wait", "config": {"duration": {"hours": 1}}}],
    )
    customer("r")
    shop.track("r", "ping")
    settle()
    shop.track("r", "ping")  # while the first run waits
    settle()
    later(days=2)
    shop.track("r", "ping")  # after it ended, and after a day
    settle()
    assert Enrollment.objects.count() == runs


def test_the_frequency_cap_is_shared_across_workflows(
    shop, settle, make_workflow, customer, outbox
):
    cap = {"max": 1, "hours": 24}
    for name, template in (("First", "A"), ("Second", "B")):
        make_workflow(
            name,
            trigger={"type": "event", "event": "promo"},
            frequency_cap=cap,
            steps=[
                {"key": "send", "type": "send_email", "config": {"template": template}}
            ],
        )
    customer("capped")
    shop.track("capped", "promo")
    settle()
    assert len(emails_to(outbox, "capped@example.com")) == 1
    skipped = StepRun.objects.get(outcome="skipped")
    assert (
        skipped.detail["reason"]
        == "frequency cap: 1 emails in the last 24 hours (max 1)"
    )


def test_quiet_hours_defer_by_each_contacts_timezone(
    shop, settle, later, make_workflow, customer, outbox, frozen_clock
):
    from apps.core import clock

    make_workflow(
        "Late promo",
        trigger={"type": "event", "event": "promo"},
        quiet_hours={"start": "21:00", "end": "08:00", "mode": "defer"},
        steps=[{"key": "send", "type": "send_email", "config": {"template": "A"}}],
    )
    customer("paris", timezone="Europe/Paris")
    customer("nyc", timezone="America/New_York")
    later(hours=10)  # 22:00 UTC: 23:00 in Paris (quiet), 17:00 in New York
    assert clock.now().hour == 22
    shop.track("paris", "promo")
    shop.track("nyc", "promo")
    settle()
    assert emails_to(outbox, "nyc@example.com") == ["A for you"]
    assert emails_to(outbox, "paris@example.com") == []
    deferred = StepRun.objects.get(outcome="deferred")
    assert (
        "quiet hours (21:00-08:00 Europe/Paris): deferred to 08:00"
        in deferred.detail["reason"]
    )
    later(hours=8, minutes=59)  # 06:59 UTC = 07:59 in Paris
    assert emails_to(outbox, "paris@example.com") == []
    later(minutes=2)
    assert emails_to(outbox, "paris@example.com") == ["A for you"]


def test_an_ab_split_follows_its_weights_over_1000_contacts(make_workflow, settle):
    from apps.contacts.models import Contact
    from apps.workflows.services import enrollment_start

    workflow = make_workflow(
        "Split",
        trigger={"type": "manual"},
        steps=[
            {
                "key": "split",
                "type": "split",
                "config": {
                    "variants": [
                        {"name": "A", "weight": 70},
                        {"name": "B", "weight": 30},
                    ],
                    "holdout": 10,
                },
            }
        ],
    )
    contacts = Contact.objects.bulk_create(
        Contact(email=f"s{i}@example.com") for i in range(1000)
    )
    for contact in contacts:
        enrollment_start(workflow=workflow, contact=contact)
    settle()
    outcomes = list(StepRun.objects.values_list("outcome", flat=True))
    counts = {name: outcomes.count(name) for name in ("A", "B", "holdout")}
    assert sum(counts.values()) == 1000
    # 10% held out, then 70/30 of the rest: 100 / 630 / 270, within a few percent
    assert 70 <= counts["holdout"] <= 130
    assert 580 <= counts["A"] <= 680
    assert 220 <= counts["B"] <= 320

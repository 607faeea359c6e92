"""The demo data shows the whole loop: the demo shop's add_to_cart -> the active
cart-abandonment workflow -> the reminder, and no reminders for the demo history's
week-old carts."""

import httpx
import pytest
from django.core.management import call_command

from apps.events.demo import DEMO_SHOP_KEY
from apps.workflows.demo import DEMO_WAIT_MINUTES
from apps.workflows.models import Enrollment, TriggerDecision

from .conftest import emails_to

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_reminds_a_new_cart_and_not_the_demo_historys_old_ones(
    live_server, settle, later, outbox, frozen_clock
):
    # given the demo data (a week of history with add_to_cart events) processed
    call_command("nudge_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settle()
    # then the week-old carts enrolled nobody, and say why
    assert not Enrollment.objects.exists()
    reasons = set(TriggerDecision.objects.values_list("reason", flat=True))
    assert reasons and all("before the workflow went live" in r for r in reasons)

    # when a visitor of the demo shop adds to cart now and leaves
    visitor = {"anonymousId": "visitor"}
    response = httpx.post(
        f"{live_server.url}/api/v1/batch",
        auth=(DEMO_SHOP_KEY, ""),
        json={
            "batch": [
                {"type": "identify", **visitor, "traits": {"email": "v@example.com"}},
                {
                    "type": "track",
                    **visitor,
                    "event": "add_to_cart",
                    "properties": {"cart_id": "demo-1", "name": "Trail boots"},
                },
            ]
        },
    )
    assert response.status_code == 200, response.text
    settle()
    later(minutes=DEMO_WAIT_MINUTES, seconds=30)

    # then the reminder comes
    assert Enrollment.objects.get().status == Enrollment.Status.COMPLETED
    assert emails_to(outbox, "v@example.com") == ["Hi, your cart is waiting"]

"""Demo data for workflows: the cart-abandonment loop, with a short wait so a visitor
of the demo shop sees the reminder arrive in a couple of minutes."""

from .models import Workflow
from .services import workflow_activate, workflow_create

DEMO_WAIT_MINUTES = 2

CART_ABANDONMENT = {
    "trigger": {"type": "event", "event": "add_to_cart", "key": "cart_id"},
    "reentry": {"rule": "while_not_enrolled"},
    "goal": {"event": "order_completed", "match_key": "cart_id", "within_days": 7},
    "frequency_cap": {"max": 5, "hours": 24},
    "steps": [
        {
            "key": "wait-for-order",
            "type": "wait_for_event",
            "config": {
                "event": "order_completed",
                "match_key": "cart_id",
                "timeout": {"minutes": DEMO_WAIT_MINUTES},
            },
            "next": {"happened": "", "timed_out": "reminder"},
        },
        {
            "key": "reminder",
            "type": "send_email",
            "config": {"template": "Cart reminder"},
        },
    ],
}


# The newsletter box of the demo shop signs people up with double opt-in: their
# confirmation (the email_subscribed event) starts this.
WELCOME = {
    "trigger": {"type": "event", "event": "email_subscribed"},
    "reentry": {"rule": "once"},
    "steps": [
        {"key": "welcome", "type": "send_email", "config": {"template": "Welcome"}},
    ],
}


def demo_welcome() -> Workflow | None:
    if Workflow.objects.filter(name="Welcome (demo)").exists():
        return None
    workflow = workflow_create(
        name="Welcome (demo)",
        description="Sign up in the demo shop's newsletter box and confirm by the "
        "link in the email: the welcome email follows.",
        definition=WELCOME,
    )
    workflow_activate(workflow=workflow)
    return workflow


def demo_workflows() -> Workflow | None:
    demo_welcome()
    if Workflow.objects.filter(name="Cart abandonment (demo)").exists():
        return None
    workflow = workflow_create(
        name="Cart abandonment (demo)",
        description=f"Add to cart in the demo shop and leave: the reminder comes "
        f"{DEMO_WAIT_MINUTES} minutes later, unless you check out.",
        definition=CART_ABANDONMENT,
    )
    workflow_activate(workflow=workflow)
    return workflow

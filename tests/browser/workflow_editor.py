"""Driving static/nudge/admin/workflow_editor.js in a page: the editor, its steps,
the definition it writes, and the cart-abandonment workflow a marketer clicks together."""

import json
import uuid
from pathlib import Path

import httpx
from django.conf import settings
from playwright.sync_api import expect

VIEWPORT = {"width": 1280, "height": 900}

SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"

# What the clicks in the first test build (docs/workflows.md's example, less the
# rules it does not set); the editor writes every outlet of a step it adds.
CART_ABANDONMENT = {
    "trigger": {"type": "event", "event": "add_to_cart", "key": "cart_id"},
    "goal": {"event": "order_completed", "match_key": "cart_id", "within_days": 7},
    "steps": [
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
            "next": {"next": ""},
        },
    ],
}


def editor(page):
    root = page.locator("#nudge-workflow-editor")
    expect(root).to_have_attribute("data-state", "ready")
    return root


def step(page, n: int):
    return page.locator('#nudge-workflow-editor [data-role="step"]').nth(n)


def add_step(page, type_: str):
    page.get_by_label("New step type").select_option(type_)
    page.get_by_role("button", name="Add step").click()


def definition_in_form(page) -> dict:
    return json.loads(page.locator("#id_definition").input_value())


def save(page):
    page.get_by_role("button", name="Save", exact=True).click()


def track(base_url: str, key: str, user: str, event: str, **properties) -> None:
    response = httpx.post(
        f"{base_url}/api/v1/track",
        auth=(key, ""),
        json={
            "userId": user,
            "event": event,
            "properties": properties,
            "messageId": str(uuid.uuid4()),
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text


def build_cart_abandonment(page):
    area = editor(page)
    expect(page.locator("#id_definition")).to_be_hidden()
    page.locator("#id_name").fill("Cart abandonment")

    trigger = area.locator('[data-section="trigger"]')
    trigger.get_by_label("When").select_option("event")
    trigger.get_by_label("Event", exact=True).fill("add_to_cart")
    trigger.get_by_label("Key property").fill("cart_id")

    rules = area.locator('[data-section="settings"]')
    rules.get_by_label("Goal", exact=True).select_option("event")
    rules.get_by_label("Goal event", exact=True).fill("order_completed")
    rules.get_by_label("Matching").fill("cart_id")
    rules.get_by_label("Within (days)").fill("7")

    add_step(page, "wait_for_event")
    wait = step(page, 0)
    expect(wait.get_by_label("Key of step 1")).to_be_focused()
    wait.get_by_label("Event", exact=True).fill("order_completed")
    wait.get_by_label("Matching").fill("cart_id")
    wait.get_by_label("Timeout", exact=True).fill("1")
    wait.get_by_label("Timeout: unit").select_option("hours")

    add_step(page, "send_email")
    remind = step(page, 1)
    remind.get_by_label("Template", exact=True).select_option("Cart reminder")

    # outlets are picked from the other steps, never typed
    happened = wait.locator('[data-outlet="happened"]')
    timed_out = wait.locator('[data-outlet="timed_out"]')
    happened.select_option(label="(end)")
    timed_out.select_option(label="send-email (step 2)")
    return area, wait, remind

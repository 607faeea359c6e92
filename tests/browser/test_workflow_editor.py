"""static/nudge/admin/workflow_editor.js in headless Chromium, against a live server.

A marketer builds the cart-abandonment workflow by clicking, saves and activates it;
a shop's events then run it, and the contact's page shows the trace. Errors show on
the step they are about, and the server refuses to save them. Nothing sleeps: the
tests wait on what the page shows (Playwright's expect) and move the clock.
"""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from apps.contacts.models import Contact
from apps.core import clock
from apps.workflows.models import Enrollment, Workflow

from .workflow_editor import (
    CART_ABANDONMENT,
    SCREENSHOTS,
    add_step,
    build_cart_abandonment,
    definition_in_form,
    editor,
    save,
    step,
    track,
)

pytestmark = pytest.mark.browser


def test_a_marketer_builds_the_cart_abandonment_workflow_by_clicking_and_it_runs(
    admin_page, live_server, template, server_source, settle, later, outbox
):
    page = admin_page
    # given the add page, when the workflow is built by clicking
    page.goto(reverse("admin:workflows_workflow_add"))
    area, wait, remind = build_cart_abandonment(page)

    # ... and the steps get readable keys, then the outlet follows the rename
    wait.get_by_label("Key of step 1").fill("wait")
    remind.get_by_label("Key of step 2").fill("remind")
    expect(wait.locator('[data-outlet="timed_out"]')).to_have_value("remind")

    # then the server finds nothing wrong and describes each step
    expect(remind.locator('[data-role="describe"]')).to_have_text(
        "Send “Cart reminder”"
    )
    expect(wait.locator('[data-role="describe"]')).to_have_text(
        "Wait up to 1 hour for order_completed (same cart_id)"
    )
    expect(area.locator('[data-role="general-errors"] li')).to_have_count(0)
    expect(area.locator('[data-role="step-errors"] li')).to_have_count(0)
    assert definition_in_form(page) == CART_ABANDONMENT
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "workflow-editor.png"), full_page=True)

    # when it is saved
    save(page)
    page.wait_for_url(f"**{reverse('admin:workflows_workflow_changelist')}")

    # then the stored definition is the one built
    workflow = Workflow.objects.get()
    assert workflow.name == "Cart abandonment"
    assert workflow.status == Workflow.Status.DRAFT
    assert workflow.current_version.definition == CART_ABANDONMENT

    # when it is activated from the changelist (with the confirm page)
    page.locator('input[name="_selected_action"]').check()
    page.locator('select[name="action"]').select_option("activate")
    page.get_by_role("button", name="Run").click()
    page.get_by_role("button", name="Yes, activate").click()
    expect(page.locator(".messagelist")).to_contain_text("activate")
    workflow.refresh_from_db()
    assert workflow.status == Workflow.Status.ACTIVE

    # when a shop's customer adds to cart and an hour passes without an order
    ada = Contact.objects.create(
        external_id="u1", email="ada@example.com", first_name="Ada"
    )
    with clock.frozen(clock.now()):
        track(live_server.url, server_source.key, "u1", "add_to_cart", cart_id="c1")
        settle()
        assert outbox == []
        later(minutes=61)

    # then the reminder went out
    assert [m.subject for m in outbox] == ["Ada, your cart is waiting"]
    enrollment = Enrollment.objects.get()
    assert enrollment.status == Enrollment.Status.COMPLETED

    # and the contact's page shows the run, step by step
    page.goto(reverse("admin:contacts_contact_change", args=[ada.pk]))
    trace = page.locator("#panel-workflows")
    expect(trace).to_contain_text("Cart abandonment — completed")
    rows = trace.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text(
        "Wait up to 1 hour for order_completed (same cart_id)"
    )
    expect(rows.nth(0)).to_contain_text("waiting")
    expect(rows.nth(1)).to_contain_text("timed out")
    expect(rows.nth(1)).to_contain_text("no order_completed within 1 hour")
    expect(rows.nth(2)).to_contain_text("Send “Cart reminder”")
    expect(rows.nth(2)).to_contain_text("sent")


def test_errors_show_on_the_step_they_name_and_the_save_is_refused(
    admin_page, template
):
    page = admin_page
    page.goto(reverse("admin:workflows_workflow_add"))
    area = editor(page)
    page.locator("#id_name").fill("Broken")

    # then an empty workflow is missing its trigger and steps, said at the top
    general = area.locator('[data-role="general-errors"]')
    expect(general).to_contain_text("trigger.type: one of event, segment_entered")
    expect(general).to_contain_text("steps: at least one step")
    expect(area.locator('[data-path="trigger.type"]')).to_have_class(
        "nudge-wf-field nudge-wf-invalid"
    )
    area.locator('[data-section="trigger"]').get_by_label("When").select_option(
        "manual"
    )
    expect(general.locator("li")).to_have_text(["steps: at least one step"])

    # when a send step has no template, and two sends lead to each other
    add_step(page, "send_email")
    add_step(page, "send_email")
    first, second = step(page, 0), step(page, 1)
    first.get_by_label("Key of step 1").fill("a")
    second.get_by_label("Key of step 2").fill("b")
    second.get_by_label("Template", exact=True).select_option("Cart reminder")
    first.locator('[data-outlet="next"]').select_option("b")
    second.locator('[data-outlet="next"]').select_option("a")

    # then the missing template shows on the first step, and only there
    expect(first.locator('[data-role="step-errors"]')).to_have_text(
        "template: choose a template"
    )
    expect(first).to_have_class("nudge-wf-step nudge-wf-step-invalid")
    expect(first.locator('[data-path="config.template"]')).to_have_class(
        "nudge-wf-field nudge-wf-invalid"
    )
    expect(second.locator('[data-role="step-errors"] li')).to_have_count(0)

    # when saved anyway (and the live check is unavailable), then the server refuses
    # and the editor puts its errors on the step again
    page.route("**/validate/", lambda route: route.abort())
    save(page)
    expect(page.locator(".errornote")).to_be_visible()
    area = editor(page)
    assert not Workflow.objects.exists()
    first = step(page, 0)
    expect(first.locator('[data-role="step-errors"]')).to_have_text(
        "template: choose a template"
    )
    expect(area.locator('[data-role="note"]')).to_contain_text(
        "Could not check the workflow"
    )
    page.unroute("**/validate/")

    # when the template is chosen, then the loop without a wait is named on step a
    first.get_by_label("Template", exact=True).select_option("Cart reminder")
    expect(first.locator('[data-role="step-errors"]')).to_have_text(
        "a loop without a wait: a -> b -> a"
    )
    expect(area.locator('[data-role="note"]')).to_have_text("")
    save(page)
    expect(page.locator(".errornote")).to_be_visible()
    assert not Workflow.objects.exists()
    editor(page)
    expect(step(page, 0).locator('[data-role="step-errors"]')).to_have_text(
        "a loop without a wait: a -> b -> a"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "workflow-editor-error.png"), full_page=True)

    # when the loop is broken, then it saves
    step(page, 1).locator('[data-outlet="next"]').select_option(label="(end)")
    expect(step(page, 0).locator('[data-role="step-errors"] li')).to_have_count(0)
    save(page)
    page.wait_for_url(f"**{reverse('admin:workflows_workflow_changelist')}")
    assert Workflow.objects.get().current_version.definition["steps"][1]["next"] == {
        "next": ""
    }

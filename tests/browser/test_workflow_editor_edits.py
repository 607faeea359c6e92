"""The workflow editor on workflows that exist: one reopens as it was, unknown parts
survive an edit, steps are reordered and removed, and a branch condition is built
with the embedded condition builder. Headless Chromium against a live server."""

import json

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from apps.campaigns.models import EmailTemplate
from apps.segments.models import Segment
from apps.workflows.models import Workflow
from apps.workflows.services import workflow_create

from .workflow_editor import add_step, definition_in_form, editor, save, step

pytestmark = pytest.mark.browser


def test_an_existing_workflow_reopens_as_it_was_and_is_not_rewritten(
    admin_page, template
):
    # given a saved workflow with a split and the rules the editor has fields for
    definition = {
        "trigger": {"type": "event", "event": "add_to_cart", "key": "cart_id"},
        "entry_condition": {"attribute": "email", "op": "exists"},
        "reentry": {"rule": "once_per_period", "days": 30},
        "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "skip"},
        "frequency_cap": {"max": 3, "hours": 24},
        "steps": [
            {
                "key": "ab",
                "type": "split",
                "config": {
                    "variants": [
                        {"name": "A", "weight": 50},
                        {"name": "B", "weight": 50},
                    ]
                },
                "next": {"A": "remind", "B": "later"},
            },
            {
                "key": "later",
                "type": "wait",
                "config": {"duration": {"days": 1, "hours": 12}},
                "next": {"next": "remind"},
            },
            {
                "key": "remind",
                "type": "send_email",
                "config": {"template": "Cart reminder"},
            },
        ],
    }
    workflow = workflow_create(name="Split test", definition=definition)
    page = admin_page

    # when it is opened
    page.goto(reverse("admin:workflows_workflow_change", args=[workflow.pk]))
    area = editor(page)

    # then every field shows what is stored
    rules = area.locator('[data-section="settings"]')
    expect(rules.get_by_label("Re-entry")).to_have_value("once_per_period")
    expect(rules.get_by_label("Period (days)")).to_have_value("30")
    expect(rules.get_by_label("Quiet hours from")).to_have_value("21:00")
    expect(rules.get_by_label("until", exact=True)).to_have_value("08:00")
    expect(rules.get_by_label("A send in quiet hours is")).to_have_value("skip")
    expect(rules.get_by_label("Frequency cap: at most")).to_have_value("3")
    split, wait = step(page, 0), step(page, 1)
    expect(split.locator('[data-outlet="A"]')).to_have_value("remind")
    expect(split.locator('[data-outlet="B"]')).to_have_value("later")
    expect(wait.get_by_label("Wait for", exact=True)).to_have_value("36")
    expect(wait.get_by_label("Wait for: unit")).to_have_value("hours")
    expect(split.locator('[data-role="describe"]')).to_have_text("Split: A 50 / B 50")
    # ... and the form's JSON is the stored text, untouched
    textarea = page.locator("#id_definition")
    assert textarea.evaluate("t => t.value === t.defaultValue")

    # when variant B is renamed and a holdout added, then its outlet keeps its target
    split.get_by_label("Name of variant 2").fill("Later")
    split.get_by_label("Holdout (%)").fill("10")
    expect(split.locator('[data-outlet="Later"]')).to_have_value("later")
    expect(split.locator('[data-outlet="holdout"]')).to_have_value("")
    expect(split.locator('[data-role="describe"]')).to_have_text(
        "Split: A 50 / Later 50, holdout 10%"
    )
    split.locator('[data-outlet="holdout"]').select_option("later")
    expected = json.loads(json.dumps(definition))
    expected["steps"][0]["config"]["variants"][1]["name"] = "Later"
    expected["steps"][0]["config"]["holdout"] = 10
    expected["steps"][0]["next"] = {"A": "remind", "Later": "later", "holdout": "later"}
    assert definition_in_form(page) == expected

    # when saved, then that is the new version
    save(page)
    page.wait_for_url(f"**{reverse('admin:workflows_workflow_changelist')}")
    workflow.refresh_from_db()
    assert workflow.current_version.number == 2
    assert workflow.current_version.definition == expected


def test_unknown_step_types_and_fields_survive_an_edit(admin_page):
    page = admin_page
    page.goto(reverse("admin:workflows_workflow_add"))
    area = editor(page)
    # given a definition (pasted as JSON) with things the editor has no form for
    pasted = {
        "trigger": {"type": "event", "event": "signup", "x_source": "crm"},
        "x_owner": "growth team",
        "steps": [
            {
                "key": "sms",
                "type": "send_sms",
                "config": {"text": "Hi!", "sender": {"id": 7}},
                "next": {"delivered": "pause", "failed": ""},
                "note": "added by the SMS app",
            },
            {
                "key": "pause",
                "type": "wait",
                "config": {"duration": {"hours": 1}, "x_jitter": True},
            },
        ],
    }
    area.get_by_role("button", name="Show JSON").click()
    textarea = page.locator("#id_definition")
    textarea.fill('{"trigger": ')
    expect(area.locator('[data-role="note"]')).to_contain_text("The JSON is not valid")
    expect(area.locator('[data-section="trigger"]')).to_have_count(0)
    textarea.fill(json.dumps(pasted))
    sms = step(page, 0)
    expect(sms).to_contain_text("Unknown type “send_sms”")
    expect(sms.locator('[data-outlet="delivered"]')).to_have_value("pause")
    expect(sms.locator('[data-role="step-errors"]')).to_contain_text("type: one of")

    # when the wait is changed by clicking
    step(page, 1).get_by_label("Wait for: unit").select_option("days")

    # then only the duration changed
    expected = json.loads(json.dumps(pasted))
    expected["steps"][1]["config"]["duration"] = {"days": 1}
    assert definition_in_form(page) == expected


def test_steps_are_reordered_and_removed_and_each_form_writes_its_config(
    admin_page, template, layout
):
    # given a second template and a static list
    EmailTemplate.objects.create(
        name="Tips", subject="Tips", html_body="<p>Tips</p>", layout=layout
    )
    vip = Segment.objects.create(name="VIP", kind=Segment.Kind.STATIC)
    page = admin_page
    page.goto(reverse("admin:workflows_workflow_add"))
    area = editor(page)
    area.locator('[data-section="trigger"]').get_by_label("When").select_option(
        "manual"
    )

    # when a send is made an A/B test of two templates
    add_step(page, "send_email")
    send = step(page, 0)
    send.get_by_label("A/B test several templates").check()
    send.get_by_label("Template of variant 1").select_option("Cart reminder")
    send.get_by_label("Weight of variant 1").fill("70")
    send.get_by_label("Template of variant 2").select_option("Tips")
    send.get_by_label("Weight of variant 2").fill("30")

    # ... a wait until 09:30 on Mondays and Fridays, an update, and an exit
    add_step(page, "wait_until_time")
    wait = step(page, 1)
    wait.get_by_label("Until").fill("09:30")
    wait.get_by_label("Mon").check()
    wait.get_by_label("Fri").check()
    add_step(page, "update_contact")
    update = step(page, 2)
    update.get_by_role("button", name="Set an attribute").click()
    update.get_by_label("Attribute 1", exact=True).fill("plan")
    update.get_by_label("Value 1", exact=True).fill("pro")
    update.get_by_role("button", name="Set an attribute").click()
    update.get_by_label("Attribute 2", exact=True).fill("bucket")
    update.get_by_label("Value 2", exact=True).fill("3")
    update.get_by_label("Unset").fill("old_plan, trial")
    update.get_by_label("Add to list").select_option(label="VIP")
    update.get_by_label("Add to score").fill("5")
    add_step(page, "exit")
    step(page, 3).get_by_label("Reason").fill("done")

    # ... and the update moves up above the wait, the steps are linked, the exit goes
    page.get_by_role("button", name="Move step 3 up").click()
    expect(step(page, 1)).to_have_attribute("data-type", "update_contact")
    expect(page.get_by_role("button", name="Move step 2 up")).to_be_focused()
    step(page, 0).locator('[data-outlet="next"]').select_option("update-contact")
    step(page, 1).locator('[data-outlet="next"]').select_option("wait-until-time")
    step(page, 2).locator('[data-outlet="next"]').select_option("exit")
    page.get_by_role("button", name="Remove step 4").click()
    expect(step(page, 3)).to_have_count(0)

    # then the outlet that led to the exit now ends the run, and all is valid
    expect(step(page, 2).locator('[data-outlet="next"]')).to_have_value("")
    expect(step(page, 2).locator('[data-role="describe"]')).to_have_text(
        "Wait until 09:30 on Monday, Friday (contact's time)"
    )
    expect(area.locator('[data-role="step-errors"] li')).to_have_count(0)
    expect(area.locator('[data-role="general-errors"] li')).to_have_count(0)
    assert definition_in_form(page) == {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "key": "send-email",
                "type": "send_email",
                "config": {
                    "variants": [
                        {"template": "Cart reminder", "weight": 70},
                        {"template": "Tips", "weight": 30},
                    ]
                },
                "next": {"next": "update-contact"},
            },
            {
                "key": "update-contact",
                "type": "update_contact",
                "config": {
                    "set": {"plan": "pro", "bucket": 3},
                    "unset": ["old_plan", "trial"],
                    "add_to_list": vip.pk,
                    "add_score": 5,
                },
                "next": {"next": "wait-until-time"},
            },
            {
                "key": "wait-until-time",
                "type": "wait_until_time",
                "config": {"time": "09:30", "weekdays": [0, 4]},
                "next": {"next": ""},
            },
        ],
    }


def test_an_event_triggers_maximum_age_is_set_in_the_trigger_form(admin_page, template):
    page = admin_page
    page.goto(reverse("admin:workflows_workflow_add"))
    area = editor(page)
    trigger = area.locator('[data-section="trigger"]')
    trigger.get_by_label("When").select_option("event")
    trigger.get_by_label("Event", exact=True).fill("add_to_cart")
    add_step(page, "send_email")
    step(page, 0).get_by_label("Template", exact=True).select_option("Cart reminder")

    # when a maximum age of 0 is typed, then the server's error shows on the field
    age = trigger.get_by_label("Maximum event age", exact=True)
    age.fill("0")
    expect(area.locator('[data-path="trigger.max_age"]')).to_have_class(
        "nudge-wf-field nudge-wf-invalid"
    )

    # when it is 6 hours, then it is valid and written into the trigger
    age.fill("6")
    trigger.get_by_label("Maximum event age: unit").select_option("hours")
    expect(area.locator('[data-role="general-errors"] li')).to_have_count(0)
    expect(area.locator('[data-path="trigger.max_age"]')).to_have_class(
        "nudge-wf-field"
    )
    assert definition_in_form(page)["trigger"] == {
        "type": "event",
        "event": "add_to_cart",
        "max_age": {"hours": 6},
    }

    # and a trigger not fired by an event has no such field
    trigger.get_by_label("When").select_option("inactivity")
    expect(trigger.get_by_label("Maximum event age", exact=True)).to_have_count(0)


def test_a_branch_condition_is_built_by_clicking_with_the_embedded_builder(
    admin_page,
):
    page = admin_page
    page.goto(reverse("admin:workflows_workflow_add"))
    area = editor(page)
    page.locator("#id_name").fill("Pro branch")
    area.locator('[data-section="trigger"]').get_by_label("When").select_option(
        "manual"
    )

    # when a branch is added and its condition built with the segment builder
    add_step(page, "branch")
    branch = step(page, 0)
    builder = branch.locator('[data-role="condition"]')
    expect(builder).to_have_attribute("data-state", "ready")
    builder.locator('[data-role="add-rule"]').click()
    rule = builder.locator('[data-role="rule"]').first
    expect(rule.get_by_label("Rule type")).to_be_focused()
    rule.get_by_label("Attribute").fill("plan")
    rule.get_by_label("Operator").select_option("eq")
    rule.get_by_label("Value", exact=True).fill("pro")

    # then the definition holds it, and the builder reads it back as a sentence
    condition = {
        "version": 1,
        "all": [{"attribute": "plan", "op": "eq", "value": "pro"}],
    }
    expect(builder.locator(".nudge-sentence")).not_to_be_empty()
    assert definition_in_form(page)["steps"][0]["config"]["condition"] == condition
    expect(area.locator('[data-role="step-errors"] li')).to_have_count(0)

    # when saved, then that is what is stored
    save(page)
    page.wait_for_url(f"**{reverse('admin:workflows_workflow_changelist')}")
    workflow = Workflow.objects.get(name="Pro branch")
    stored = workflow.current_version.definition
    assert stored["steps"][0]["type"] == "branch"
    assert stored["steps"][0]["config"]["condition"] == condition

"""The workflow pages in admin: library, diagram, simulate, test-enroll, why, versions."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.campaigns.models import EmailTemplate, Message
from apps.workflows.library import LIBRARY
from apps.workflows.models import Enrollment, Workflow
from apps.workflows.services import enrollment_start, workflow_save_version

from .test_scenarios import CART_ABANDONMENT

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("slug", list(LIBRARY))
def test_every_library_workflow_starts_a_valid_draft(admin_client, slug):
    response = admin_client.post("/admin/workflows/workflow/library/", {"slug": slug})
    workflow = Workflow.objects.get()
    assert response.status_code == 302
    assert workflow.status == "draft"
    assert workflow.current_version.definition == LIBRARY[slug]["definition"]
    assert set(LIBRARY[slug]["templates"]) <= set(
        EmailTemplate.objects.values_list("name", flat=True)
    )


def test_the_library_page_shows_each_flow_with_its_diagram(admin_client):
    page = admin_client.get("/admin/workflows/workflow/library/").content.decode()
    for entry in LIBRARY.values():
        assert entry["name"] in page
    assert page.count("class='nudge-diagram'") == len(LIBRARY)


def test_the_diagram_draws_every_step_and_its_counts(
    admin_client, make_workflow, customer, settle
):
    workflow = make_workflow("Cart", **CART_ABANDONMENT)
    enrollment_start(workflow=workflow, contact=customer("d1"))
    settle()
    svg = admin_client.get(
        f"/admin/workflows/workflow/{workflow.pk}/diagram.svg"
    ).content.decode()
    assert svg.startswith("<svg")
    assert ">wait<" in svg and ">remind<" in svg
    assert "Wait up to 1 hour for order_completed (same cart_id)" in svg
    assert "1 passed · 1 here now" in svg
    assert ">timed_out<" in svg


def test_simulate_in_admin_shows_the_path(admin_client, make_workflow, customer):
    workflow = make_workflow("Cart", activate=False, **CART_ABANDONMENT)
    contact = customer("s1")
    response = admin_client.post(
        f"/admin/workflows/workflow/{workflow.pk}/simulate/",
        {
            "contact": contact.pk,
            "start": "2026-11-25 12:00",
            "events": '+0m add_to_cart {"cart_id": "c1"}',
            "traits": "{}",
        },
    )
    page = response.content.decode()
    assert "Path: completed" in page
    assert "would send “Cart reminder”" in page
    assert not Enrollment.objects.exists()


def test_simulate_reports_a_bad_event_line(admin_client, make_workflow):
    workflow = make_workflow("Cart", activate=False, **CART_ABANDONMENT)
    response = admin_client.post(
        f"/admin/workflows/workflow/{workflow.pk}/simulate/",
        {"events": "add_to_cart", "traits": "{}"},
    )
    assert "line 1:" in response.content.decode()


def test_a_test_run_sends_to_the_marketer_marked_as_a_test(
    admin_client, make_workflow, customer, outbox, run_jobs
):
    workflow = make_workflow(
        "Welcome",
        activate=False,
        trigger={"type": "manual"},
        steps=[{"key": "hi", "type": "send_email", "config": {"template": "Welcome"}}],
    )
    contact = customer("t1", first_name="Ada")
    response = admin_client.post(
        f"/admin/workflows/workflow/{workflow.pk}/test-enroll/",
        {"contact": contact.pk, "send_to": "me@agency.example"},
    )
    assert response.status_code == 302
    run_jobs()
    [email] = outbox
    assert email.to == ["me@agency.example"]
    assert email.subject == "[TEST] Welcome for Ada"
    assert Message.objects.get().is_test
    assert Enrollment.objects.get().is_test


def test_why_explains_a_contact_kept_out(
    admin_client, make_workflow, customer, shop, settle
):
    workflow = make_workflow(
        "Pro",
        trigger={"type": "event", "event": "promo"},
        entry_condition={"attribute": "plan", "op": "eq", "value": "pro"},
        steps=[{"key": "send", "type": "send_email", "config": {"template": "A"}}],
    )
    customer("free1", attributes={"plan": "free"})
    shop.track("free1", "promo")
    settle()
    page = admin_client.get(
        f"/admin/workflows/workflow/{workflow.pk}/why/", {"who": "free1@example.com"}
    ).content.decode()
    assert "promo: not enrolled, entry condition not met: Plan is “pro”" in page
    assert "Entry condition now: Plan is “pro”: not met." in page


def test_moving_running_enrollments_to_the_new_version_strands_nobody(
    admin_client, make_workflow, customer, settle
):
    workflow = make_workflow(
        "Two",
        trigger={"type": "manual"},
        steps=[
            {
                "key": "wait",
                "type": "wait",
                "config": {"duration": {"days": 1}},
                "next": {"next": "send"},
            },
            {"key": "send", "type": "send_email", "config": {"template": "A"}},
        ],
    )
    enrollment_start(workflow=workflow, contact=customer("m1"))
    settle()
    kept = {**workflow.current_version.definition}
    kept["steps"] = [
        kept["steps"][0],
        {**kept["steps"][1], "config": {"template": "B"}},
    ]
    workflow_save_version(workflow=workflow, definition=kept)
    response = admin_client.post(
        f"/admin/workflows/workflow/{workflow.pk}/move-enrollments/", follow=True
    )
    assert "1 running enrollments moved to version 2" in response.content.decode()
    enrollment = Enrollment.objects.get()
    assert (
        enrollment.version.number == 2 and enrollment.current_step.version.number == 2
    )
    # a version without the step they wait at: they stay where they are
    gone = {
        **kept,
        "steps": [{"key": "send", "type": "send_email", "config": {"template": "B"}}],
    }
    workflow_save_version(workflow=workflow, definition=gone)
    response = admin_client.post(
        f"/admin/workflows/workflow/{workflow.pk}/move-enrollments/", follow=True
    )
    assert (
        "1 stayed on their version: step “wait” is not in version 3"
        in response.content.decode()
    )
    assert Enrollment.objects.get().version.number == 2


def test_export_and_import_through_admin(admin_client, make_workflow):
    workflow = make_workflow("Cart", **CART_ABANDONMENT)
    exported = admin_client.get(f"/admin/workflows/workflow/{workflow.pk}/export/")
    assert (
        exported["Content-Disposition"] == 'attachment; filename="workflow-cart.json"'
    )
    data = json.loads(exported.content)
    data["name"] = "Cart copy"
    upload = SimpleUploadedFile("w.json", json.dumps(data).encode())
    response = admin_client.post("/admin/workflows/workflow/import/", {"file": upload})
    assert response.status_code == 302
    assert Workflow.objects.filter(name="Cart copy").exists()
    bad = SimpleUploadedFile("w.json", b'{"format": "other"}')
    page = admin_client.post(
        "/admin/workflows/workflow/import/", {"file": bad}
    ).content.decode()
    assert "not a Nudge workflow export" in page


def test_pausing_from_the_page_confirms_how_many_are_affected(
    admin_client, make_workflow, customer, settle
):
    workflow = make_workflow(
        "Hold",
        trigger={"type": "manual"},
        steps=[{"key": "wait", "type": "wait", "config": {"duration": {"days": 1}}}],
    )
    for i in range(3):
        enrollment_start(workflow=workflow, contact=customer(f"h{i}"))
    settle()
    confirm = admin_client.get(
        f"/admin/workflows/workflow/{workflow.pk}/status/pause/"
    ).content.decode()
    assert (
        '<strong id="affected">3</strong> contacts are in “Hold” right now.' in confirm
    )
    assert "They wait where they are until you resume." in confirm
    admin_client.post(f"/admin/workflows/workflow/{workflow.pk}/status/pause/")
    workflow.refresh_from_db()
    assert workflow.status == "paused"
    admin_client.post(
        f"/admin/workflows/workflow/{workflow.pk}/status/pause/"
    )  # not from paused
    response = admin_client.post(
        f"/admin/workflows/workflow/{workflow.pk}/status/archive/", follow=True
    )
    assert "is now archived; 3 contacts were in it" in response.content.decode()
    assert set(Enrollment.objects.values_list("exit_reason", flat=True)) == {
        "workflow archived"
    }


def test_the_workflow_page_shows_tools_diagram_and_recent_traces(
    admin_client, make_workflow, customer, settle
):
    workflow = make_workflow("Cart", **CART_ABANDONMENT)
    enrollment_start(workflow=workflow, contact=customer("t9"))
    settle()
    page = admin_client.get(
        f"/admin/workflows/workflow/{workflow.pk}/change/"
    ).content.decode()
    assert 'id="nudge-workflow-tools"' in page
    assert f"/admin/workflows/workflow/{workflow.pk}/diagram.svg" in page
    assert "t9@example.com" in page
    assert "waiting for order_completed" in page

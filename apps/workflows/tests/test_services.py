"""Writes for workflows: status changes, enrolling, merging."""

import json
import uuid

import pytest

from apps.contacts.models import Contact
from apps.contacts.services import contact_merge
from apps.workflows.models import Enrollment, TriggerDecision, Workflow
from apps.workflows.services import enrollment_start, workflow_pause

pytestmark = pytest.mark.django_db

WAIT_A_DAY = [{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}]


def test_a_stale_copy_of_a_paused_workflow_enrolls_nobody(
    make_workflow, customer, frozen_clock
):
    # given a worker's copy of a workflow, loaded while it was active
    workflow = make_workflow("Carts", trigger={"type": "manual"}, steps=WAIT_A_DAY)
    stale = Workflow.objects.select_related("current_version").get(pk=workflow.pk)

    # when the workflow is paused elsewhere and the stale copy enrolls
    workflow_pause(workflow=workflow)
    enrollment, reason = enrollment_start(workflow=stale, contact=customer("late"))

    # then the database's status wins
    assert (enrollment, reason) == (None, "workflow is paused")
    assert not Enrollment.objects.exists()
    assert not TriggerDecision.objects.exists()  # no trigger event to record it for


# -- merging contacts ---------------------------------------------------------------


def _run(workflow, contact, *, occurrence_key="", status="waiting") -> Enrollment:
    enrollment, _reason = enrollment_start(
        workflow=workflow, contact=contact, occurrence_key=occurrence_key, advance=False
    )
    Enrollment.objects.filter(pk=enrollment.pk).update(status=status)
    return enrollment


def test_a_merge_keeps_the_survivors_run_of_an_occurrence_both_were_enrolled_in(
    make_workflow, customer, frozen_clock
):
    # given two contacts enrolled by the same schedule run
    workflow = make_workflow("Weekly", trigger={"type": "manual"}, steps=WAIT_A_DAY)
    survivor, merged = customer("survivor"), customer("merged")
    kept = _run(workflow, survivor, occurrence_key="cron:202611251200")
    other = _run(workflow, merged, occurrence_key="cron:202611251200")

    # when they merge
    contact_merge(source=merged, target=survivor, reason="test")

    # then the survivor's run goes on, the other exits saying why, and both stay
    kept.refresh_from_db()
    other.refresh_from_db()
    assert (kept.contact_id, kept.status) == (survivor.pk, "waiting")
    assert (other.contact_id, other.status) == (survivor.pk, "exited")
    assert other.exit_reason == (
        f"contact merged into #{survivor.pk}, whose run #{kept.pk} has the same "
        "occurrence (cron:202611251200)"
    )
    assert other.occurrence_key == f"cron:202611251200~merged-{other.pk}"
    assert [r.outcome for r in other.runs.all()] == ["exited"]


def test_a_finished_run_of_the_same_occurrence_only_changes_its_key(
    make_workflow, customer, frozen_clock
):
    workflow = make_workflow("Weekly", trigger={"type": "manual"}, steps=WAIT_A_DAY)
    survivor, merged = customer("survivor"), customer("merged")
    _run(workflow, survivor, occurrence_key="birthday:2026")
    done = _run(workflow, merged, occurrence_key="birthday:2026", status="completed")

    contact_merge(source=merged, target=survivor, reason="test")

    done.refresh_from_db()
    assert (done.contact_id, done.status, done.exit_reason) == (
        survivor.pk,
        "completed",
        "",
    )
    assert done.occurrence_key == f"birthday:2026~merged-{done.pk}"


@pytest.mark.parametrize(
    ("rule", "statuses"),
    [
        ("while_not_enrolled", ["waiting", "exited"]),
        ("once", ["waiting", "exited"]),
        ("every_time", ["waiting", "waiting"]),
    ],
)
def test_two_running_runs_merge_only_where_the_reentry_rule_allows_them(
    make_workflow, customer, frozen_clock, rule, statuses
):
    workflow = make_workflow(
        "Carts",
        trigger={"type": "manual"},
        reentry={"rule": rule},
        steps=WAIT_A_DAY,
    )
    survivor, merged = customer("survivor"), customer("merged")
    kept = _run(workflow, survivor)
    other = _run(workflow, merged)

    contact_merge(source=merged, target=survivor, reason="test")

    assert [
        e.status for e in Enrollment.objects.filter(contact=survivor).order_by("pk")
    ] == statuses
    other.refresh_from_db()
    if other.status == "exited":
        assert other.exit_reason == (
            f"contact merged into #{survivor.pk}, already in this workflow (run "
            f"#{kept.pk}); its re-entry rule allows one run at a time"
        )


@pytest.mark.django_db(transaction=True)
def test_identifying_two_contacts_of_one_schedule_run_as_one_answers_2xx(
    shop, settle, make_workflow
):
    # given an anonymous visitor and a known customer, both enrolled by the same
    # run of a schedule
    make_workflow(
        "Every minute",
        trigger={"type": "schedule", "cron": "* * * * *"},
        steps=WAIT_A_DAY,
    )
    visitor = {"anonymousId": "visitor", "messageId": str(uuid.uuid4())}
    assert shop.client.post("/page", json=visitor).status_code == 200
    shop.identify("u1", email="u1@example.com")
    settle()
    keys = set(Enrollment.objects.values_list("occurrence_key", flat=True))
    assert Enrollment.objects.count() == 2 and keys == {"cron:202611251200"}

    # when the server says the visitor is u1
    response = shop.client.post(
        "/identify",
        json={"userId": "u1", "anonymousId": "visitor", "messageId": str(uuid.uuid4())},
    )

    # then the call succeeds, and the one contact left keeps one run going
    assert response.status_code == 200, response.text
    (contact,) = Contact.objects.all()
    runs = Enrollment.objects.order_by("status")
    assert [(r.contact_id, r.status) for r in runs] == [
        (contact.pk, "exited"),
        (contact.pk, "waiting"),
    ]
    assert runs[0].exit_reason.startswith(f"contact merged into #{contact.pk}")


HOLD = dict(
    trigger={"type": "manual"},
    steps=[{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}],
)


def test_a_stale_copy_cannot_bring_an_archived_workflow_back(make_workflow):
    from apps.workflows.services import StatusError, workflow_activate, workflow_archive

    # given a page's copy read while the workflow was paused, then archived elsewhere
    workflow = make_workflow("Winback", **HOLD)
    workflow_pause(workflow=workflow)
    stale = Workflow.objects.get(pk=workflow.pk)
    workflow_archive(workflow=workflow)
    # when the stale copy is activated, then it is refused and stays archived
    with pytest.raises(StatusError, match="is archived: it cannot be activated"):
        workflow_activate(workflow=stale)
    assert Workflow.objects.get(pk=workflow.pk).status == Workflow.Status.ARCHIVED
    # and a copy that still says "active" resumes a workflow paused meanwhile,
    # instead of doing nothing
    live = make_workflow("Live", **HOLD)
    stale_live = Workflow.objects.get(pk=live.pk)
    workflow_pause(workflow=live)
    workflow_activate(workflow=stale_live)
    assert Workflow.objects.get(pk=live.pk).status == Workflow.Status.ACTIVE


def test_activating_a_selection_with_an_archived_workflow_skips_it(
    make_workflow, admin_client
):
    from django.urls import reverse

    from apps.workflows.services import workflow_archive

    paused = make_workflow("Paused", **HOLD)
    archived = make_workflow("Gone", **HOLD)
    workflow_pause(workflow=paused)
    workflow_archive(workflow=archived)

    page = admin_client.post(
        reverse("admin:workflows_workflow_changelist"),
        {
            "action": "activate",
            "_selected_action": [paused.pk, archived.pk],
            "confirmed": "1",
        },
        follow=True,
    )

    assert page.status_code == 200
    said = [str(m) for m in page.context["messages"]]
    assert "Skipped: “Gone” is archived: it cannot be activated." in said
    assert "1 workflows: activate (0 enrollments affected)." in said
    assert Workflow.objects.get(pk=paused.pk).status == Workflow.Status.ACTIVE
    assert Workflow.objects.get(pk=archived.pk).status == Workflow.Status.ARCHIVED


def test_saving_the_workflow_form_keeps_a_status_changed_meanwhile(
    make_workflow, admin_client, monkeypatch
):
    from django.urls import reverse

    from apps.workflows import admin as workflows_admin
    from apps.workflows.services import workflow_archive

    # given the change form of an active workflow
    workflow = make_workflow("Winback", **HOLD)
    url = reverse("admin:workflows_workflow_change", args=[workflow.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {
        "name": "Winback (renamed)",
        "description": "",
        "definition": json.dumps(form.initial["definition"]),
    }
    # when a colleague archives it while the form is being validated (after the
    # request read the workflow)
    clean_definition = workflows_admin.WorkflowForm.clean_definition

    def archived_meanwhile(form):
        workflow_archive(workflow=Workflow.objects.get(pk=workflow.pk))
        return clean_definition(form)

    monkeypatch.setattr(
        workflows_admin.WorkflowForm, "clean_definition", archived_meanwhile
    )
    admin_client.post(url, data)
    # then the rename is saved and the archive stands
    saved = Workflow.objects.get(pk=workflow.pk)
    assert (saved.name, saved.status) == ("Winback (renamed)", "archived")

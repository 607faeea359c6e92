import json

import pytest
from django.core.management import CommandError, call_command

from apps.campaigns.models import EmailTemplate
from apps.segments.models import Segment
from apps.workflows.models import Workflow
from apps.workflows.portability import ImportProblem, workflow_export, workflow_import

from .test_scenarios import CART_ABANDONMENT

pytestmark = pytest.mark.django_db


def test_export_then_import_into_an_empty_nudge_round_trips(make_workflow):
    vip = Segment.objects.create(name="VIP", kind=Segment.Kind.STATIC)
    definition = {
        **CART_ABANDONMENT,
        "steps": [
            *CART_ABANDONMENT["steps"][:1],
            {**CART_ABANDONMENT["steps"][1], "next": {"next": "tag"}},
            {"key": "tag", "type": "update_contact", "config": {"add_to_list": vip.pk}},
        ],
    }
    workflow = make_workflow("Cart", **definition)
    exported = json.loads(json.dumps(workflow_export(workflow)))
    assert [t["name"] for t in exported["templates"]] == ["Cart reminder"]
    assert exported["segments"] == {str(vip.pk): "VIP"}
    # given another Nudge: no workflow, no template, the list under another id
    Workflow.objects.all().delete()
    EmailTemplate.objects.all().delete()
    vip.delete()
    vip_here = Segment.objects.create(name="VIP", kind=Segment.Kind.STATIC)
    # when
    imported = workflow_import(exported)
    # then
    assert imported.status == "draft"
    steps = imported.current_version.definition["steps"]
    assert steps[2]["config"] == {"add_to_list": vip_here.pk}
    assert steps[:2] == definition["steps"][:2]
    assert EmailTemplate.objects.get().subject == exported["templates"][0]["subject"]


def test_an_import_names_everything_missing_and_writes_nothing(make_workflow):
    workflow = make_workflow(
        "Cart",
        trigger={"type": "segment_entered", "segment": 999},
        steps=CART_ABANDONMENT["steps"],
    )
    exported = workflow_export(workflow)
    exported["templates"] = []
    EmailTemplate.objects.filter(name="Cart reminder").delete()
    with pytest.raises(ImportProblem) as problem:
        workflow_import(exported)
    assert problem.value.errors == [
        "template “Cart reminder” is not in this Nudge nor in the export",
        "segment “999” (used as segment) does not exist here",
        "a workflow named “Cart” exists: import with replace to make this a new version of it",
    ]
    assert Workflow.objects.count() == 1


def test_replace_makes_a_new_version(make_workflow):
    workflow = make_workflow("Cart", **CART_ABANDONMENT)
    exported = workflow_export(workflow)
    exported["definition"]["steps"][0]["config"]["timeout"] = {"hours": 2}
    workflow_import(exported, replace=True)
    workflow.refresh_from_db()
    assert workflow.current_version.number == 2
    assert workflow.current_version.changes == ["step wait: config changed"]


def test_the_commands_export_and_import_files(make_workflow, tmp_path):
    make_workflow("Cart", **CART_ABANDONMENT)
    path = tmp_path / "cart.json"
    call_command("workflow_export", "Cart", "-o", str(path))
    Workflow.objects.all().delete()
    call_command("workflow_import", str(path))
    assert Workflow.objects.get().name == "Cart"
    path.write_text("{not json")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("workflow_import", str(path))

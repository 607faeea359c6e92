"""The workflow editor's endpoints (apps/workflows/admin/editor.py) and its page."""

import copy
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from apps.contacts.models import Contact
from apps.core import clock
from apps.events.models import Event
from apps.segments.models import Segment
from apps.workflows.models import Workflow

from .test_scenarios import CART_ABANDONMENT

pytestmark = pytest.mark.django_db

VOCABULARY = "admin:workflows_workflow_editor_vocabulary"
VALIDATE = "admin:workflows_workflow_editor_validate"


def check(client, definition) -> dict:
    response = client.post(
        reverse(VALIDATE), json.dumps(definition), content_type="application/json"
    )
    assert response.status_code == 200
    return response.json()


def test_the_vocabulary_lists_step_and_trigger_types_templates_lists_and_events(
    admin_client, templates, server_source
):
    # given a static list, a dynamic segment and an event seen recently
    vip = Segment.objects.create(name="VIP list", kind=Segment.Kind.STATIC)
    buyers = Segment.objects.create(name="Buyers", condition={"all": []})
    now = clock.now()
    Event.objects.create(
        contact=Contact.objects.create(email="ada@example.com"),
        source=server_source,
        name="add_to_cart",
        properties={"cart_id": "c1"},
        timestamp=now,
        received_at=now,
        message_id="m-1",
    )

    # when the editor asks what it may offer
    data = admin_client.get(reverse(VOCABULARY)).json()

    # then
    steps = {t["name"]: t for t in data["step_types"]}
    assert steps["wait_for_event"] == {
        "name": "wait_for_event",
        "label": "Wait for an event",
        "outlets": ["happened", "timed_out"],
        "dynamic_outlets": False,
        "waits": True,
    }
    assert steps["branch"]["outlets"] == ["yes", "no"]
    assert steps["send_email"]["outlets"] == ["next"]
    assert steps["goal"]["outlets"] == []
    assert steps["split"]["outlets"] == [] and steps["split"]["dynamic_outlets"]
    triggers = {t["name"]: t for t in data["trigger_types"]}
    assert triggers["event"] == {
        "name": "event",
        "label": "An event happens",
        "kind": "event",
    }
    assert triggers["schedule"]["kind"] == "time"
    assert triggers["manual"]["kind"] == "manual"
    assert "Cart reminder" in data["templates"]
    assert data["static_lists"] == [{"id": vip.pk, "name": "VIP list"}]
    assert {"id": buyers.pk, "name": "Buyers"} in data["segments"]
    assert {"id": vip.pk, "name": "VIP list"} in data["segments"]
    assert data["events"] == [{"name": "add_to_cart", "properties": ["cart_id"]}]
    assert "opened" in data["email_actions"]
    assert "once_per_period" in data["reentry_rules"]


def test_a_valid_definition_has_no_errors_and_each_step_is_described(
    admin_client, templates
):
    data = check(admin_client, CART_ABANDONMENT)
    assert data == {
        "errors": [],
        "by_step": {},
        "general": [],
        "steps": [
            {
                "key": "wait",
                "describe": "Wait up to 1 hour for order_completed (same cart_id)",
                "outlets": ["happened", "timed_out"],
            },
            {
                "key": "remind",
                "describe": "Send “Cart reminder”",
                "outlets": ["next"],
            },
        ],
    }


def test_errors_are_sorted_by_the_step_they_name(admin_client, templates):
    # given a send step without a template, a bad outlet and no trigger event
    definition = copy.deepcopy(CART_ABANDONMENT)
    definition["trigger"] = {"type": "event"}
    definition["steps"][1]["config"] = {}
    definition["steps"][0]["next"]["yes"] = "remind"

    data = check(admin_client, definition)

    assert data["general"] == ["trigger.event: required"]
    assert data["by_step"] == {
        "wait": ["steps[0] (wait).next.yes: this step has no outlet 'yes'"],
        "remind": ["steps[1] (remind).config.template: choose a template"],
    }
    assert data["errors"] == [
        "trigger.event: required",
        "steps[0] (wait).next.yes: this step has no outlet 'yes'",
        "steps[1] (remind).config.template: choose a template",
    ]


def test_a_loop_without_a_wait_is_named_on_its_first_step(admin_client, templates):
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {"key": "a", "type": "send_email", "config": {"template": "Tips"}},
            {"key": "b", "type": "send_email", "config": {"template": "Welcome"}},
        ],
    }
    definition["steps"][0]["next"] = {"next": "b"}
    definition["steps"][1]["next"] = {"next": "a"}

    data = check(admin_client, definition)

    assert data["by_step"] == {
        "a": ["steps[0] (a): a loop without a wait: a -> b -> a"]
    }
    assert data["general"] == []


def test_a_split_is_described_with_the_outlets_its_variants_make(admin_client):
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "key": "split",
                "type": "split",
                "config": {
                    "variants": [
                        {"name": "A", "weight": 50},
                        {"name": "B", "weight": 50},
                    ],
                    "holdout": 10,
                },
            }
        ],
    }
    data = check(admin_client, definition)
    assert data["errors"] == []
    assert data["steps"] == [
        {
            "key": "split",
            "describe": "Split: A 50 / B 50, holdout 10%",
            "outlets": ["A", "B", "holdout"],
        }
    ]


def test_a_half_built_step_is_still_summed_up(admin_client):
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {"key": "wait", "type": "wait", "config": {"duration": {"hours": "x"}}},
            {"key": "odd", "type": "no_such_type", "config": {"x": 1}},
            "not a step",
        ],
    }
    data = check(admin_client, definition)
    assert data["steps"][0]["key"] == "wait"
    assert data["steps"][1] == {"key": "odd", "describe": "", "outlets": []}
    assert data["steps"][2] == {"key": None, "describe": "", "outlets": []}
    assert "#2" in data["by_step"]
    assert any(e.startswith("steps[1].type: one of") for e in data["by_step"]["odd"])


def test_a_malformed_definition_is_an_error_not_a_crash(admin_client):
    definition = {
        "trigger": {"type": "manual"},
        "steps": [{"key": "a", "type": "exit", "next": "nowhere"}],
    }
    data = check(admin_client, definition)
    assert data["by_step"]["a"] == [
        "steps[0] (a).next: an object of outlet -> step key"
    ]


def test_a_definition_that_is_not_an_object_is_refused(admin_client):
    assert check(admin_client, [1, 2]) == {
        "errors": ["the definition is a JSON object"],
        "by_step": {},
        "general": ["the definition is a JSON object"],
        "steps": [],
    }


def test_a_body_that_is_not_json_is_a_bad_request(admin_client):
    response = admin_client.post(
        reverse(VALIDATE), "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == ["not JSON"]


def test_validate_only_answers_posts(admin_client):
    assert admin_client.get(reverse(VALIDATE)).status_code == 405


def test_the_endpoints_need_a_staff_user_who_may_edit_workflows(client):
    # given a staff user without workflow permissions
    user = User.objects.create_user("intern", password="pw", is_staff=True)
    client.force_login(user)

    assert client.get(reverse(VOCABULARY)).status_code == 403
    assert client.post(reverse(VALIDATE), "{}", "application/json").status_code == 403

    # when they may change workflows
    user.user_permissions.add(Permission.objects.get(codename="change_workflow"))
    user = User.objects.get(pk=user.pk)  # permissions are cached on the instance
    client.force_login(user)

    assert client.get(reverse(VOCABULARY)).status_code == 200


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(reverse(VOCABULARY))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_the_change_form_carries_the_editor_and_its_endpoints(admin_client, templates):
    page = admin_client.get(reverse("admin:workflows_workflow_add")).content.decode()
    assert 'id="nudge-workflow-editor"' in page
    assert 'data-target="id_definition"' in page
    assert f'data-vocabulary-url="{reverse(VOCABULARY)}"' in page
    assert f'data-validate-url="{reverse(VALIDATE)}"' in page
    assert "nudge/admin/workflow_editor.js" in page
    assert "nudge/admin/workflow_editor.css" in page


def test_a_refused_save_renders_the_errors_the_editor_maps_onto_steps(
    admin_client, templates
):
    # given a definition whose send step has no template
    definition = copy.deepcopy(CART_ABANDONMENT)
    definition["steps"][1]["config"] = {}

    response = admin_client.post(
        reverse("admin:workflows_workflow_add"),
        {"name": "Cart", "description": "", "definition": json.dumps(definition)},
    )

    # then nothing is saved, and the error is listed under the definition field
    # (the editor reads it from there)
    assert response.status_code == 200
    assert not Workflow.objects.exists()
    assert (
        '<ul class="errorlist" id="id_definition_error">'
        "<li>steps[1] (remind).config.template: choose a template</li></ul>"
    ) in response.content.decode()

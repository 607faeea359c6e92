"""Writes for workflows: creating one and saving versions of its definition."""

from django.db import transaction
from django.db.models import Max

from apps.core import clock

from ..definition import SETTINGS, validate_definition
from ..models import Step, Workflow, WorkflowVersion


class DefinitionError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@transaction.atomic
def workflow_create(
    *, name: str, definition: dict, description: str = "", user=None
) -> Workflow:
    errors = validate_definition(definition)
    if errors:
        raise DefinitionError(errors)
    workflow = Workflow.objects.create(name=name, description=description)
    workflow_save_version(workflow=workflow, definition=definition, user=user)
    return workflow


@transaction.atomic
def workflow_save_version(
    *, workflow: Workflow, definition: dict, user=None
) -> WorkflowVersion:
    """Store a new version and make it current. Running enrollments stay on theirs."""
    previous = workflow.current_version
    version = workflow_version_create(
        workflow=workflow, definition=definition, user=user
    )
    if version is not previous:
        workflow.save(
            update_fields=[
                "current_version",
                "trigger_type",
                "trigger_event",
                "updated_at",
            ]
        )
    return version


@transaction.atomic
def workflow_version_create(
    *, workflow: Workflow, definition: dict, user=None
) -> WorkflowVersion:
    """Store ``definition`` as the workflow's next version (unless it is the current
    one's) and point the instance at it, without writing the workflow's row: the
    caller saves it (workflow_save_version), or keeps it in memory (the simulator,
    as live work holds that row)."""
    errors = validate_definition(definition)
    if errors:
        raise DefinitionError(errors)
    previous = workflow.current_version
    if previous is not None and previous.definition == definition:
        return previous
    number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = WorkflowVersion.objects.create(
        workflow=workflow,
        number=number,
        definition=definition,
        created_at=clock.now(),
        created_by=user if getattr(user, "pk", None) else None,
        changes=diff_definitions(previous.definition if previous else None, definition),
    )
    Step.objects.bulk_create(
        Step(
            version=version,
            key=s["key"],
            type=s["type"],
            config=s.get("config") or {},
            outlets=s.get("next") or {},
            position=i,
        )
        for i, s in enumerate(definition["steps"])
    )
    trigger = definition["trigger"]
    from ..triggers import TRIGGER_TYPES

    trigger_type = TRIGGER_TYPES[trigger["type"]]
    workflow.current_version = version
    workflow.trigger_type = trigger["type"]
    workflow.trigger_event = trigger_type.event_name(
        {k: v for k, v in trigger.items() if k != "type"}
    )
    return version


def diff_definitions(old: dict | None, new: dict) -> list[str]:
    """What changed, in words: "step remind: config changed", "goal changed"."""
    if old is None:
        return ["created"]
    changes = []
    for key in SETTINGS:
        if old.get(key) != new.get(key):
            changes.append(f"{key.replace('_', ' ')} changed")
    old_steps = {s["key"]: s for s in old.get("steps", [])}
    new_steps = {s["key"]: s for s in new.get("steps", [])}
    for key in new_steps.keys() - old_steps.keys():
        changes.append(f"step {key} added")
    for key in old_steps.keys() - new_steps.keys():
        changes.append(f"step {key} removed")
    for key in new_steps.keys() & old_steps.keys():
        for part in ("type", "config", "next"):
            if old_steps[key].get(part) != new_steps[key].get(part):
                changes.append(
                    f"step {key}: {'outlets' if part == 'next' else part} changed"
                )
    if [s["key"] for s in old.get("steps", [])] != [
        s["key"] for s in new.get("steps", [])
    ] and not any(c.endswith(("added", "removed")) for c in changes):
        changes.append("steps reordered")
    return changes

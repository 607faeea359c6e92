"""Export a workflow as JSON (templates and segments referenced by name) and import
it into another Nudge, with every missing piece named."""

import copy
from typing import Any

from django.db import transaction

from apps.campaigns.models import EmailTemplate
from apps.segments.models import Segment

from .definition import validate_definition
from .models import Workflow
from .services import DefinitionError, workflow_create, workflow_save_version

FORMAT = "nudge.workflow"
FORMAT_VERSION = 1
TEMPLATE_FIELDS = [
    "name",
    "subject",
    "preheader",
    "html_body",
    "text_body",
    "from_name",
    "from_email",
    "reply_to",
    "tags",
    "track_clicks",
]


def _template_names(definition: dict) -> set[str]:
    names = set()
    for step in definition.get("steps", []):
        config = step.get("config") or {}
        if step.get("type") == "send_email":
            if config.get("template"):
                names.add(config["template"])
            names |= {
                v.get("template")
                for v in config.get("variants") or []
                if v.get("template")
            }
    return names


def _segment_refs(definition: dict) -> list[tuple[list, str]]:
    """Every place a segment id appears: (container, key) pairs, for remapping."""
    found: list[tuple[Any, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("segment"), int) and not isinstance(
                node.get("segment"), bool
            ):
                found.append((node, "segment"))
            for key in ("add_to_list", "remove_from_list"):
                if isinstance(node.get(key), int):
                    found.append((node, key))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(definition)
    return found


def workflow_export(workflow: Workflow) -> dict:
    definition = copy.deepcopy(workflow.current_version.definition)
    templates = EmailTemplate.objects.filter(
        name__in=_template_names(definition)
    ).order_by("name")
    segment_ids = {container[key] for container, key in _segment_refs(definition)}
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "name": workflow.name,
        "description": workflow.description,
        "definition": definition,
        "templates": [{f: getattr(t, f) for f in TEMPLATE_FIELDS} for t in templates],
        "segments": {
            str(s.pk): s.name for s in Segment.objects.filter(pk__in=segment_ids)
        },
    }


class ImportProblem(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@transaction.atomic
def workflow_import(data: Any, *, replace: bool = False, user=None) -> Workflow:
    """Create (or, with ``replace``, update) the workflow; all or nothing.

    Templates that are missing here are created from the export; segments are matched
    by name. Anything that cannot be resolved is reported, and nothing is written.
    """
    name, definition = _import_envelope(data)
    exported = {
        t.get("name"): t for t in data.get("templates") or [] if isinstance(t, dict)
    }
    missing, errors = _missing_templates(definition, exported)
    errors += _segments_remap(definition, data.get("segments") or {})
    workflow = Workflow.objects.filter(name=name).first()
    if workflow is not None and not replace:
        errors.append(
            f"a workflow named “{name}” exists: import with replace to make this a new version of it"
        )
    if errors:
        raise ImportProblem(errors)
    for template_name in missing:
        _template_create_from_export(exported[template_name])
    return _workflow_write(
        workflow,
        name=name,
        definition=definition,
        description=data.get("description", ""),
        user=user,
    )


def _import_envelope(data: Any) -> tuple[str, dict]:
    """The export's name and a copy of its definition, or why this is not an export."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ImportProblem(
            [f'not a Nudge workflow export (expected "format": "{FORMAT}")']
        )
    if data.get("version") != FORMAT_VERSION:
        raise ImportProblem(
            [
                f"export version {data.get('version')!r}: this Nudge reads {FORMAT_VERSION}"
            ]
        )
    name, definition = data.get("name"), copy.deepcopy(data.get("definition"))
    if (
        not isinstance(name, str)
        or not name.strip()
        or not isinstance(definition, dict)
    ):
        raise ImportProblem(["the export needs a name and a definition"])
    return name, definition


def _missing_templates(
    definition: dict, exported: dict[str, dict]
) -> tuple[list[str], list[str]]:
    """The templates the definition names that this Nudge lacks (sorted), and an
    error for each the export does not carry either."""
    existing = set(
        EmailTemplate.objects.filter(name__in=_template_names(definition)).values_list(
            "name", flat=True
        )
    )
    missing = sorted(_template_names(definition) - existing)
    errors = [
        f"template “{name}” is not in this Nudge nor in the export"
        for name in missing
        if name not in exported
    ]
    return missing, errors


def _segments_remap(definition: dict, segment_names: dict[str, str]) -> list[str]:
    """Point the definition's segment ids (in place) at this Nudge's segments of the
    same name; an error for each reference that has no such segment here."""
    errors = []
    by_name = dict(
        Segment.objects.filter(name__in=segment_names.values()).values_list(
            "name", "pk"
        )
    )
    for container, key in _segment_refs(definition):
        old = str(container[key])
        label = segment_names.get(old)
        if label is None or label not in by_name:
            errors.append(
                f"segment “{label or old}” (used as {key}) does not exist here"
            )
        else:
            container[key] = by_name[label]
    return errors


def _template_create_from_export(exported: dict) -> None:
    fields = {
        f: exported.get(f) for f in TEMPLATE_FIELDS if exported.get(f) is not None
    }
    EmailTemplate.objects.create(**fields)


def _workflow_write(
    workflow: Workflow | None, *, name: str, definition: dict, description, user
) -> Workflow:
    """A new workflow, or a new version of ``workflow``; definition errors reported
    as import problems."""
    problems = validate_definition(definition)
    if problems:
        raise ImportProblem([f"definition: {p}" for p in problems])
    try:
        if workflow is None:
            return workflow_create(
                name=name, definition=definition, description=description, user=user
            )
        workflow_save_version(workflow=workflow, definition=definition, user=user)
        return workflow
    except DefinitionError as exc:
        raise ImportProblem(exc.errors) from None

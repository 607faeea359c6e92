"""The workflow editor's admin endpoints (see static/nudge/admin/workflow_editor.js).

``vocabulary/`` lists what the editor offers in its pickers; ``validate/`` checks a
definition that is still being edited and says which step each error is about.
"""

import json
import re

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from apps.campaigns.models import EmailTemplate, Topic
from apps.segments.models import Segment
from apps.segments.selectors import vocabulary as segment_vocabulary

from ..definition import REENTRY_RULES, validate_definition
from ..steps import STEP_TYPES, StepType
from ..steps.base import describe_duration
from ..triggers import DEFAULT_MAX_AGE, TRIGGER_TYPES, EmailTrigger

# "steps[2] (remind).config.template: ..." and "steps[0].key: ..." name a step by
# its position (the key may be missing or repeated); anything else is workflow-wide.
STEP_ERROR = re.compile(r"^steps\[(\d+)\]")


def editor_urls(model_admin) -> list:
    view = model_admin.admin_site.admin_view

    def allowed(request: HttpRequest) -> None:
        if not (
            model_admin.has_add_permission(request)
            or model_admin.has_change_permission(request)
        ):
            raise PermissionDenied

    @require_GET
    def vocabulary_view(request: HttpRequest) -> JsonResponse:
        allowed(request)
        return JsonResponse(editor_vocabulary())

    @require_POST
    def validate_view(request: HttpRequest) -> JsonResponse:
        allowed(request)
        try:
            definition = json.loads(request.body or b"null")
        except ValueError:
            return JsonResponse(
                {
                    "errors": ["not JSON"],
                    "by_step": {},
                    "general": ["not JSON"],
                    "steps": [],
                },
                status=400,
            )
        return JsonResponse(definition_check(definition))

    return [
        path(
            "vocabulary/",
            view(vocabulary_view),
            name="workflows_workflow_editor_vocabulary",
        ),
        path(
            "validate/",
            view(validate_view),
            name="workflows_workflow_editor_validate",
        ),
    ]


def _has_dynamic_outlets(kind: StepType) -> bool:
    return type(kind).outlet_names is not StepType.outlet_names


def editor_vocabulary() -> dict:
    seen = segment_vocabulary()
    return {
        "step_types": [
            {
                "name": name,
                "label": kind.label,
                # A split's outlets are its variants: the editor works them out.
                "outlets": [] if _has_dynamic_outlets(kind) else list(kind.outlets),
                "dynamic_outlets": _has_dynamic_outlets(kind),
                "waits": kind.waits,
            }
            for name, kind in STEP_TYPES.items()
        ],
        "trigger_types": [
            {"name": name, "label": kind.label, "kind": kind.kind}
            for name, kind in TRIGGER_TYPES.items()
        ],
        "templates": list(
            EmailTemplate.objects.order_by("name").values_list("name", flat=True)
        ),
        "topics": [
            {"slug": slug, "name": name}
            for slug, name in Topic.objects.values_list("slug", "name")
        ],
        "static_lists": [
            {"id": pk, "name": name}
            for pk, name in Segment.objects.filter(kind=Segment.Kind.STATIC)
            .order_by("name")
            .values_list("pk", "name")
        ],
        "segments": seen["segments"],
        "events": seen["events"],
        "attributes": seen["attributes"],
        "builtins": seen["builtins"],
        "email_actions": list(EmailTrigger.ACTIONS),
        "default_max_age": describe_duration(DEFAULT_MAX_AGE),
        "reentry_rules": list(REENTRY_RULES),
    }


def definition_check(definition) -> dict:
    """Errors, split into those about a step (by key) and the rest, plus each step
    described in words and its outlets as the server sees them."""
    try:
        errors = validate_definition(definition)
    except (AttributeError, TypeError, ValueError) as exc:
        # validate_definition expects objects where objects belong; a hand-edited
        # definition may put a string or a list there.
        errors = [f"the definition is malformed ({type(exc).__name__}: {exc})"]
    steps = definition.get("steps") if isinstance(definition, dict) else None
    steps = steps if isinstance(steps, list) else []
    by_step: dict[str, list[str]] = {}
    general: list[str] = []
    for error in errors:
        match = STEP_ERROR.match(error)
        index = int(match.group(1)) if match else None
        if index is not None and index < len(steps):
            step = steps[index]
            key = step.get("key") if isinstance(step, dict) else None
            by_step.setdefault(str(key) if key else f"#{index}", []).append(error)
        else:
            general.append(error)
    return {
        "errors": errors,
        "by_step": by_step,
        "general": general,
        "steps": [_step_summary(step) for step in steps],
    }


def _step_summary(step) -> dict:
    if not isinstance(step, dict):
        return {"key": None, "describe": "", "outlets": []}
    kind = STEP_TYPES.get(step.get("type"))
    config = step.get("config")
    config = config if isinstance(config, dict) else {}
    describe, outlets = "", []
    if kind is not None:
        try:
            describe = kind.describe(config)
            outlets = list(kind.outlet_names(config))
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            # describe() assumes a valid config; a half-built step may not format.
            describe = kind.label
    return {"key": step.get("key"), "describe": describe, "outlets": outlets}

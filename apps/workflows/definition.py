"""A workflow's definition (the JSON that versions store, export and import), and
its validation: every error names the part it is about."""

import re
from typing import Any

from apps.segments.conditions import ConditionError, check, filters_errors

from .steps import STEP_TYPES
from .triggers import TRIGGER_TYPES, max_age_errors

REENTRY_RULES = ("once", "once_per_period", "every_time", "while_not_enrolled")
KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
SETTINGS = (
    "trigger",
    "entry_condition",
    "reentry",
    "goal",
    "exit_condition",
    "frequency_cap",
    "quiet_hours",
)


def _condition_errors(value: Any, where: str) -> list[str]:
    if value in (None, {}):
        return []
    try:
        check(value)
    except ConditionError as exc:
        return [f"{where}: {error}" for error in exc.errors]
    return []


def validate_definition(definition: Any) -> list[str]:
    if not isinstance(definition, dict):
        return ["the definition is a JSON object"]
    errors: list[str] = []
    trigger = definition.get("trigger")
    if not isinstance(trigger, dict) or trigger.get("type") not in TRIGGER_TYPES:
        errors.append(f"trigger.type: one of {', '.join(TRIGGER_TYPES)}")
    else:
        config = {k: v for k, v in trigger.items() if k != "type"}
        try:
            kind = TRIGGER_TYPES[trigger["type"]]
            errors += kind.validate(config, "trigger")
            errors += max_age_errors(kind, config, "trigger")
        except (AttributeError, TypeError, ValueError, KeyError):
            errors.append(f"trigger: malformed for a {trigger['type']} trigger")
    errors += _condition_errors(definition.get("entry_condition"), "entry_condition")
    errors += _condition_errors(definition.get("exit_condition"), "exit_condition")
    errors += _reentry_errors(definition.get("reentry") or {"rule": "every_time"})
    errors += _goal_errors(definition.get("goal"))
    errors += _cap_errors(definition.get("frequency_cap"))
    errors += _quiet_errors(definition.get("quiet_hours"))
    errors += validate_steps(definition.get("steps"))
    errors += _transactional_errors(trigger, definition.get("steps"))
    return errors


def _transactional_errors(trigger: Any, steps: Any) -> list[str]:
    """A transactional send (no marketing consent needed) answers one person's own
    event, such as an order receipt. On a schedule, a segment, a date or a
    hand-picked list it would be marketing without consent."""
    if not isinstance(steps, list) or (
        isinstance(trigger, dict) and trigger.get("type") == "event"
    ):
        return []
    return [
        f"steps[{i}] ({step.get('key')}).config.transactional: only an event-triggered "
        "workflow may send transactional email (an order receipt answers its order)"
        for i, step in enumerate(steps)
        if isinstance(step, dict)
        and step.get("type") == "send_email"
        and isinstance(step.get("config"), dict)
        and step["config"].get("transactional") is True
    ]


def _reentry_errors(reentry: Any) -> list[str]:
    if not isinstance(reentry, dict) or reentry.get("rule") not in REENTRY_RULES:
        return [f"reentry.rule: one of {', '.join(REENTRY_RULES)}"]
    if reentry["rule"] == "once_per_period":
        days = reentry.get("days")
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            return ["reentry.days: how many days before they may enter again"]
    return []


def _goal_errors(goal: Any) -> list[str]:
    if goal in (None, {}):
        return []
    if not isinstance(goal, dict):
        return ["goal: an event or a condition"]
    errors = []
    if goal.get("event"):
        errors += filters_errors(goal.get("where"), "goal.where")
    elif goal.get("condition"):
        errors += _condition_errors(goal["condition"], "goal.condition")
    else:
        errors.append("goal: an event or a condition")
    days = goal.get("within_days")
    if days is not None and (
        not isinstance(days, int) or isinstance(days, bool) or days < 1
    ):
        errors.append("goal.within_days: the conversion window in days")
    return errors


def _cap_errors(cap: Any) -> list[str]:
    if cap in (None, {}):
        return []
    if not isinstance(cap, dict):
        return ["frequency_cap: {'max': 3, 'hours': 24}"]
    errors = []
    for key in ("max", "hours"):
        value = cap.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(f"frequency_cap.{key}: a whole number, 1 or more")
    return errors


def _quiet_errors(quiet: Any) -> list[str]:
    if quiet in (None, {}):
        return []
    if not isinstance(quiet, dict):
        return ["quiet_hours: {'start': '21:00', 'end': '08:00', 'mode': 'defer'}"]
    errors = []
    for key in ("start", "end"):
        if not isinstance(quiet.get(key), str) or not TIME.match(quiet[key]):
            errors.append(f"quiet_hours.{key}: a time like 21:00")
    if quiet.get("mode", "defer") not in ("defer", "skip"):
        errors.append("quiet_hours.mode: defer or skip")
    return errors


def validate_steps(steps: Any) -> list[str]:
    if not isinstance(steps, list) or not steps:
        return ["steps: at least one step"]
    errors: list[str] = []
    keys: dict[str, int] = {}
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if not isinstance(step, dict):
            errors.append(f"{where}: a step is an object")
            continue
        key = step.get("key")
        if not isinstance(key, str) or not KEY.match(key):
            errors.append(f"{where}.key: lowercase letters, digits, - and _")
        elif key in keys:
            errors.append(f"{where}.key: {key!r} is used twice")
        else:
            keys[key] = i
        kind = STEP_TYPES.get(step.get("type"))
        if kind is None:
            errors.append(f"{where}.type: one of {', '.join(STEP_TYPES)}")
            continue
        config, outlets = step.get("config") or {}, step.get("next") or {}
        if not isinstance(config, dict):
            errors.append(f"{where} ({key}).config: an object")
            continue
        if not isinstance(outlets, dict):
            errors.append(f"{where} ({key}).next: an object of outlet -> step key")
            continue
        try:
            errors += kind.validate(config, f"{where} ({key}).config")
            allowed = kind.outlet_names(config)
        except (AttributeError, TypeError, ValueError, KeyError):
            # A config of the wrong shape (a list where an object belongs, ...).
            errors.append(
                f"{where} ({key}).config: malformed for a {step['type']} step"
            )
            continue
        known = {s.get("key") for s in steps if isinstance(s, dict)}
        for outlet, target in outlets.items():
            if outlet not in allowed:
                errors.append(
                    f"{where} ({key}).next.{outlet}: this step has no outlet {outlet!r}"
                )
            elif target and (not isinstance(target, str) or target not in known):
                errors.append(
                    f"{where} ({key}).next.{outlet}: no step {target!r} (a dangling outlet)"
                )
    if errors:
        return errors
    return _graph_errors(steps, keys)


def _graph_errors(steps: list[dict], keys: dict[str, int]) -> list[str]:
    edges = {s["key"]: [t for t in (s.get("next") or {}).values() if t] for s in steps}
    reachable, todo = set(), [steps[0]["key"]]
    while todo:
        key = todo.pop()
        if key not in reachable:
            reachable.add(key)
            todo.extend(edges[key])
    errors = [
        f"steps[{keys[s['key']]}] ({s['key']}): unreachable: no step leads here"
        for s in steps
        if s["key"] not in reachable
    ]
    waits = {s["key"] for s in steps if STEP_TYPES[s["type"]].waits}
    # A cycle with no wait would run forever in one go: find one through non-waits only.
    graph = {
        k: [t for t in v if t not in waits] for k, v in edges.items() if k not in waits
    }
    state: dict[str, int] = {}

    def visit(key: str, path: list[str]) -> list[str] | None:
        state[key] = 1
        for target in graph.get(key, []):
            if state.get(target) == 1:
                return (
                    [*path[path.index(target) :], target]
                    if target in path
                    else [key, target]
                )
            if target not in state:
                found = visit(target, [*path, target])
                if found:
                    return found
        state[key] = 2
        return None

    for key in graph:
        if key not in state:
            cycle = visit(key, [key])
            if cycle:
                errors.append(
                    f"steps[{keys[cycle[0]]}] ({cycle[0]}): a loop without a wait: "
                    + " -> ".join(cycle)
                )
                break
    return errors


def settings_of(definition: dict) -> dict:
    return {key: definition.get(key) for key in SETTINGS}

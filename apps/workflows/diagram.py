"""The workflow as a diagram: server-rendered SVG, with counts per step once it runs."""

from collections import deque
from html import escape

from django.db.models import Count

from .models import Enrollment, StepRun, Workflow
from .steps import STEP_TYPES
from .triggers import trigger_of

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 230, 64, 40, 56, 20


def step_counts(workflow: Workflow) -> dict[str, dict[str, int]]:
    """Per step key: how many contacts are at it now, and how many passed it."""
    at = dict(
        Enrollment.objects.filter(
            workflow=workflow, status__in=Enrollment.RUNNING, is_test=False
        )
        .values_list("current_step__key")
        .annotate(n=Count("pk"))
        .values_list("current_step__key", "n")
    )
    passed = dict(
        StepRun.objects.filter(enrollment__workflow=workflow, enrollment__is_test=False)
        .values("step_key")
        .annotate(n=Count("enrollment", distinct=True))
        .values_list("step_key", "n")
    )
    keys = set(at) | set(passed)
    return {k: {"at": at.get(k, 0), "passed": passed.get(k, 0)} for k in keys if k}


def _levels(steps: list[dict]) -> dict[str, int]:
    edges = {s["key"]: [t for t in (s.get("next") or {}).values() if t] for s in steps}
    level = {steps[0]["key"]: 0}
    queue = deque([steps[0]["key"]])
    while queue:
        key = queue.popleft()
        for target in edges.get(key, []):
            if target not in level:
                level[target] = level[key] + 1
                queue.append(target)
    deepest = max(level.values(), default=0)
    for step in steps:  # unreachable steps go at the bottom
        level.setdefault(step["key"], deepest + 1)
    return level


def render_svg(
    definition: dict, counts: dict[str, dict[str, int]] | None = None
) -> str:
    steps = definition.get("steps") or []
    if not steps:
        return "<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'></svg>"
    counts = counts or {}
    pos, width, height = _layout(steps)
    by_key = {s["key"]: s for s in steps}
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='nudge-diagram' width='{width:.0f}' "
        f"height='{height:.0f}' viewBox='0 0 {width:.0f} {height:.0f}' font-family='sans-serif' font-size='12'>",
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#666'/></marker></defs>",
    ]
    kind, config = trigger_of(definition)
    tx = width / 2 - BOX_W / 2
    parts.append(_box(tx, PAD, "trigger", kind.describe(config), "", "#e8f0fe"))
    first = steps[0]["key"]
    parts.append(
        _edge(width / 2, PAD + BOX_H, pos[first][0] + BOX_W / 2, pos[first][1], "")
    )
    for key, (x, y) in pos.items():
        parts.append(_step_box(by_key[key], key, x, y, counts.get(key)))
        parts.extend(_outlets(by_key[key], x, y, pos))
    parts.append("</svg>")
    return "".join(parts)


def _layout(
    steps: list[dict],
) -> tuple[dict[str, tuple[float, float]], float, float]:
    """Each step's top-left corner (one row per level, rows centred), and the
    drawing's width and height. The top row is left for the trigger."""
    levels = _levels(steps)
    rows: dict[int, list[str]] = {}
    for step in steps:
        rows.setdefault(levels[step["key"]], []).append(step["key"])
    width = max(len(r) for r in rows.values()) * (BOX_W + GAP_X) + PAD * 2
    pos = {}
    for level, keys in rows.items():
        row_w = len(keys) * (BOX_W + GAP_X) - GAP_X
        x0 = (width - row_w) / 2
        for i, key in enumerate(keys):
            pos[key] = (x0 + i * (BOX_W + GAP_X), PAD + (level + 1) * (BOX_H + GAP_Y))
    height = PAD * 2 + (max(rows) + 2) * (BOX_H + GAP_Y)
    return pos, width, height


def _step_box(step: dict, key: str, x, y, count: dict[str, int] | None) -> str:
    kind_of = STEP_TYPES.get(step.get("type"))
    text = (
        kind_of.describe(step.get("config") or {}) if kind_of else step.get("type", "?")
    )
    line = f"{count['passed']} passed · {count['at']} here now" if count else ""
    colour = "#fff4e5" if kind_of and kind_of.waits else "#ffffff"
    return _box(x, y, key, text, line, colour)


def _outlets(step: dict, x, y, pos: dict[str, tuple[float, float]]) -> list[str]:
    """The step's outgoing arrows: down to a lower step, around the right side back
    up to an earlier one, or to an end dot where an outlet goes nowhere."""
    parts = []
    outlets = list((step.get("next") or {}).items())
    for i, (outlet, target) in enumerate(outlets):
        # Each outlet leaves from its own point along the bottom edge.
        sx = x + (i + 1) * BOX_W / (len(outlets) + 1)
        label = "" if outlet == "next" else outlet
        if target and target in pos:
            tx2, ty2 = pos[target]
            if ty2 > y:
                parts.append(_edge(sx, y + BOX_H, tx2 + BOX_W / 2, ty2, label))
            else:  # a loop back up: around the right side
                parts.append(
                    _loop(x + BOX_W, y + BOX_H / 2, tx2 + BOX_W, ty2 + BOX_H / 2, label)
                )
        elif not target:
            parts.append(_end(sx, y + BOX_H, label))
    return parts


def _box(x, y, title, text, counts, fill) -> str:
    return (
        f"<g><rect x='{x:.0f}' y='{y:.0f}' width='{BOX_W}' height='{BOX_H}' rx='8' fill='{fill}' stroke='#888'/>"
        f"<text x='{x + 10:.0f}' y='{y + 18:.0f}' font-weight='bold'>{escape(title[:32])}</text>"
        f"<text x='{x + 10:.0f}' y='{y + 36:.0f}'>{escape(text[:36])}</text>"
        f"<text x='{x + 10:.0f}' y='{y + 54:.0f}' fill='#2f6fde'>{escape(counts)}</text>"
        f"<title>{escape(text)}</title></g>"
    )


def _edge(x1, y1, x2, y2, label) -> str:
    text = (
        f"<text x='{(x1 + x2) / 2 + 4:.0f}' y='{(y1 + y2) / 2:.0f}' fill='#555'>{escape(label)}</text>"
        if label
        else ""
    )
    return f"<line x1='{x1:.0f}' y1='{y1:.0f}' x2='{x2:.0f}' y2='{y2 - 2:.0f}' stroke='#666' marker-end='url(#arrow)'/>{text}"


def _loop(x1, y1, x2, y2, label) -> str:
    out = max(x1, x2) + 30
    return (
        f"<path d='M{x1:.0f},{y1:.0f} C{out:.0f},{y1:.0f} {out:.0f},{y2:.0f} {x2 + 2:.0f},{y2:.0f}' fill='none' "
        f"stroke='#666' stroke-dasharray='4 3' marker-end='url(#arrow)'/>"
        f"<text x='{out - 10:.0f}' y='{(y1 + y2) / 2:.0f}' fill='#555'>{escape(label)}</text>"
    )


def _end(x, y, label) -> str:
    text = (
        f"<text x='{x + 6:.0f}' y='{y + 18:.0f}' fill='#555'>{escape(label)}</text>"
        if label
        else ""
    )
    return (
        f"<line x1='{x:.0f}' y1='{y:.0f}' x2='{x:.0f}' y2='{y + 26:.0f}' stroke='#aaa'/>"
        f"<circle cx='{x:.0f}' cy='{y + 30:.0f}' r='4' fill='#aaa'/>{text}"
    )

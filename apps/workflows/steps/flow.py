"""Flow: branch on a condition, random / A-B split, goal, exit."""

import hashlib

from apps.segments.conditions import (
    ConditionError,
    check,
    checked,
    describe,
    evaluate_facts,
    load_facts,
)

from .base import Outcome, StepContext, StepType, register_step


class Branch(StepType):
    name = "branch"
    writes = False
    label = "Branch on a condition"
    outlets = ("yes", "no")

    def validate(self, config, where):
        try:
            check(config.get("condition"))
        except ConditionError as exc:
            return [f"{where}.condition: {error}" for error in exc.errors]
        return []

    def run(self, ctx: StepContext) -> Outcome:
        # evaluate(), keeping the references for the values the decision rested on.
        condition, refs = checked(ctx.step.config["condition"])
        facts = load_facts(ctx.contact, refs, now=ctx.now)
        result = evaluate_facts(
            condition, facts, now=ctx.now, since=ctx.enrollment.entered_at
        )
        # The values the decision rested on, for "why did they go this way?"
        attributes = ctx.contact.attributes or {}
        values = {
            name: attributes.get(name) for name in refs.attributes if name in attributes
        }
        if "score" in refs.attributes:
            values["score"] = ctx.contact.score
        sentence = describe(condition)
        return Outcome(
            "yes" if result else "no",
            outlet="yes" if result else "no",
            reason=f"{sentence}: {'true' if result else 'false'}",
            detail={"condition": sentence, "result": result, "values": values},
        )

    def describe(self, config):
        return f"If {describe(config.get('condition'))}"


def bucket(enrollment_id: int, step_id: int) -> float:
    """A stable number in [0, 1) per enrollment and step: a retry draws the same."""
    digest = hashlib.sha256(f"{enrollment_id}:{step_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(weighted: list[tuple[str, float]], u: float) -> str:
    total = sum(w for _, w in weighted)
    edge = 0.0
    for name, weight in weighted:
        edge += weight / total
        if u < edge:
            return name
    return weighted[-1][0]


class Split(StepType):
    """Random split by weights, with an optional holdout (a percentage)."""

    name = "split"
    writes = False
    label = "Random / A-B split"

    def outlet_names(self, config):
        names = tuple(
            v.get("name") for v in config.get("variants") or [] if isinstance(v, dict)
        )
        return names + (("holdout",) if config.get("holdout") else ())

    def validate(self, config, where):
        variants = config.get("variants")
        if not isinstance(variants, list) or len(variants) < 2:
            return [
                f"{where}.variants: at least two, e.g. [{{'name': 'A', 'weight': 50}}, ...]"
            ]
        errors, names = [], set()
        for i, variant in enumerate(variants):
            name, weight = (variant or {}).get("name"), (variant or {}).get("weight")
            if (
                not isinstance(name, str)
                or not name
                or name in names
                or name == "holdout"
            ):
                errors.append(f"{where}.variants[{i}].name: a unique name")
            if (
                not isinstance(weight, int | float)
                or isinstance(weight, bool)
                or weight <= 0
            ):
                errors.append(f"{where}.variants[{i}].weight: a positive number")
            names.add(name)
        holdout = config.get("holdout", 0)
        if not isinstance(holdout, int | float) or not 0 <= holdout < 100:
            errors.append(f"{where}.holdout: a percentage from 0 to 99")
        return errors

    def run(self, ctx: StepContext) -> Outcome:
        config = ctx.step.config
        u = bucket(ctx.enrollment.pk, ctx.step.pk)
        holdout = config.get("holdout", 0) / 100
        if u < holdout:
            return Outcome(
                "holdout", outlet="holdout", reason="held out (control group)"
            )
        rescaled = (u - holdout) / (1 - holdout)
        name = pick([(v["name"], v["weight"]) for v in config["variants"]], rescaled)
        return Outcome(
            name, outlet=name, reason=f"variant {name}", detail={"variant": name}
        )

    def describe(self, config):
        parts = [
            f"{v.get('name')} {v.get('weight')}" for v in config.get("variants") or []
        ]
        holdout = f", holdout {config['holdout']}%" if config.get("holdout") else ""
        return f"Split: {' / '.join(parts)}{holdout}"


class Goal(StepType):
    name = "goal"
    writes = False
    label = "Goal reached"
    outlets = ()

    def validate(self, config, where):
        return []

    def run(self, ctx: StepContext) -> Outcome:
        return Outcome(
            "converted", outlet=None, finish="converted", reason="reached the goal step"
        )

    def describe(self, config):
        return "Goal reached"


class Exit(StepType):
    name = "exit"
    writes = False
    label = "Exit"
    outlets = ()

    def validate(self, config, where):
        return []

    def run(self, ctx: StepContext) -> Outcome:
        reason = ctx.step.config.get("reason") or "exit step"
        return Outcome("exited", outlet=None, finish="exited", reason=reason)

    def describe(self, config):
        return f"Exit ({config['reason']})" if config.get("reason") else "Exit"


register_step(Branch())
register_step(Split())
register_step(Goal())
register_step(Exit())

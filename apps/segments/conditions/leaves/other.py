"""Segment membership, email engagement, score and consent leaves."""

from ..base import (
    Env,
    Facts,
    Leaf,
    Refs,
    describe_window,
    join,
)
from ..sql import (
    Dialect,
    Fragment,
    column_compare,
)
from ..values import (
    ORDER_OPS,
    Today,
    compare,
    is_number,
)
from .common import MEMBERSHIPS, describe_comparison
from .events import DEFAULT_COUNT, EVENTS_LEAF

# -- segment, email engagement, score, consent ----------------------------------------


def _is_segment_id(value) -> bool:
    # Segment ids are PostgreSQL bigints.
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


class SegmentLeaf(Leaf):
    """{"segment": 12}: a member of that segment now."""

    key = "segment"

    def validate(self, node: dict, where: str) -> list[str]:
        if not _is_segment_id(node.get("segment")):
            return [f"{where}.segment: a segment id is required"]
        return []

    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        return (
            f"EXISTS (SELECT 1 FROM {MEMBERSHIPS} m "
            f'WHERE m.contact_id = {contact}."id" '
            "AND m.segment_id = %s AND m.exited_at IS NULL)",
            [node["segment"]],
        )

    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        return node["segment"] in facts.segment_ids

    def describe(self, node: dict) -> str:
        from apps.segments.models import Segment

        value = node.get("segment")
        # Described even when invalid (the preview says what it could not check):
        # only an id is looked up.
        segment = (
            Segment.objects.filter(pk=value).first() if _is_segment_id(value) else None
        )
        return f"is in the segment “{segment.name if segment else value}”"

    def collect(self, node: dict, refs: Refs) -> None:
        refs.segment_ids.add(node["segment"])


EMAIL_ACTIONS = [
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "unsubscribed",
]


class EmailLeaf(Leaf):
    """{"email": "opened", "template": "Cart reminder", "window": ..., "count": ...}:
    email engagement, read from the email_* events (test sends excluded)."""

    key = "email"

    def as_event(self, node: dict) -> dict:
        name = f"email_{node.get('email')}"
        filters = [{"property": "is_test", "op": "ne", "value": True}]
        if node.get("template"):
            filters.append(
                {"property": "template", "op": "eq", "value": node["template"]}
            )
        event = {
            "event": name,
            "where": filters,
            "count": node.get("count", DEFAULT_COUNT),
        }
        if node.get("window"):
            event["window"] = node["window"]
        return event

    def validate(self, node: dict, where: str) -> list[str]:
        if node.get("email") not in EMAIL_ACTIONS:
            return [f"{where}.email: one of {', '.join(EMAIL_ACTIONS)}"]
        if node.get("template") is not None and not isinstance(
            node.get("template"), str
        ):
            return [f"{where}.template: a template name"]
        return EVENTS_LEAF.validate(self.as_event(node), where)

    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        return EVENTS_LEAF.sql(self.as_event(node), d, contact)

    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        return EVENTS_LEAF.matches(self.as_event(node), facts, env)

    def describe(self, node: dict) -> str:
        what = f"“{node['template']}”" if node.get("template") else "an email"
        rule = node.get("count", DEFAULT_COUNT)
        window = describe_window(node.get("window"))
        if (rule["op"], rule["value"]) in {("eq", 0), ("lt", 1), ("lte", 0)}:
            return f"was not {node.get('email')} {what}{window}".replace(
                "was not opened", "did not open"
            ).replace("was not clicked", "did not click")
        return f"{node.get('email')} {what}{window}"

    def collect(self, node: dict, refs: Refs) -> None:
        EVENTS_LEAF.collect(self.as_event(node), refs)


class ScoreLeaf(Leaf):
    """{"score": {"op": "gte", "value": 50}}."""

    key = "score"

    def validate(self, node: dict, where: str) -> list[str]:
        rule = node.get("score")
        if not isinstance(rule, dict) or rule.get("op") not in {"eq", "ne", *ORDER_OPS}:
            return [f"{where}.score: {{'op': 'gte', 'value': 50}}"]
        if not is_number(rule.get("value")):
            return [f"{where}.score.value: a number"]
        return []

    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        rule = node["score"]
        return column_compare(
            d, f'{contact}."score"', "number", rule["op"], rule["value"]
        )

    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        rule = node["score"]
        return compare(
            facts.contact.score, rule["op"], rule["value"], today=Today(env.now)
        )

    def describe(self, node: dict) -> str:
        rule = node.get("score", {})
        return describe_comparison("score", rule.get("op"), rule.get("value"))

    def collect(self, node: dict, refs: Refs) -> None:
        refs.attributes.add("score")


class ConsentLeaf(Leaf):
    """{"consent": "subscribed"} or {"consent": ["subscribed", "pending"]}."""

    key = "consent"

    def _values(self, node: dict) -> list:
        value = node.get("consent")
        return value if isinstance(value, list) else [value]

    def validate(self, node: dict, where: str) -> list[str]:
        from apps.contacts.models import ConsentStatus

        bad = [v for v in self._values(node) if v not in ConsentStatus.values]
        if bad or not self._values(node):
            return [
                f"{where}.consent: one or more of {', '.join(ConsentStatus.values)}"
            ]
        return []

    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        return column_compare(
            d, f'{contact}."email_consent"', "text", "in", self._values(node)
        )

    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        return facts.contact.email_consent in self._values(node)

    def describe(self, node: dict) -> str:
        return "email consent is " + join(self._values(node), "or")

    def collect(self, node: dict, refs: Refs) -> None:
        refs.attributes.add("email_consent")

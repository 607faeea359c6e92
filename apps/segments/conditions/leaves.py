"""The built-in leaf types. Each answers the same question twice: in SQL over all
contacts, and in Python for one; tests/test_conditions_agree.py holds them to it."""

import datetime as dt
from typing import Any

from .base import (
    Env,
    EventFact,
    Facts,
    Leaf,
    Refs,
    describe_window,
    humanize,
    join,
    register_leaf,
    validate_window,
    window_delta,
    window_start,
)
from .sql import (
    Dialect,
    Fragment,
    JsonRef,
    column_compare,
    datetime_matches,
    json_compare,
)
from .values import (
    DATE_OPS,
    MISSING,
    ORDER_OPS,
    RELATIVE_DATE_OPS,
    TEXT_OPS,
    Today,
    compare,
    dig,
    is_number,
    validate_comparison,
    validate_path,
)

EVENTS = "events_event"
MEMBERSHIPS = "segments_segmentmembership"

OP_WORDS = {
    "eq": "is",
    "ne": "is not",
    "gt": "is more than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
    "contains": "contains",
    "starts_with": "starts with",
    "in": "is one of",
    "exists": "is set",
    "not_exists": "is not set",
    "before": "is before",
    "after": "is after",
    "within_past": "is within the last",
    "more_than_past": "is more than",
    "within_future": "is within the next",
    "more_than_future": "is more than",
    "anniversary": "has its anniversary",
}


def describe_comparison(subject: str, op: str, value: Any) -> str:
    words = OP_WORDS.get(op, op)
    if op in {"exists", "not_exists"}:
        return f"{subject} {words}"
    if op == "in":
        return f"{subject} {words} " + join((_show(v) for v in value), "or")
    if op == "within_past":
        return f"{subject} {words} {value} days"
    if op == "more_than_past":
        return f"{subject} {words} {value} days ago"
    if op == "within_future":
        return f"{subject} {words} {value} days"
    if op == "more_than_future":
        return f"{subject} {words} {value} days from now"
    if op == "anniversary":
        return f"{subject} {words} " + (f"in {value} days" if value else "today")
    return f"{subject} {words} {_show(value)}"


def _show(value: Any) -> str:
    if value is None or value == "":
        return "…"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"“{value}”"
    return str(value)


def _where_errors(filters: Any, where: str) -> list[str]:
    if filters in (None, []):
        return []
    if not isinstance(filters, list):
        return [f"{where}: property filters are a list"]
    errors = []
    for i, item in enumerate(filters):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{here}: a filter is {{'property', 'op', 'value'}}")
            continue
        errors += validate_path(item.get("property"), f"{here}.property")
        errors += validate_comparison(item.get("op"), item.get("value"), here)
    return errors


def _where_sql(d: Dialect, alias: str, filters: list | None) -> Fragment:
    parts, params = [], []
    for item in filters or []:
        ref = JsonRef(f"{alias}.properties", (), tuple(item["property"].split(".")))
        sql, p = json_compare(d, ref, item["op"], item.get("value"))
        parts.append(sql)
        params += p
    return (" AND ".join(parts) or "(1=1)"), params


def _where_matches(event: EventFact, filters: list | None, today: Today) -> bool:
    return all(
        compare(
            dig(event.properties, item["property"].split(".")),
            item["op"],
            item.get("value"),
            today=today,
        )
        for item in filters or []
    )


def _describe_where(filters: list | None) -> str:
    if not filters:
        return ""
    return " where " + join(
        (describe_comparison(f["property"], f["op"], f.get("value")) for f in filters),
        "and",
    )


def _ts(d: Dialect, value: dt.datetime) -> Any:
    return d.ts(value)


# -- attribute ------------------------------------------------------------------------

BUILTIN = {
    "email": ("email", "text"),
    "first_name": ("first_name", "text"),
    "last_name": ("last_name", "text"),
    "phone": ("phone", "text"),
    "timezone": ("timezone", "text"),
    "locale": ("locale", "text"),
    "user_id": ("external_id", "text"),
    "email_consent": ("email_consent", "text"),
    "score": ("score", "number"),
    "created_at": ("created_at", "datetime"),
    "first_seen_at": ("first_seen_at", "datetime"),
    "last_seen_at": ("last_seen_at", "datetime"),
}
KIND_OPS = {
    "text": {"eq", "ne", "in", "exists", "not_exists", *ORDER_OPS, *TEXT_OPS},
    "number": {"eq", "ne", "in", "exists", "not_exists", *ORDER_OPS},
    "datetime": {"exists", "not_exists", *DATE_OPS},
}


def attribute_path(name: str) -> list[str]:
    return name.removeprefix("attributes.").split(".")


class AttributeLeaf(Leaf):
    """{"attribute": "plan", "op": "eq", "value": "pro"}: a field or a trait."""

    key = "attribute"

    def validate(self, node: dict, where: str) -> list[str]:
        name, op, value = node.get("attribute"), node.get("op"), node.get("value")
        if name in BUILTIN:
            _column, kind = BUILTIN[name]
            if op not in KIND_OPS[kind]:
                return [f"{where}.op: {op!r} does not apply to {name} ({kind})"]
            errors = validate_comparison(op, value, where)
            wants_number = kind == "number" and op not in {"exists", "not_exists"}
            values = value if isinstance(value, list) else [value]
            if wants_number and not all(is_number(v) for v in values):
                errors.append(f"{where}.value: {name} is a number")
            wants_text = kind == "text" and op not in {"exists", "not_exists"}
            if wants_text and not all(isinstance(v, str) for v in values):
                errors.append(f"{where}.value: {name} is text")
            return errors
        errors = validate_path(
            name.removeprefix("attributes.") if isinstance(name, str) else name,
            f"{where}.attribute",
        )
        return errors + validate_comparison(op, value, where)

    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        name, op, value = node["attribute"], node["op"], node.get("value")
        if name in BUILTIN:
            column, kind = BUILTIN[name]
            return column_compare(d, f'{contact}."{column}"', kind, op, value)
        ref = JsonRef(f'{contact}."attributes"', (), tuple(attribute_path(name)))
        return json_compare(d, ref, op, value, tz_sql=f'{contact}."timezone"')

    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        name, op, value = node["attribute"], node["op"], node.get("value")
        contact = facts.contact
        if name in BUILTIN:
            column, kind = BUILTIN[name]
            actual = getattr(contact, column)
            if kind == "datetime":
                return datetime_matches(actual, op, value, env.now)
            if kind == "text":
                actual = actual if actual else MISSING
            return compare(actual, op, value, today=Today(env.now))
        actual = dig(contact.attributes or {}, attribute_path(name))
        return compare(
            actual, op, value, today=Today(env.now), timezone=contact.timezone or None
        )

    def describe(self, node: dict) -> str:
        name = node.get("attribute", "")
        subject = humanize(name.removeprefix("attributes.").replace(".", " "))
        return describe_comparison(subject, node.get("op"), node.get("value"))

    def collect(self, node: dict, refs: Refs) -> None:
        refs.attributes.add(node["attribute"].removeprefix("attributes.").split(".")[0])
        if node.get("op") in RELATIVE_DATE_OPS | {"anniversary"}:
            refs.time_based = True


# -- event count ----------------------------------------------------------------------

COUNT_WORDS = {
    "gte": "at least",
    "gt": "more than",
    "lte": "at most",
    "lt": "fewer than",
    "eq": "exactly",
    "ne": "not exactly",
}
DEFAULT_COUNT = {"op": "gte", "value": 1}


def _count_ok(count: int, rule: dict) -> bool:
    value = rule["value"]
    return {
        "gte": count >= value,
        "gt": count > value,
        "lte": count <= value,
        "lt": count < value,
        "eq": count == value,
        "ne": count != value,
    }[rule["op"]]


class EventLeaf(Leaf):
    """{"event": "product_viewed", "where": [...], "window": {...}, "count": {...}}."""

    key = "event"

    def validate(self, node: dict, where: str) -> list[str]:
        errors = []
        name = node.get("event")
        if not isinstance(name, str) or not name or len(name) > 200:
            errors.append(f"{where}.event: an event name is required")
        errors += _where_errors(node.get("where"), f"{where}.where")
        errors += validate_window(node.get("window"), f"{where}.window")
        count = node.get("count", DEFAULT_COUNT)
        if not isinstance(count, dict) or count.get("op") not in COUNT_WORDS:
            errors.append(
                f"{where}.count: unknown operator "
                f"{count.get('op') if isinstance(count, dict) else count!r}"
            )
        elif (
            not isinstance(count.get("value"), int)
            or isinstance(count.get("value"), bool)
            or count["value"] < 0
        ):
            errors.append(f"{where}.count.value: a whole number, 0 or more")
        return errors

    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        rule = node.get("count", DEFAULT_COUNT)
        op, k = rule["op"], rule["value"]
        # Contacts with at least / more than / exactly k matching events: one grouped
        # scan of the (name, timestamp) index, not a count per contact.
        having = {"gte": ">=", "gt": ">", "eq": "=", "lte": ">", "lt": ">=", "ne": "="}[
            op
        ]
        if (op == "gte" and k == 0) or (op == "lt" and k == 0):
            return ("(1=1)", []) if op == "gte" else ("(1=0)", [])
        if op == "eq" and k == 0:
            op, having, k = "lt", ">=", 1
        if op == "ne" and k == 0:
            op, having, k = "gte", ">=", 1
        conditions = ["e.name = %s"]
        params: list[Any] = [node["event"]]
        start = window_start(node.get("window"), d.now, d.since)
        if start is not None:
            conditions.append("e.timestamp >= %s")
            params.append(_ts(d, start))
        where_sql, where_params = _where_sql(d, "e", node.get("where"))
        conditions.append(where_sql)
        params += where_params
        subquery = (
            f"SELECT e.contact_id FROM {EVENTS} e WHERE {' AND '.join(conditions)} "
            f"GROUP BY e.contact_id HAVING COUNT(*) {having} %s"
        )
        params.append(k)
        negate = op in {"lte", "lt", "ne"}
        return f'({contact}."id" {"NOT IN" if negate else "IN"} ({subquery}))', params

    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        start = window_start(node.get("window"), env.now, env.since)
        today = Today(env.now)
        count = sum(
            1
            for e in facts.events_named(node["event"])
            if (start is None or e.timestamp >= start)
            and _where_matches(e, node.get("where"), today)
        )
        return _count_ok(count, node.get("count", DEFAULT_COUNT))

    def describe(self, node: dict) -> str:
        rule = node.get("count", DEFAULT_COUNT)
        what = humanize(node.get("event", "")) + _describe_where(node.get("where"))
        window = describe_window(node.get("window"))
        if (rule["op"], rule["value"]) in {("eq", 0), ("lt", 1), ("lte", 0)}:
            return f"did not {what}{window}"
        if (rule["op"], rule["value"]) in {("gte", 1), ("gt", 0)}:
            return f"{what}{window}"
        times = "time" if rule["value"] == 1 else "times"
        return f"{what} {COUNT_WORDS[rule['op']]} {rule['value']} {times}{window}"

    def collect(self, node: dict, refs: Refs) -> None:
        _collect_event(refs, node["event"], node.get("window"))


def _collect_event(refs: Refs, name: str, window: dict | None) -> None:
    refs.event_names.add(name)
    needed = window_delta(window) if window and "last" in window else None
    if window:
        refs.time_based = True
    if name in refs.events_since and refs.events_since[name] is None:
        return
    previous = refs.events_since.get(name, dt.timedelta(0))
    refs.events_since[name] = None if needed is None else max(previous, needed)


# -- sequence -------------------------------------------------------------------------

MAX_STEPS = 5


class SequenceLeaf(Leaf):
    """{"sequence": [{"event": A, "where": [...]}, {"event": B}], "within": {...},
    "window": {...}, "not_followed_by": {"event": C, "where": [...], "within": {...}}}.

    Some A, then a later B (then a later ...), the last within ``within`` of the first,
    the first inside ``window``; and no C after the last one (within its ``within``).
    """

    key = "sequence"

    def validate(self, node: dict, where: str) -> list[str]:
        steps = node.get("sequence")
        if not isinstance(steps, list) or not 2 <= len(steps) <= MAX_STEPS:
            return [f"{where}.sequence: 2 to {MAX_STEPS} steps"]
        errors = []
        for i, step in enumerate(steps):
            here = f"{where}.sequence[{i}]"
            if (
                not isinstance(step, dict)
                or not isinstance(step.get("event"), str)
                or not step.get("event")
            ):
                errors.append(f"{here}.event: an event name is required")
                continue
            errors += _where_errors(step.get("where"), f"{here}.where")
        for key in ("within", "window"):
            window = node.get(key)
            if (
                window is not None and window.get("since")
                if isinstance(window, dict)
                else False
            ):
                errors.append(f"{where}.{key}: use a length of time here")
            errors += validate_window(window, f"{where}.{key}")
        after = node.get("not_followed_by")
        if after is not None:
            if (
                not isinstance(after, dict)
                or not isinstance(after.get("event"), str)
                or not after.get("event")
            ):
                errors.append(
                    f"{where}.not_followed_by.event: an event name is required"
                )
            else:
                errors += _where_errors(
                    after.get("where"), f"{where}.not_followed_by.where"
                )
                errors += validate_window(
                    after.get("within"), f"{where}.not_followed_by.within"
                )
        return errors

    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        steps = node["sequence"]
        within = node.get("within")
        start = window_start(node.get("window"), d.now, d.since)
        params: list[Any] = []

        def step_sql(i: int) -> str:
            alias, previous = f"s{i}", f"s{i - 1}"
            where_sql, where_params = _where_sql(d, alias, steps[i].get("where"))
            parts = [f"{alias}.name = %s"]
            params.append(steps[i]["event"])
            if i == 0:
                parts.insert(0, f'{alias}.contact_id = {contact}."id"')
                if start is not None:
                    parts.append(f"{alias}.timestamp >= %s")
                    params.append(_ts(d, start))
            else:
                parts.insert(0, f"{alias}.contact_id = {previous}.contact_id")
                parts.append(f"{alias}.timestamp > {previous}.timestamp")
                if within:
                    plus, plus_params = d.plus("s0.timestamp", window_delta(within))
                    parts.append(f"{alias}.timestamp <= {plus}")
                    params.extend(plus_params)
            parts.append(where_sql)
            params.extend(where_params)
            inner = step_sql(i + 1) if i + 1 < len(steps) else tail_sql(alias)
            if inner:
                parts.append(inner)
            return (
                f"EXISTS (SELECT 1 FROM {EVENTS} {alias} WHERE {' AND '.join(parts)})"
            )

        def tail_sql(last: str) -> str:
            after = node.get("not_followed_by")
            if not after:
                return ""
            where_sql, where_params = _where_sql(d, "x", after.get("where"))
            parts = [
                f"x.contact_id = {last}.contact_id",
                "x.name = %s",
                f"x.timestamp > {last}.timestamp",
            ]
            params.append(after["event"])
            if after.get("within"):
                plus, plus_params = d.plus(
                    f"{last}.timestamp", window_delta(after["within"])
                )
                parts.append(f"x.timestamp <= {plus}")
                params.extend(plus_params)
            parts.append(where_sql)
            params.extend(where_params)
            return f"NOT EXISTS (SELECT 1 FROM {EVENTS} x WHERE {' AND '.join(parts)})"

        return f"({step_sql(0)})", params

    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        steps = node["sequence"]
        today = Today(env.now)
        start = window_start(node.get("window"), env.now, env.since)
        within = window_delta(node["within"]) if node.get("within") else None
        after = node.get("not_followed_by")
        after_within = (
            window_delta(after["within"]) if after and after.get("within") else None
        )
        candidates = [
            [
                e
                for e in facts.events_named(s["event"])
                if _where_matches(e, s.get("where"), today)
            ]
            for s in steps
        ]
        blockers = (
            [
                e
                for e in facts.events_named(after["event"])
                if _where_matches(e, after.get("where"), today)
            ]
            if after
            else []
        )

        def chain(i: int, first: EventFact, previous: EventFact) -> bool:
            if i == len(steps):
                return not any(
                    x.timestamp > previous.timestamp
                    and (
                        after_within is None
                        or x.timestamp <= previous.timestamp + after_within
                    )
                    for x in blockers
                )
            return any(
                e.timestamp > previous.timestamp
                and (within is None or e.timestamp <= first.timestamp + within)
                and chain(i + 1, first, e)
                for e in candidates[i]
            )

        return any(
            (start is None or first.timestamp >= start) and chain(1, first, first)
            for first in candidates[0]
        )

    def describe(self, node: dict) -> str:
        steps = [
            humanize(s.get("event", "")) + _describe_where(s.get("where"))
            for s in node.get("sequence", [])
        ]
        text = join(steps, "then")
        if node.get("within"):
            text += describe_window(node["within"]).replace(" in the last", " within")
        text += describe_window(node.get("window"))
        after = node.get("not_followed_by")
        if after:
            what = humanize(after.get("event", "")) + _describe_where(
                after.get("where")
            )
            text += f", and not followed by {what}"
            if after.get("within"):
                text += describe_window(after["within"]).replace(
                    " in the last", " within"
                )
        return text

    def collect(self, node: dict, refs: Refs) -> None:
        for step in node["sequence"]:
            _collect_event(refs, step["event"], None)
        if node.get("not_followed_by"):
            _collect_event(refs, node["not_followed_by"]["event"], None)
        if node.get("window") or node.get("not_followed_by", {}).get("within"):
            refs.time_based = True


# -- last event property --------------------------------------------------------


class LastEventLeaf(Leaf):
    """{"last_event": "product_viewed", "property": "category", "op": "eq",
    "value": "shoes"}: the latest such event's property."""

    key = "last_event"

    def validate(self, node: dict, where: str) -> list[str]:
        errors = []
        if not isinstance(node.get("last_event"), str) or not node.get("last_event"):
            errors.append(f"{where}.last_event: an event name is required")
        errors += validate_path(node.get("property"), f"{where}.property")
        return errors + validate_comparison(node.get("op"), node.get("value"), where)

    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        latest = (
            f"(SELECT le.properties FROM {EVENTS} le "
            f'WHERE le.contact_id = {contact}."id" '
            "AND le.name = %s ORDER BY le.timestamp DESC, le.id DESC LIMIT 1)"
        )
        ref = JsonRef(latest, (node["last_event"],), tuple(node["property"].split(".")))
        return json_compare(d, ref, node["op"], node.get("value"))

    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        events = facts.events_named(node["last_event"])
        if not events:
            actual = MISSING
        else:
            latest = max(events, key=lambda e: (e.timestamp, e.id))
            actual = dig(latest.properties, node["property"].split("."))
        return compare(actual, node["op"], node.get("value"), today=Today(env.now))

    def describe(self, node: dict) -> str:
        event = humanize(node.get("last_event", ""))
        subject = f"the last {event}'s {node.get('property', '')}"
        return describe_comparison(subject, node.get("op"), node.get("value"))

    def collect(self, node: dict, refs: Refs) -> None:
        _collect_event(refs, node["last_event"], None)


# -- segment, email engagement, score, consent ----------------------------------------


class SegmentLeaf(Leaf):
    """{"segment": 12}: a member of that segment now."""

    key = "segment"

    def validate(self, node: dict, where: str) -> list[str]:
        value = node.get("segment")
        if not isinstance(value, int) or isinstance(value, bool):
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

        segment = Segment.objects.filter(pk=node.get("segment")).first()
        return f"is in the segment “{segment.name if segment else node.get('segment')}”"

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
        name = (
            "message_sent"
            if node.get("email") == "sent"
            else f"email_{node.get('email')}"
        )
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


register_leaf(AttributeLeaf())
EVENTS_LEAF = register_leaf(EventLeaf())
register_leaf(SequenceLeaf())
register_leaf(LastEventLeaf())
register_leaf(SegmentLeaf())
register_leaf(EmailLeaf())
register_leaf(ScoreLeaf())
register_leaf(ConsentLeaf())

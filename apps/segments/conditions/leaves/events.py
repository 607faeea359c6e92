"""Event leaves: counts in a window, sequences, the last event's property."""

import datetime as dt
from typing import Any

from .. import history
from ..base import (
    Env,
    EventFact,
    Facts,
    Leaf,
    Refs,
    describe_window,
    humanize,
    join,
    validate_window,
    window_delta,
    window_start,
)
from ..sql import (
    Dialect,
    Fragment,
    JsonRef,
    json_compare,
)
from ..values import (
    MISSING,
    Today,
    compare,
    dig,
    validate_comparison,
    validate_path,
)
from .common import (
    EVENTS,
    _describe_where,
    _ts,
    _where_errors,
    _where_matches,
    _where_sql,
    describe_comparison,
)

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
        rule = node.get("count", DEFAULT_COUNT)
        start = window_start(node.get("window"), env.now, env.since)
        if node["event"] in facts.in_database:
            # Counting past value + 1 changes no answer (see _count_ok).
            count = history.count_events(
                contact_id=facts.contact.pk,
                name=node["event"],
                filters=node.get("where"),
                start=start,
                env=env,
                limit=rule["value"] + 1,
            )
            return _count_ok(count, rule)
        today = Today(env.now)
        count = sum(
            1
            for e in facts.events_named(node["event"])
            if (start is None or e.timestamp >= start)
            and _where_matches(e, node.get("where"), today)
        )
        return _count_ok(count, rule)

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
        if facts.in_database & set(self._names(node)):
            # Pairs of events, in SQL: per contact, through the (contact, name,
            # timestamp) index, stopping at the first chain that holds.
            return history.holds_in_database(
                self, node, contact_id=facts.contact.pk, env=env
            )
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

    def _names(self, node: dict) -> list[str]:
        names = [step["event"] for step in node["sequence"]]
        if node.get("not_followed_by"):
            names.append(node["not_followed_by"]["event"])
        return names

    def collect(self, node: dict, refs: Refs) -> None:
        for name in self._names(node):
            _collect_event(refs, name, None)
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
        name = node["last_event"]
        if name in facts.in_database:
            latest = history.latest_event(contact_id=facts.contact.pk, name=name)
        else:
            events = facts.events_named(name)
            latest = max(events, key=lambda e: (e.timestamp, e.id)) if events else None
        if latest is None:
            actual = MISSING
        else:
            actual = dig(latest.properties, node["property"].split("."))
        return compare(actual, node["op"], node.get("value"), today=Today(env.now))

    def describe(self, node: dict) -> str:
        event = humanize(node.get("last_event", ""))
        subject = f"the last {event}'s {node.get('property', '')}"
        return describe_comparison(subject, node.get("op"), node.get("value"))

    def collect(self, node: dict, refs: Refs) -> None:
        _collect_event(refs, node["last_event"], None)


EVENTS_LEAF = EventLeaf()

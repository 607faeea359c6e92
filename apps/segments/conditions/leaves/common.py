"""What the leaf types share: words, property filters, table names."""

import datetime as dt
from typing import Any

from ..base import (
    EventFact,
    join,
)
from ..sql import (
    Dialect,
    Fragment,
    JsonRef,
    json_compare,
)
from ..values import (
    Today,
    compare,
    dig,
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

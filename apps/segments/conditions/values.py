"""Comparing one value: the semantics every leaf shares, in Python and in SQL.

The two implementations must agree on every input, so the rules are strict and
typed by the value in the condition:

- a missing key and JSON null are *missing*: only ``exists`` / ``not_exists`` see them;
- ``eq`` compares like with like: a number condition matches JSON numbers only (the
  string "5" is not 5), a string matches strings, a boolean booleans; ``ne`` is
  ``not eq``, so it holds for a missing value too;
- ``gt`` / ``gte`` / ``lt`` / ``lte``: numbers numerically, strings by code point (SQL
  uses the "C" collation, which is the same order);
- ``contains`` / ``starts_with`` on strings ignore ASCII case only (SQL ``lower`` is
  ASCII-only in SQLite; PostgreSQL uses ``translate`` A-Z); ``contains`` on a JSON
  array means "has this element";
- ``in``: equal to one of the listed values;
- date operators read a string's first ten characters as YYYY-MM-DD (strings that do
  not start that way never match) and compare them as strings, which is date order.

Every SQL fragment is wrapped so it yields TRUE or FALSE, never NULL, so ``not``
means the same in both implementations.
"""

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

MISSING = object()

DATE_PREFIX = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")
KEY = re.compile(r"^[A-Za-z0-9_\- ]{1,64}$")

EQUALITY_OPS = {"eq", "ne", "in"}
ORDER_OPS = {"gt", "gte", "lt", "lte"}
TEXT_OPS = {"contains", "starts_with"}
PRESENCE_OPS = {"exists", "not_exists"}
RELATIVE_DATE_OPS = {
    "within_past",
    "more_than_past",
    "within_future",
    "more_than_future",
}
ABSOLUTE_DATE_OPS = {"before", "after"}
DATE_OPS = RELATIVE_DATE_OPS | ABSOLUTE_DATE_OPS | {"anniversary"}
VALUE_OPS = EQUALITY_OPS | ORDER_OPS | TEXT_OPS | PRESENCE_OPS | DATE_OPS

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- validation ---------------------------------------------------------------------


def validate_comparison(
    op: Any, value: Any, where: str, *, allow_dates: bool = True
) -> list[str]:
    """Errors for an (op, value) pair, each prefixed with ``where``."""
    if op not in VALUE_OPS or (not allow_dates and op in DATE_OPS):
        return [f"{where}.op: unknown operator {op!r}"]
    if op in PRESENCE_OPS:
        return []
    if op == "in":
        if not isinstance(value, list) or not value:
            return [f"{where}.value: 'in' needs a non-empty list"]
        bad = [v for v in value if not (isinstance(v, str | bool) or is_number(v))]
        return (
            [f"{where}.value: 'in' takes strings, numbers or booleans"] if bad else []
        )
    if op in {"eq", "ne"}:
        if isinstance(value, str | bool) or is_number(value):
            return []
        return [f"{where}.value: {op} needs a string, number or boolean"]
    if op in ORDER_OPS:
        if isinstance(value, str) or is_number(value):
            return []
        return [f"{where}.value: {op} needs a number or a string"]
    if op in TEXT_OPS:
        return [] if isinstance(value, str) else [f"{where}.value: {op} needs text"]
    if op in ABSOLUTE_DATE_OPS:
        if isinstance(value, str) and DATE_PREFIX.match(value):
            return []
        return [f"{where}.value: {op} needs a date like 2026-01-31"]
    if op in RELATIVE_DATE_OPS:
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and 0 <= value <= 36500
        ):
            return []
        return [f"{where}.value: {op} needs a number of days (0-36500)"]
    if op == "anniversary":
        if value in (None, 0) or (
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 366
        ):
            return []
        return [f"{where}.value: anniversary takes the days before it (0-366)"]
    return []


def validate_path(path: Any, where: str) -> list[str]:
    if not isinstance(path, str) or not path:
        return [f"{where}: a property name is required"]
    bad = [key for key in path.split(".") if not KEY.match(key)]
    if bad:
        return [
            f"{where}: {bad[0]!r} is not a valid key (letters, digits, _ - and space)"
        ]
    return []


# -- Python -------------------------------------------------------------------------


def dig(data: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return MISSING
        data = data[key]
    return data


def _eq(actual: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return isinstance(actual, bool) and actual == value
    if is_number(value):
        return is_number(actual) and actual == value
    return isinstance(actual, str) and actual == value


@dataclass(frozen=True)
class Today:
    """Dates the date operators compare with, fixed per evaluation."""

    now: dt.datetime

    @property
    def date(self) -> str:
        return self.now.astimezone(dt.UTC).date().isoformat()

    def shifted(self, days: int) -> str:
        return (
            self.now.astimezone(dt.UTC).date() + dt.timedelta(days=days)
        ).isoformat()


def anniversary_targets(
    now: dt.datetime, timezone: str | None, days_before: int
) -> list[str]:
    """Month-days ("MM-DD") that are an anniversary today in ``timezone``.

    ``days_before`` looks ahead: 7 matches dates a week from today. A 29 February
    date matches on 28 February in years without one.
    """
    try:
        zone = zoneinfo.ZoneInfo(timezone) if timezone else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    target = now.astimezone(zone).date() + dt.timedelta(days=days_before)
    days = [target.strftime("%m-%d")]
    if days == ["02-28"]:
        try:
            dt.date(target.year, 2, 29)
        except ValueError:
            days.append("02-29")
    return days


def compare(
    actual: Any, op: str, value: Any, *, today: Today, timezone: str | None = None
) -> bool:
    """The Python side of every comparison."""
    if op == "exists":
        return actual is not MISSING and actual is not None
    if op == "not_exists":
        return actual is MISSING or actual is None
    if op == "ne":
        return not compare(actual, "eq", value, today=today, timezone=timezone)
    if actual is MISSING or actual is None:
        return False
    if op == "eq":
        return _eq(actual, value)
    if op == "in":
        return any(_eq(actual, v) for v in value)
    if op in ORDER_OPS:
        if is_number(value):
            if not is_number(actual):
                return False
        elif not isinstance(actual, str):
            return False
        return {
            "gt": actual > value,
            "gte": actual >= value,
            "lt": actual < value,
            "lte": actual <= value,
        }[op]
    if op == "contains":
        if isinstance(actual, list):
            return any(_eq(item, value) for item in actual)
        return isinstance(actual, str) and ascii_lower(value) in ascii_lower(actual)
    if op == "starts_with":
        return isinstance(actual, str) and ascii_lower(actual).startswith(
            ascii_lower(value)
        )
    if op in DATE_OPS:
        if not isinstance(actual, str) or not DATE_PREFIX.match(actual):
            return False
        day = actual[:10]
        return compare_day(day, op, value, today=today, timezone=timezone)
    raise ValueError(f"unknown operator {op!r}")


def compare_day(
    day: str, op: str, value: Any, *, today: Today, timezone: str | None
) -> bool:
    """Date operators on a YYYY-MM-DD string."""
    match op:
        case "before":
            return day < value[:10]
        case "after":
            return day > value[:10]
        case "within_past":
            return today.shifted(-value) <= day <= today.date
        case "more_than_past":
            return day < today.shifted(-value)
        case "within_future":
            return today.date <= day <= today.shifted(value)
        case "more_than_future":
            return day > today.shifted(value)
        case "anniversary":
            return day[5:10] in anniversary_targets(today.now, timezone, value or 0)
    raise ValueError(f"unknown date operator {op!r}")

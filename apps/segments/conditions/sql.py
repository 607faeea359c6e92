"""The SQL side of comparisons (see values.py for the rules both sides follow).

Fragments are (sql, params) pairs for PostgreSQL and SQLite. Each comparison yields
TRUE or FALSE, never NULL, so NOT means what it means in Python.
"""

import datetime as dt
import string
from dataclasses import dataclass, field
from typing import Any

from .values import ORDER_OPS, Today, anniversary_targets, is_number

Fragment = tuple[str, list[Any]]

FALSE = ("(1=0)", [])
TRUE = ("(1=1)", [])


@dataclass
class Dialect:
    vendor: str  # "postgresql" | "sqlite"
    now: dt.datetime
    since: dt.datetime | None = None
    # distinct contact timezones, for anniversaries (one branch each)
    timezones: list[str] = field(default_factory=list)

    @property
    def pg(self) -> bool:
        return self.vendor == "postgresql"

    @property
    def today(self) -> Today:
        return Today(self.now)

    # -- values as parameters -------------------------------------------------------

    def ts(self, value: dt.datetime) -> Any:
        """A timestamp parameter in the form the column stores."""
        if self.pg:
            return value
        from django.db import connection

        return connection.ops.adapt_datetimefield_value(value)

    def plus(self, column: str, delta: dt.timedelta) -> Fragment:
        """``column + delta`` for timestamp columns."""
        if self.pg:
            return f"({column} + %s)", [delta]
        return f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', {column}, %s)", [
            f"+{delta.total_seconds()} seconds"
        ]

    def ascii_lower(self, sql: str) -> str:
        if self.pg:
            upper, lower = string.ascii_uppercase, string.ascii_lowercase
            return f"translate({sql}, '{upper}', '{lower}')"
        return f"lower({sql})"  # SQLite's lower() folds ASCII only

    def c(self, sql: str) -> str:
        """Code-point order for string comparisons."""
        return f'({sql} COLLATE "C")' if self.pg else sql


# -- JSON values ----------------------------------------------------------------


@dataclass(frozen=True)
class JsonRef:
    """A JSON value: ``expr`` (a jsonb / JSON text column or subquery) at ``path``."""

    expr: str
    expr_params: tuple
    path: tuple[str, ...]


def _typeof(d: Dialect, ref: JsonRef) -> Fragment:
    if d.pg:
        return f"jsonb_typeof({ref.expr} #> %s)", [*ref.expr_params, list(ref.path)]
    return f"json_type({ref.expr}, %s)", [*ref.expr_params, _sqlite_path(ref.path)]


def _text(d: Dialect, ref: JsonRef) -> Fragment:
    if d.pg:
        return f"({ref.expr} #>> %s)", [*ref.expr_params, list(ref.path)]
    return f"json_extract({ref.expr}, %s)", [*ref.expr_params, _sqlite_path(ref.path)]


def _sqlite_path(path: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{key}"' for key in path)


def _type_is(d: Dialect, ref: JsonRef, kind: str) -> Fragment:
    sql, params = _typeof(d, ref)
    names = {
        "number": ("'number'",) if d.pg else ("'integer'", "'real'"),
        "string": ("'string'",) if d.pg else ("'text'",),
        "array": ("'array'",),
        "true": () if d.pg else ("'true'",),
        "false": () if d.pg else ("'false'",),
    }[kind]
    return f"COALESCE({sql} IN ({', '.join(names)}), FALSE)", params


def _guarded(d: Dialect, ref: JsonRef, kind: str, then: Fragment) -> Fragment:
    test, params = _type_is(d, ref, kind)
    return f"(CASE WHEN {test} THEN COALESCE({then[0]}, FALSE) ELSE FALSE END)", [
        *params,
        *then[1],
    ]


def _number(d: Dialect, ref: JsonRef) -> Fragment:
    sql, params = _text(d, ref)
    return (f"CAST({sql} AS numeric)", params) if d.pg else (sql, params)


def _num_param(d: Dialect, value: Any) -> tuple[str, Any]:
    # numeric, not float8, on PostgreSQL: JSON numbers compare exactly.
    return ("CAST(%s AS numeric)", str(value)) if d.pg else ("%s", value)


def json_eq(d: Dialect, ref: JsonRef, value: Any) -> Fragment:
    if isinstance(value, bool):
        if d.pg:
            text, params = _text(d, ref)
            test, tparams = _typeof(d, ref)
            return (
                f"COALESCE({test} = 'boolean' AND {text} = %s, FALSE)",
                [*tparams, *params, "true" if value else "false"],
            )
        return _type_is(d, ref, "true" if value else "false")
    if is_number(value):
        num, params = _number(d, ref)
        placeholder, param = _num_param(d, value)
        return _guarded(d, ref, "number", (f"{num} = {placeholder}", [*params, param]))
    text, params = _text(d, ref)
    return _guarded(d, ref, "string", (f"{text} = %s", [*params, value]))


def json_compare(
    d: Dialect, ref: JsonRef, op: str, value: Any, *, tz_sql: str | None = None
) -> Fragment:
    """(sql, params) for ``ref <op> value``, TRUE or FALSE, never NULL."""
    if op == "exists":
        sql, params = _typeof(d, ref)
        return f"(COALESCE({sql}, 'null') <> 'null')", params
    if op == "not_exists":
        sql, params = json_compare(d, ref, "exists", value)
        return f"(NOT {sql})", params
    if op == "ne":
        sql, params = json_eq(d, ref, value)
        return f"(NOT {sql})", params
    if op == "eq":
        return json_eq(d, ref, value)
    if op == "in":
        parts = [json_eq(d, ref, v) for v in value]
        return "(" + " OR ".join(p[0] for p in parts) + ")", [
            x for p in parts for x in p[1]
        ]
    if op in ORDER_OPS:
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        if is_number(value):
            num, params = _number(d, ref)
            placeholder, param = _num_param(d, value)
            return _guarded(
                d, ref, "number", (f"{num} {sign} {placeholder}", [*params, param])
            )
        text, params = _text(d, ref)
        return _guarded(d, ref, "string", (f"{d.c(text)} {sign} %s", [*params, value]))
    if op == "contains":
        text, params = _text(d, ref)
        in_text = _guarded(
            d,
            ref,
            "string",
            (_contains_sql(d, text), [*params, value]),
        )
        has_element = _array_has(d, ref, value)
        return f"({in_text[0]} OR {has_element[0]})", [*in_text[1], *has_element[1]]
    if op == "starts_with":
        text, params = _text(d, ref)
        return _guarded(
            d, ref, "string", (_starts_sql(d, text), [*params, value, value])
        )
    # dates: strings that start with YYYY-MM-DD
    text, params = _text(d, ref)
    day = f"substr({text}, 1, 10)"
    shape = (
        f"{text} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}'"
        if d.pg
        else (f"{text} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'")
    )
    body, body_params = day_compare(d, day, params, op, value, tz_sql=tz_sql)
    return _guarded(
        d, ref, "string", (f"({shape} AND {body})", [*params, *body_params])
    )


def _contains_sql(d: Dialect, text: str) -> str:
    if d.pg:
        return f"strpos({d.ascii_lower(text)}, {d.ascii_lower('%s')}) > 0"
    return f"instr({d.ascii_lower(text)}, {d.ascii_lower('%s')}) > 0"


def _starts_sql(d: Dialect, text: str) -> str:
    if d.pg:
        return f"left({d.ascii_lower(text)}, length(%s)) = {d.ascii_lower('%s')}"
    return f"substr({d.ascii_lower(text)}, 1, length(%s)) = {d.ascii_lower('%s')}"


def _array_has(d: Dialect, ref: JsonRef, value: str) -> Fragment:
    test, tparams = _type_is(d, ref, "array")
    if d.pg:
        return (
            f"({test} AND EXISTS (SELECT 1 FROM "
            f"jsonb_array_elements({ref.expr} #> %s) el "
            f"WHERE el = to_jsonb(CAST(%s AS text))))",
            [*tparams, *ref.expr_params, list(ref.path), value],
        )
    return (
        f"({test} AND EXISTS (SELECT 1 FROM json_each({ref.expr}, %s) el "
        f"WHERE el.type = 'text' AND el.value = %s))",
        [*tparams, *ref.expr_params, _sqlite_path(ref.path), value],
    )


def day_compare(
    d: Dialect, day: str, day_params: list, op: str, value: Any, *, tz_sql: str | None
) -> Fragment:
    """Date operators on a YYYY-MM-DD SQL string ``day`` (with its own params)."""
    today = d.today

    def cmp(sign: str, param: str) -> Fragment:
        return f"{d.c(day)} {sign} %s", [*day_params, param]

    def both(a: Fragment, b: Fragment) -> Fragment:
        return f"({a[0]} AND {b[0]})", [*a[1], *b[1]]

    match op:
        case "before":
            return cmp("<", value[:10])
        case "after":
            return cmp(">", value[:10])
        case "within_past":
            return both(cmp(">=", today.shifted(-value)), cmp("<=", today.date))
        case "more_than_past":
            return cmp("<", today.shifted(-value))
        case "within_future":
            return both(cmp(">=", today.date), cmp("<=", today.shifted(value)))
        case "more_than_future":
            return cmp(">", today.shifted(value))
        case "anniversary":
            return _anniversary(d, day, day_params, value or 0, tz_sql=tz_sql)
    raise ValueError(f"unknown date operator {op!r}")


def _anniversary(
    d: Dialect, day: str, day_params: list, days_before: int, *, tz_sql: str | None
) -> Fragment:
    month_day = f"substr({day}, 6, 5)"

    def one_of(targets: list[str]) -> Fragment:
        marks = ", ".join(["%s"] * len(targets))
        return f"{month_day} IN ({marks})", [*day_params, *targets]

    if tz_sql is None or not d.timezones:
        return one_of(anniversary_targets(d.now, None, days_before))
    branches, params = [], []
    for zone in d.timezones:
        sql, sql_params = one_of(anniversary_targets(d.now, zone, days_before))
        branches.append(f"({tz_sql} = %s AND {sql})")
        params.extend([zone, *sql_params])
    return "(" + " OR ".join(branches) + ")", params


# -- built-in contact columns ---------------------------------------------------


def column_compare(d: Dialect, column: str, kind: str, op: str, value: Any) -> Fragment:
    """Comparisons on typed columns: ``kind`` is text, number or datetime."""
    if kind == "text":
        return _text_compare(d, column, op, value)
    if kind == "number":
        return _number_compare(column, op, value)
    if kind == "datetime":
        return _datetime_compare(d, column, op, value)
    raise ValueError(f"operator {op!r} does not apply to {kind}")


def _text_compare(d: Dialect, column: str, op: str, value: Any) -> Fragment:
    actual = f"NULLIF({column}, '')"
    if op == "exists":
        return f"({actual} IS NOT NULL)", []
    if op == "not_exists":
        return f"({actual} IS NULL)", []
    if op == "ne":
        sql, params = _text_compare(d, column, "eq", value)
        return f"(NOT {sql})", params
    if op == "eq":
        return f"COALESCE({actual} = %s, FALSE)", [value]
    if op == "in":
        marks = ", ".join(["%s"] * len(value))
        return f"COALESCE({actual} IN ({marks}), FALSE)", list(value)
    if op in ORDER_OPS:
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        return f"COALESCE({d.c(actual)} {sign} %s, FALSE)", [value]
    if op == "contains":
        return f"COALESCE({_contains_sql(d, actual)}, FALSE)", [value]
    if op == "starts_with":
        return f"COALESCE({_starts_sql(d, actual)}, FALSE)", [value, value]
    raise ValueError(f"operator {op!r} does not apply to text")


def _number_compare(column: str, op: str, value: Any) -> Fragment:
    if op == "exists":
        return TRUE
    if op == "not_exists":
        return FALSE
    if op == "ne":
        sql, params = _number_compare(column, "eq", value)
        return f"(NOT {sql})", params
    if op == "in":
        marks = ", ".join(["%s"] * len(value))
        return f"({column} IN ({marks}))", list(value)
    sign = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    return f"({column} {sign} %s)", [value]


def _datetime_compare(d: Dialect, column: str, op: str, value: Any) -> Fragment:
    if op == "exists":
        return f"({column} IS NOT NULL)", []
    if op == "not_exists":
        return f"({column} IS NULL)", []
    if op == "anniversary":
        day = (
            f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            if d.pg
            else f"strftime('%%Y-%%m-%%d', {column})"
        )
        sql, params = _anniversary(d, day, [], value or 0, tz_sql=None)
        return f"COALESCE({sql}, FALSE)", params
    low, high = _datetime_bounds(op, value, d.now)
    parts, params = [], []
    if low is not None:
        parts.append(f"{column} >= %s")
        params.append(d.ts(low))
    if high is not None:
        strict = op in {"before", "more_than_past"}
        parts.append(f"{column} {'<' if strict else '<='} %s")
        params.append(d.ts(high))
    return f"COALESCE({' AND '.join(parts)}, FALSE)", params


def _datetime_bounds(
    op: str, value: Any, now: dt.datetime
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(low, high) for a date operator; None is an open end."""
    match op:
        case "before":
            return None, _midnight(value)
        case "after":
            return _midnight(value) + dt.timedelta(days=1), None
        case "within_past":
            return now - dt.timedelta(days=value), now
        case "more_than_past":
            return None, now - dt.timedelta(days=value)
        case "within_future":
            return now, now + dt.timedelta(days=value)
        case "more_than_future":
            return now + dt.timedelta(days=value), None
    raise ValueError(f"unknown operator {op!r} for a date")


def _midnight(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value[:10]).replace(tzinfo=dt.UTC)


def datetime_matches(
    actual: dt.datetime | None, op: str, value: Any, now: dt.datetime
) -> bool:
    """The Python side of column_compare for datetime columns."""
    if op == "exists":
        return actual is not None
    if op == "not_exists":
        return actual is None
    if actual is None:
        return False
    day = dt.timedelta(days=1)
    match op:
        case "before":
            return actual < _midnight(value)
        case "after":
            return actual >= _midnight(value) + day
        case "within_past":
            return now - dt.timedelta(days=value) <= actual <= now
        case "more_than_past":
            return actual < now - dt.timedelta(days=value)
        case "within_future":
            return now <= actual <= now + dt.timedelta(days=value)
        case "more_than_future":
            return actual >= now + dt.timedelta(days=value)
        case "anniversary":
            month_day = actual.astimezone(dt.UTC).strftime("%m-%d")
            return month_day in anniversary_targets(now, None, value or 0)
    raise ValueError(f"unknown operator {op!r} for a date")

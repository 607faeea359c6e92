"""The attribute leaf: a contact field or trait."""

from ..base import (
    Env,
    Facts,
    Leaf,
    Refs,
    humanize,
)
from ..sql import (
    Dialect,
    Fragment,
    JsonRef,
    column_compare,
    datetime_matches,
    json_compare,
)
from ..values import (
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
from .common import describe_comparison

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

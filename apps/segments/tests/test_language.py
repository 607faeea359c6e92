"""Validation that points at the broken node, English, versions, registry."""

import pytest

from apps.segments.conditions import (
    ConditionError,
    check,
    describe,
    references,
    validate,
)
from apps.segments.conditions.base import LEAVES, Leaf, register_leaf


def test_errors_point_at_the_broken_node():
    condition = {
        "any": [
            {"attribute": "plan", "op": "eq", "value": "pro"},
            {"event": "viewed", "count": {"op": "gtt", "value": 2}},
            {
                "all": [
                    {"attribute": "score", "op": "contains", "value": "x"},
                    {"foo": 1},
                ]
            },
            {
                "event": "viewed",
                "where": [{"property": "price", "op": "gt", "value": [1]}],
            },
            {"event": "viewed", "window": {"last": 3, "unit": "weeks"}},
        ]
    }
    assert validate(condition) == [
        "any[1].count: unknown operator 'gtt'",
        "any[2].all[0].op: 'contains' does not apply to score (number)",
        "any[2].all[1]: unknown condition (expected one of: all, any, not, attribute, "
        "event, sequence, last_event, segment, email, score, consent, topic)",
        "any[3].where[0].value: gt needs a number or a string",
        "any[4].window.unit: unknown unit 'weeks' (minutes, hours, days)",
    ]


def test_check_raises_with_every_error():
    with pytest.raises(ConditionError) as error:
        check({"all": [{"attribute": "plan", "op": "eqq"}]})
    assert error.value.errors == ["all[0].op: unknown operator 'eqq'"]


def test_a_newer_schema_version_is_refused():
    with pytest.raises(ConditionError, match="newer than this Nudge"):
        check({"version": 99, "all": []})


def test_the_english_sentence():
    condition = {
        "version": 1,
        "all": [
            {
                "event": "product_viewed",
                "count": {"op": "gte", "value": 3},
                "window": {"last": 7, "unit": "days"},
            },
            {
                "event": "order_completed",
                "count": {"op": "eq", "value": 0},
                "window": {"last": 24, "unit": "hours"},
            },
        ],
    }
    assert describe(condition) == (
        "Product Viewed at least 3 times in the last 7 days and did not Order Completed "
        "in the last 24 hours"
    )
    assert describe(
        {
            "any": [
                {"attribute": "plan", "op": "eq", "value": "pro"},
                {"not": {"score": {"op": "lt", "value": 10}}},
            ]
        }
    ) == ("Plan is “pro” or not score is less than 10")
    assert describe({"attribute": "birthday", "op": "anniversary", "value": 7}) == (
        "Birthday has its anniversary in 7 days"
    )


def test_references_say_what_an_event_can_change():
    refs = references(
        {
            "all": [
                {"event": "product_viewed", "window": {"last": 7, "unit": "days"}},
                {"attribute": "plan", "op": "eq", "value": "pro"},
                {"segment": 4},
            ]
        }
    )
    assert refs.event_names == {"product_viewed"}
    assert refs.attributes == {"plan"}
    assert refs.segment_ids == {4}
    assert refs.time_based


def test_an_app_can_register_a_leaf_type(db):
    class CountryLeaf(Leaf):
        key = "country"

        def validate(self, node, where):
            return (
                [] if isinstance(node["country"], str) else [f"{where}.country: text"]
            )

        def sql(self, node, d, contact):
            return f"""({contact}."attributes" IS NOT NULL)""", []

        def matches(self, node, facts, env):
            return True

        def describe(self, node):
            return f"lives in {node['country']}"

        def collect(self, node, refs):
            refs.attributes.add("country")

    register_leaf(CountryLeaf())
    try:
        assert validate({"country": "FR"}) == []
        assert validate({"country": 3}) == ["condition.country: text"]
        assert describe({"all": [{"country": "FR"}]}) == "Lives in FR"
    finally:
        del LEAVES["country"]

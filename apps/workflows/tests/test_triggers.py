"""Trigger types and the rules every event trigger shares (a maximum event age)."""

import datetime as dt
from types import SimpleNamespace

import pytest

from apps.workflows.definition import validate_definition
from apps.workflows.triggers import event_refusal

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
STEPS = [{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}]


def _at(**ago) -> SimpleNamespace:
    return SimpleNamespace(timestamp=NOW - dt.timedelta(**ago))


@pytest.mark.parametrize(
    ("trigger", "error"),
    [
        (
            {"type": "event", "event": "x", "max_age": {"hours": 0}},
            "trigger.max_age: how old an event may be, e.g. {'hours': 6}",
        ),
        (
            {"type": "event", "event": "x", "max_age": "1 day"},
            "trigger.max_age: how old an event may be, e.g. {'hours': 6}",
        ),
        (
            {"type": "inactivity", "days": 3, "max_age": {"days": 1}},
            "trigger.max_age: only triggers fired by an event have one",
        ),
    ],
)
def test_a_bad_maximum_age_is_a_validation_error(trigger, error):
    assert validate_definition({"trigger": trigger, "steps": STEPS}) == [error]


def test_a_maximum_age_on_an_event_trigger_is_valid():
    trigger = {"type": "score", "threshold": 10, "max_age": {"hours": 6}}
    assert validate_definition({"trigger": trigger, "steps": STEPS}) == []


def test_without_a_maximum_age_events_older_than_a_day_are_refused():
    assert event_refusal({}, _at(hours=23), live_since=None, now=NOW) == ""
    assert event_refusal({}, _at(hours=25), live_since=None, now=NOW) == (
        "the event happened 1 day 1 hour before it arrived, longer than the "
        "trigger's maximum event age (1 day)"
    )


def test_a_maximum_age_of_minutes_is_respected():
    config = {"max_age": {"minutes": 10}}
    assert event_refusal(config, _at(minutes=9), live_since=None, now=NOW) == ""
    assert event_refusal(config, _at(minutes=11), live_since=None, now=NOW) == (
        "the event happened 11 minutes before it arrived, longer than the trigger's "
        "maximum event age (10 minutes)"
    )


def test_an_event_at_the_very_moment_the_workflow_went_live_counts():
    assert event_refusal({}, _at(), live_since=NOW, now=NOW) == ""

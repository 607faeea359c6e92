"""The built-in leaf types. Each answers the same question twice: in SQL over all
contacts, and in Python for one; tests/test_conditions_agree.py holds them to it."""

from ..base import register_leaf
from .attribute import BUILTIN, KIND_OPS, AttributeLeaf, attribute_path
from .common import (
    EVENTS,
    MEMBERSHIPS,
    Today,
    _where_errors,
    _where_matches,
    describe_comparison,
)
from .events import DEFAULT_COUNT, EVENTS_LEAF, LastEventLeaf, SequenceLeaf
from .other import EMAIL_ACTIONS, ConsentLeaf, EmailLeaf, ScoreLeaf, SegmentLeaf

register_leaf(AttributeLeaf())
register_leaf(EVENTS_LEAF)
register_leaf(SequenceLeaf())
register_leaf(LastEventLeaf())
register_leaf(SegmentLeaf())
register_leaf(EmailLeaf())
register_leaf(ScoreLeaf())
register_leaf(ConsentLeaf())

__all__ = [
    "BUILTIN",
    "DEFAULT_COUNT",
    "EMAIL_ACTIONS",
    "EVENTS",
    "EVENTS_LEAF",
    "KIND_OPS",
    "MEMBERSHIPS",
    "Today",
    "_where_errors",
    "_where_matches",
    "attribute_path",
    "describe_comparison",
]

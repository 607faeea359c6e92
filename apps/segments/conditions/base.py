"""The pieces every leaf type shares: the registry, facts about a contact, windows."""

import abc
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .sql import Dialect, Fragment


class ConditionError(ValueError):
    """A condition that does not validate; ``errors`` point at the broken nodes."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class EventFact:
    id: int
    name: str
    properties: dict
    timestamp: dt.datetime


@dataclass
class Facts:
    """What evaluating a condition for one contact may look at."""

    contact: Any  # apps.contacts.models.Contact
    events: list[EventFact] = field(default_factory=list)  # by (timestamp, id)
    segment_ids: set[int] = field(default_factory=set)
    # Event names read without a time limit: their events are not in ``events``.
    # The built-in leaves ask the database about them (history.py), so that a
    # long history is never fetched.
    in_database: frozenset[str] = frozenset()
    _fetched: dict[str, list[EventFact]] = field(default_factory=dict, repr=False)

    def events_named(self, name: str) -> list[EventFact]:
        if name in self.in_database:
            # A leaf that reads the events themselves (an app's own, say) gets
            # all of them, fetched once.
            if name not in self._fetched:
                from .history import all_events

                self._fetched[name] = all_events(contact_id=self.contact.pk, name=name)
            return self._fetched[name]
        return [e for e in self.events if e.name == name]


@dataclass(frozen=True)
class Env:
    now: dt.datetime
    # "since enrollment" windows inside a workflow
    since: dt.datetime | None = None


@dataclass
class Refs:
    """What a condition reads, so an event re-checks only what it can change."""

    event_names: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)
    segment_ids: set[int] = field(default_factory=set)
    # conditions on time passing (windows, relative dates) need a periodic refresh
    time_based: bool = False
    # the earliest event time evaluation needs (None: all of them)
    events_since: dict[str, dt.timedelta | None] = field(default_factory=dict)
    # Events after which the answer may differ though evaluation does not read
    # them: a leaf of a higher app reading its own tables (a topic choice) names
    # the event its app records when those change.
    changed_by: set[str] = field(default_factory=set)


class Leaf(abc.ABC):
    """A kind of condition leaf, registered under the key that names it in JSON."""

    key: ClassVar[str]

    @abc.abstractmethod
    def validate(self, node: dict, where: str) -> list[str]:
        """Errors, each starting with ``where`` (the path to the node)."""

    @abc.abstractmethod
    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        """A boolean SQL expression over the contacts row aliased ``contact``."""

    @abc.abstractmethod
    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        """The same answer as ``sql``, for one contact, in Python."""

    @abc.abstractmethod
    def describe(self, node: dict) -> str:
        """A plain-English phrase for the node."""

    @abc.abstractmethod
    def collect(self, node: dict, refs: Refs) -> None:
        """Add what this leaf reads to ``refs``."""


LEAVES: dict[str, Leaf] = {}


def register_leaf(leaf: Leaf) -> Leaf:
    """Register a leaf type (a Django app may add its own in AppConfig.ready())."""
    LEAVES[leaf.key] = leaf
    return leaf


def leaf_for(node: dict) -> Leaf | None:
    for key in node:
        if key in LEAVES:
            return LEAVES[key]
    return None


# -- shared parts of event leaves -----------------------------------------------------

UNITS = {"minutes": 60, "hours": 3600, "days": 86400}


def validate_window(window: Any, where: str) -> list[str]:
    if window is None:
        return []
    if not isinstance(window, dict):
        return [
            f"{where}: a window is {{'last': 7, 'unit': 'days'}} "
            "or {'since': 'enrollment'}"
        ]
    if window.get("since") == "enrollment":
        return []
    last, unit = window.get("last"), window.get("unit", "days")
    if unit not in UNITS:
        return [f"{where}.unit: unknown unit {unit!r} (minutes, hours, days)"]
    if not isinstance(last, int) or isinstance(last, bool) or not 1 <= last <= 36500:
        return [f"{where}.last: a whole number of {unit} (1-36500)"]
    return []


def window_start(window: dict | None, env_now: dt.datetime, since: dt.datetime | None):
    """Where a window begins; None for no window. "since enrollment" outside a
    workflow (no ``since``) means no limit."""
    if not window:
        return None
    if window.get("since") == "enrollment":
        return since
    return env_now - window_delta(window)


def window_delta(window: dict) -> dt.timedelta:
    return dt.timedelta(seconds=window["last"] * UNITS[window.get("unit", "days")])


def describe_window(window: dict | None) -> str:
    if not window:
        return ""
    if window.get("since") == "enrollment":
        return " since they entered the workflow"
    last, unit = window["last"], window.get("unit", "days")
    label = unit[:-1] if last == 1 else unit
    return f" in the last {last} {label}" if last != 1 else f" in the last {label}"


def humanize(name: str) -> str:
    """product_viewed -> Product Viewed."""
    return " ".join(
        word.capitalize() for word in str(name).replace("-", "_").split("_") if word
    )


def join(parts: Iterable[str], word: str) -> str:
    parts = list(parts)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + f" {word} " + parts[-1]

"""A small registry through which lower apps reach higher ones.

Ingestion (``apps.events``) must not import segments or workflows, yet a new event has
to reach both. Higher apps register their handlers here in ``AppConfig.ready()``;
lower apps call ``run(...)``. Handlers run in registration order.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Hook names, so a typo fails loudly instead of registering a handler nobody calls.
EVENTS_INGESTED = "events_ingested"  # handler(*, events: list[Event]) in the events job
# handler(*, source_id, target_id) -> dict of {kind: rows moved}, inside the merge
# transaction; every app that points rows at contacts moves them over.
CONTACTS_MERGED = "contacts_merged"
# handler(*, message) -> MessageHold | None, as a claimed message is about to be sent:
# whether what caused it still wants it (its workflow paused or archived, its run
# converted or exited meanwhile). Campaigns cannot import workflows.
MESSAGE_MAY_GO = "message_may_go"

KNOWN_HOOKS = {EVENTS_INGESTED, CONTACTS_MERGED, MESSAGE_MAY_GO}


@dataclass(frozen=True)
class MessageHold:
    """Why a message must not go out now: held (``until`` a later time, tried again
    then) or, with no ``until``, cancelled for good."""

    reason: str
    until: Any = None


_handlers: dict[str, list[Callable[..., Any]]] = defaultdict(list)


def register(name: str, handler: Callable[..., Any]) -> None:
    if name not in KNOWN_HOOKS:
        raise ValueError(f"unknown hook {name!r}; known hooks: {sorted(KNOWN_HOOKS)}")
    if handler not in _handlers[name]:
        _handlers[name].append(handler)


def run(name: str, **kwargs: Any) -> list[Any]:
    """Call every handler of ``name``; returns their results in order."""
    return [handler(**kwargs) for handler in list(_handlers[name])]


def handlers(name: str) -> list[Callable[..., Any]]:
    return list(_handlers[name])

"""Probes for /healthz: each app reports its oldest due-but-unrun work, and its
dead letters (work that failed too often and is set aside until someone retries it).

Core cannot import the apps above it, so they register probes in ``ready()``: a
backlog probe returns (count, oldest due datetime or None), a dead-letter probe a
count.
"""

import datetime as dt
from collections.abc import Callable

BacklogProbe = Callable[[dt.datetime], tuple[int, dt.datetime | None]]

_probes: dict[str, BacklogProbe] = {}


def register_backlog(name: str, probe: BacklogProbe) -> None:
    _probes[name] = probe


def backlog_probes() -> dict[str, BacklogProbe]:
    return dict(_probes)


DeadLetterProbe = Callable[[], int]

_dead_letters: dict[str, DeadLetterProbe] = {}


def register_dead_letters(name: str, probe: DeadLetterProbe) -> None:
    _dead_letters[name] = probe


def dead_letter_probes() -> dict[str, DeadLetterProbe]:
    return dict(_dead_letters)

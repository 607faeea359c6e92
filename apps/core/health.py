"""Backlog probes for /healthz: each app reports its oldest due-but-unrun work.

Core cannot import the apps above it, so they register a probe in ``ready()``:
a function returning (count, oldest due datetime or None).
"""

import datetime as dt
from collections.abc import Callable

BacklogProbe = Callable[[dt.datetime], tuple[int, dt.datetime | None]]

_probes: dict[str, BacklogProbe] = {}


def register_backlog(name: str, probe: BacklogProbe) -> None:
    _probes[name] = probe


def backlog_probes() -> dict[str, BacklogProbe]:
    return dict(_probes)

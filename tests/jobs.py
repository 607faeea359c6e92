"""Jobs for tests that run real workers: importable by the worker processes."""

import time
from pathlib import Path


def hold_the_first_time(marker: str) -> str:
    """The first run marks ``marker`` and holds its worker (to be killed there);
    a later run says it ran."""
    path = Path(marker)
    if not path.exists():
        path.write_text("started")
        time.sleep(60)
    path.write_text("ran again")
    return "ran again"


def noop() -> None:
    """A job that does nothing (for tests of enqueueing itself)."""

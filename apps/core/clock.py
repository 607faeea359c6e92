"""The one clock engine code reads.

Tests and the workflow simulator move time with ``frozen(...)`` / ``advance(...)``
instead of sleeping. Outside those, it is ``django.utils.timezone.now()``.
"""

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator

from django.utils import timezone

_state = threading.local()


def now() -> dt.datetime:
    """The current time, aware and in UTC."""
    frozen_at = getattr(_state, "frozen_at", None)
    return frozen_at if frozen_at is not None else timezone.now()


@contextlib.contextmanager
def frozen(at: dt.datetime) -> Iterator[None]:
    """Stop the clock at ``at`` (aware) for this thread until the block ends."""
    if timezone.is_naive(at):
        raise ValueError("clock.frozen() needs an aware datetime")
    previous = getattr(_state, "frozen_at", None)
    _state.frozen_at = at
    try:
        yield
    finally:
        _state.frozen_at = previous


def advance(delta: dt.timedelta) -> dt.datetime:
    """Move a frozen clock forward; returns the new time."""
    if getattr(_state, "frozen_at", None) is None:
        raise RuntimeError("clock.advance() only works inside clock.frozen()")
    _state.frozen_at = _state.frozen_at + delta
    return _state.frozen_at

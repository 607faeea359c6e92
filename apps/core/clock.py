"""The one clock engine code reads.

Tests move time with ``frozen(...)`` / ``advance(...)`` instead of sleeping. The
frozen time is process-wide (the test's live server thread sees it too). Outside
those, it is ``django.utils.timezone.now()``.
"""

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator

from django.utils import timezone

_lock = threading.Lock()
_frozen_at: dt.datetime | None = None
# The workflow simulator's virtual time: this thread only, so a simulation running in
# a web request never moves anyone else's clock.
_virtual = threading.local()


def now() -> dt.datetime:
    """The current time, aware and in UTC."""
    virtual = getattr(_virtual, "at", None)
    if virtual is not None:
        return virtual
    frozen_at = _frozen_at
    return frozen_at if frozen_at is not None else timezone.now()


@contextlib.contextmanager
def virtual(at: dt.datetime) -> Iterator[None]:
    """Set this thread's clock to ``at`` until the block ends (the simulator)."""
    previous = getattr(_virtual, "at", None)
    _virtual.at = at
    try:
        yield
    finally:
        _virtual.at = previous


def set_virtual(at: dt.datetime) -> None:
    """Move this thread's virtual clock (only inside ``virtual(...)``)."""
    if getattr(_virtual, "at", None) is None:
        raise RuntimeError("clock.set_virtual() only works inside clock.virtual()")
    _virtual.at = at


@contextlib.contextmanager
def frozen(at: dt.datetime) -> Iterator[None]:
    """Stop the clock at ``at`` (aware) until the block ends."""
    global _frozen_at
    if timezone.is_naive(at):
        raise ValueError("clock.frozen() needs an aware datetime")
    with _lock:
        previous, _frozen_at = _frozen_at, at
    try:
        yield
    finally:
        with _lock:
            _frozen_at = previous


def advance(delta: dt.timedelta) -> dt.datetime:
    """Move a frozen clock forward; returns the new time."""
    global _frozen_at
    with _lock:
        if _frozen_at is None:
            raise RuntimeError("clock.advance() only works inside clock.frozen()")
        _frozen_at = _frozen_at + delta
        return _frozen_at

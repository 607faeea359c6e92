import contextlib

import pytest

from apps.core import hooks


@contextlib.contextmanager
def _failing_for(name: str):
    def choke(*, events):
        for event in events:
            if event.name == name:
                raise ValueError(f"cannot handle {event.name} #{event.pk}")

    hooks.register(hooks.EVENTS_INGESTED, choke)
    try:
        yield
    finally:
        hooks._handlers[hooks.EVENTS_INGESTED].remove(choke)


@pytest.fixture
def failing_for():
    """``with failing_for("name"):`` a real EVENTS_INGESTED handler that fails on
    events of that name (as a bug in a segment or workflow handler would)."""
    return _failing_for

"""The workflow a simulation runs as live, for its thread only (as clock.virtual).

Its status and live_since are never written to its row: the simulation's transaction
would hold that row until it ends, and every worker enrolling into the workflow
(which holds the row FOR SHARE, services.workflow_status_held) wait for it. The
enrolling code and the engine ask here instead.
"""

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator

from .models import Workflow

_simulating = threading.local()


@contextlib.contextmanager
def workflow_simulated_live(
    *, workflow: Workflow, since: dt.datetime
) -> Iterator[None]:
    """Until the block ends, this thread's enrolling and engine take ``workflow`` as
    active since ``since``, whatever its row says; so does the instance."""
    previous = getattr(_simulating, "live", None)
    _simulating.live = (workflow.pk, since)
    workflow.status, workflow.live_since = Workflow.Status.ACTIVE, since
    try:
        yield
    finally:
        _simulating.live = previous


def simulated_live(workflow_id: int) -> tuple[str, dt.datetime] | None:
    """(status, live_since) of the workflow if this thread simulates it, else None."""
    live = getattr(_simulating, "live", None)
    if live is None or live[0] != workflow_id:
        return None
    return Workflow.Status.ACTIVE, live[1]


def workflows_as_live_here(workflows: dict[int, Workflow]) -> dict[int, Workflow]:
    """``workflows`` as read from their rows, the one this thread simulates (if
    among them) with its simulated status and live_since."""
    for workflow in workflows.values():
        simulated = simulated_live(workflow.pk)
        if simulated is not None:
            workflow.status, workflow.live_since = simulated
    return workflows

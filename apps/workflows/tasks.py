"""RQ entry points for workflows: ids in, one service call each, nothing else."""

from .engine import enrollments_advance
from .steps.webhook import webhook_deliver
from .trigger_runs import trigger_run_advance


def advance_enrollments(enrollment_ids: list[int]) -> dict[str, int]:
    return enrollments_advance(enrollment_ids=enrollment_ids)


def advance_trigger_run(run_id: int, cursor: int | None = None) -> int:
    # cursor None: a job queued by a release before jobs carried it.
    return trigger_run_advance(run_id=run_id, cursor=cursor)


def deliver_webhook(delivery_id: int) -> str:
    return webhook_deliver(delivery_id=delivery_id)

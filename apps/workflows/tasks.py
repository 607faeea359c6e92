"""RQ entry points for workflows: ids in, one service call each, nothing else."""

from .engine import enrollments_advance
from .steps.webhook import webhook_deliver


def advance_enrollments(enrollment_ids: list[int]) -> dict[str, int]:
    return enrollments_advance(enrollment_ids=enrollment_ids)


def deliver_webhook(delivery_id: int) -> str:
    return webhook_deliver(delivery_id=delivery_id)

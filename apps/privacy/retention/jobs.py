"""RQ entry point for retention: nothing in, one service call."""

from .runs import retention_run


def run_retention() -> str:
    return retention_run().status

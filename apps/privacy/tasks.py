"""RQ entry points: ids in, one service call."""

from .erasure import erasure_run
from .exports import export_build


def erasure_run_job(erasure_id: int) -> str:
    return erasure_run(erasure_id=erasure_id)


def export_build_job(export_id: int) -> str:
    return export_build(export_id=export_id)

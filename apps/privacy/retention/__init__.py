"""Retention: each kind of data is kept for its own number of days (settings
NUDGE_RETAIN_*_DAYS, docs/privacy.md), then deleted by a daily job.

    tick: retention_due -> a day since the last run (or it ran out of time)?
          -> the job, with a stable id
    job:  run_retention -> retention_run: for each kind (kinds.KINDS), batches of
          old rows, each deleted in its own short transaction and counted in the
          run's RetentionRun row
"""

from .kinds import KINDS, Kind
from .runs import retention_due, retention_run

__all__ = ["KINDS", "Kind", "retention_due", "retention_run"]

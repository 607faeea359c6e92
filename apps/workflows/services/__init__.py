"""Writes for workflows: versions, status changes, enrolling, finishing."""

from .enrolling import (
    contact_keys,
    enqueue_advance,
    enroll_manually,
    enrollment_finish,
    enrollment_start,
    enrollments_move_to_current_version,
    reentry_block,
    reentry_blockers,
    why_not_enrolled,
    workflow_status_held,
)
from .status import (
    StatusError,
    workflow_activate,
    workflow_archive,
    workflow_pause,
    workflow_resume,
)
from .versions import (
    DefinitionError,
    diff_definitions,
    workflow_create,
    workflow_save_version,
    workflow_version_create,
)

__all__ = [
    "DefinitionError",
    "StatusError",
    "contact_keys",
    "diff_definitions",
    "enqueue_advance",
    "enroll_manually",
    "enrollment_finish",
    "enrollment_start",
    "enrollments_move_to_current_version",
    "reentry_block",
    "reentry_blockers",
    "why_not_enrolled",
    "workflow_activate",
    "workflow_archive",
    "workflow_create",
    "workflow_pause",
    "workflow_resume",
    "workflow_save_version",
    "workflow_status_held",
    "workflow_version_create",
]

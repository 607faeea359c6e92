"""Step types, one module per family; importing this package registers them all."""

from . import contact, flow, messaging, waits, webhook  # noqa: F401
from .base import STEP_TYPES, Outcome, StepContext, StepType, register_step, step_type

__all__ = [
    "STEP_TYPES",
    "Outcome",
    "StepContext",
    "StepType",
    "register_step",
    "step_type",
]

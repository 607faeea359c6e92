"""The step registry: each step type is a class registered by name.

The engine knows nothing of step types; a Django app adds one with
``register_step(MyStep())`` in its AppConfig.ready().
"""

import abc
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from apps.contacts.models import Contact

from ..models import Enrollment, Step


@dataclass
class StepContext:
    """What a step runs with. The engine advances a job's enrollments together and
    shares one ``contact`` instance among a contact's enrollments, so a step that
    changes the contact's row changes ``contact`` too."""

    enrollment: Enrollment
    step: Step
    contact: Contact
    settings: dict  # the version's workflow-level settings (goal, caps, quiet hours)
    now: dt.datetime
    resuming: bool = False  # True when a wait is over (or its event arrived)


@dataclass
class Outcome:
    """What running a step decided.

    ``outlet`` names the way on ("next", "yes", "timed_out", ...); ``None`` means stay
    on this step: wait until ``wait_until`` and/or for ``await_event``. ``finish`` ends
    the run with that status (converted / exited / completed).
    """

    outcome: str
    outlet: str | None = "next"
    wait_until: dt.datetime | None = None
    await_event: str = ""
    await_key: str = ""
    finish: str = ""
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class StepType(abc.ABC):
    name: ClassVar[str]
    label: ClassVar[str]
    outlets: ClassVar[tuple[str, ...]] = ("next",)
    # Waits may loop back on themselves; a cycle through no wait would spin forever.
    waits: ClassVar[bool] = False
    # Steps that write rows run in a savepoint of their own; the rest need none.
    writes: ClassVar[bool] = True

    def outlet_names(self, config: dict) -> tuple[str, ...]:
        return self.outlets

    @abc.abstractmethod
    def validate(self, config: dict, where: str) -> list[str]:
        """Errors in ``config``, each starting with ``where``."""

    @abc.abstractmethod
    def run(self, ctx: StepContext) -> Outcome:
        """Do the step (idempotent: it may run again after a crash)."""

    def resume(self, ctx: StepContext) -> Outcome:
        """A wait is over: by default, run again."""
        return self.run(ctx)

    @abc.abstractmethod
    def describe(self, config: dict) -> str:
        """The step in a few words, for the diagram and the trace."""


STEP_TYPES: dict[str, StepType] = {}


def register_step(step_type: StepType) -> StepType:
    STEP_TYPES[step_type.name] = step_type
    return step_type


def step_type(name: str) -> StepType:
    return STEP_TYPES[name]


def duration(config: Any) -> dt.timedelta | None:
    """{"days": 1, "hours": 2, "minutes": 30, "seconds": 0} -> timedelta."""
    if not isinstance(config, dict):
        return None
    units = {k: config.get(k, 0) for k in ("days", "hours", "minutes", "seconds")}
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
        for v in units.values()
    ):
        return None
    delta = dt.timedelta(**units)
    return delta if delta.total_seconds() > 0 else None


def describe_duration(config: dict) -> str:
    parts = []
    for unit in ("days", "hours", "minutes", "seconds"):
        value = config.get(unit)
        if value:
            parts.append(f"{value:g} {unit[:-1] if value == 1 else unit}")
    return " ".join(parts) or "0 seconds"

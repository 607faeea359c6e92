import os
import signal

from django.apps import AppConfig

from apps.core import hooks

from . import KILLS_ITS_WORKER


def _kill_on_poison(*, events) -> None:
    if any(event.name == KILLS_ITS_WORKER for event in events):
        # no cleanup, no rollback sent: the connection simply goes away
        os.kill(os.getpid(), signal.SIGKILL)


class PoisonConfig(AppConfig):
    name = "tests.poison"
    label = "nudge_test_poison"

    def ready(self) -> None:
        hooks.register(hooks.EVENTS_INGESTED, _kill_on_poison)

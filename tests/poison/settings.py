"""Nudge's settings plus the poison app (tests/poison), for worker processes only."""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.poison"]

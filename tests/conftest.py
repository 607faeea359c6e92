"""The live servers of tests/fixtures.py, here so that they win over pytest-django's
own ``live_server`` (a fixture in a conftest overrides a plugin's; the ``-p`` plugin
alone loses to pytest-django's, which registers after it)."""

from tests.fixtures import django_live_server, live_server

__all__ = ["django_live_server", "live_server"]

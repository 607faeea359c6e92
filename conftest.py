"""Fixtures that must win over a plugin's of the same name.

tests/fixtures.py is loaded with -p, before pytest-django's own plugin, whose
``live_server`` would then be the one tests get: a server of Django alone, not the
tracking door in front of it that config/wsgi.py serves. A conftest's fixtures win
over every plugin's.
"""

from tests.fixtures import django_live_server, live_server

__all__ = ["django_live_server", "live_server"]

"""WSGI entry point: the tracking calls' own door (apps/events/wsgi.py) in front of
Django, which serves everything else."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from apps.core.checks import refuse_to_serve_insecurely  # noqa: E402

refuse_to_serve_insecurely()  # no management command ran the checks for us

from apps.events.wsgi import TrackingDoor  # noqa: E402  (needs Django set up)

application = TrackingDoor(django_application)

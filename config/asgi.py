import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

from apps.core.checks import refuse_to_serve_insecurely  # noqa: E402

refuse_to_serve_insecurely()  # no management command ran the checks for us

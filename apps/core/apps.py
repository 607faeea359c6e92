from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Nudge core"

    def ready(self):
        from django.test.signals import setting_changed

        from . import checks
        from .jobs import forget_connections

        setting_changed.connect(forget_connections)
        checks.register()

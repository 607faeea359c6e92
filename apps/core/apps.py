from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Nudge core"

    def ready(self):
        from django.db.models.signals import post_migrate
        from django.test.signals import setting_changed

        from . import checks
        from .jobs import forget_connections

        setting_changed.connect(forget_connections)
        checks.register()
        post_migrate.connect(_roles_sync, dispatch_uid="nudge-roles")


def _roles_sync(sender, apps=None, **kwargs) -> None:
    # After every app's permissions exist: post_migrate is sent once per installed
    # app, in order, after their permissions are made, so at the last app's they
    # all are. Also after a flush (tests), which sends no apps.
    from django.apps import apps as installed

    if sender.name != list(installed.get_app_configs())[-1].name:
        return
    from .roles import roles_sync

    roles_sync(apps or installed)

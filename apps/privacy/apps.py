from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """The person's rights (export, erasure) and the data's lifecycle (retention).

    It sits above every other app: it reads and deletes their rows, none of them
    imports it."""

    name = "apps.privacy"
    label = "privacy"
    verbose_name = "Privacy"

    def ready(self) -> None:
        from apps.contacts.panels import Panel, register_panel
        from apps.core.scheduler import register_tick_task

        from . import retention_admin  # noqa: F401  (registers its admin)
        from .admin import privacy_panel
        from .erasure import erasures_resume
        from .exports import exports_tick
        from .retention import retention_due

        register_tick_task("erasures", erasures_resume)
        register_tick_task("exports", exports_tick)
        register_tick_task("privacy-retention", retention_due)
        register_panel(
            Panel(key="privacy", title="Privacy", render=privacy_panel, order=200)
        )

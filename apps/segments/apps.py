from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "apps.segments"
    label = "segments"

    def ready(self) -> None:
        from apps.contacts.panels import Panel, register_panel
        from apps.core import hooks
        from apps.core.scheduler import register_tick_task

        from .admin import segments_panel
        from .handlers import on_events_ingested
        from .services import memberships_move_to_contact, segments_refresh_due

        hooks.register(hooks.EVENTS_INGESTED, on_events_ingested)
        hooks.register(hooks.CONTACTS_MERGED, memberships_move_to_contact)
        register_tick_task("segments", segments_refresh_due)
        register_panel(
            Panel(key="segments", title="Segments", render=segments_panel, order=20)
        )

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "apps.events"
    label = "events"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled
        from django.core import checks

        from apps.contacts.panels import Panel, register_panel
        from apps.core import hooks
        from apps.core.health import register_backlog, register_dead_letters
        from apps.core.scheduler import register_tick_task

        from .admin import timeline_panel
        from .clients import check_client_limits
        from .cors import origin_allowed_by_a_source
        from .partitions import events_partitions_due
        from .processing import dead_lettered_count, events_reenqueue_unprocessed
        from .selectors import unprocessed_backlog
        from .services import events_move_to_contact
        from .storage import event_keys_prune

        hooks.register(hooks.CONTACTS_MERGED, events_move_to_contact)
        register_panel(
            Panel(key="timeline", title="Timeline", render=timeline_panel, order=10)
        )
        register_tick_task("events", events_reenqueue_unprocessed)
        register_tick_task("event-partitions", events_partitions_due)
        register_tick_task("event-keys", event_keys_prune)
        register_backlog("events", unprocessed_backlog)
        register_dead_letters("events", dead_lettered_count)
        checks.register(check_client_limits)
        check_request_enabled.connect(
            origin_allowed_by_a_source, dispatch_uid="nudge-cors"
        )

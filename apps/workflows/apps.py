from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "apps.workflows"
    label = "workflows"

    def ready(self) -> None:
        from apps.contacts.panels import Panel, register_panel
        from apps.core import hooks
        from apps.core.health import register_backlog
        from apps.core.scheduler import register_tick_task

        from . import steps  # noqa: F401  (registers the step types)
        from .admin import enrollments_panel
        from .handlers import enrollments_due, on_events_ingested, webhooks_due
        from .merging import enrollments_move_to_contact
        from .selectors import due_backlog, message_may_go, trigger_runs_backlog
        from .trigger_runs import time_triggers_due, trigger_runs_expire

        hooks.register(hooks.EVENTS_INGESTED, on_events_ingested)
        hooks.register(hooks.CONTACTS_MERGED, enrollments_move_to_contact)
        hooks.register(hooks.MESSAGE_MAY_GO, message_may_go)
        register_tick_task("workflows", enrollments_due)
        register_tick_task("workflow-triggers", time_triggers_due)
        register_tick_task("webhooks", webhooks_due)
        register_tick_task("workflow-trigger-runs", trigger_runs_expire)
        register_backlog("workflows", due_backlog)
        register_backlog("workflow-trigger-runs", trigger_runs_backlog)
        register_panel(
            Panel(
                key="workflows", title="Workflows", render=enrollments_panel, order=40
            )
        )

from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "apps.contacts"
    label = "contacts"

    def ready(self) -> None:
        from .consent_admin import consent_history_panel
        from .panels import Panel, register_panel

        register_panel(
            Panel(
                key="consent_history",
                title="Consent history",
                render=consent_history_panel,
                order=7,
            )
        )

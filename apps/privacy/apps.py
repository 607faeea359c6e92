from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """The person's rights (export, erasure) and the data's lifecycle (retention).

    It sits above every other app: it reads and deletes their rows, none of them
    imports it."""

    name = "apps.privacy"
    label = "privacy"
    verbose_name = "Privacy"

"""The Viewer, Marketer and Admin roles (apps/core/roles.py).

It syncs with the roles as defined now, not as they were when it was written, on
purpose: every ``migrate`` does the same afterwards (post_migrate), and only adds."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from apps.core.roles import roles_sync


def create_roles(apps, schema_editor):
    # Permissions are made after all migrations (post_migrate); the roles need
    # them now, on a new database too.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_signing_secret"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("contacts", "0002_suppressed_addresses"),
        ("events", "0005_attempt_counted_before_it_starts"),
        ("segments", "0001_initial"),
        ("campaigns", "0004_message_cancelled_and_address"),
        ("workflows", "0005_enrollment_steps_taken"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]

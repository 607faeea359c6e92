from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from apps.campaigns.demo import demo_campaigns, demo_messages, demo_templates
from apps.events.demo import demo_history, demo_newsletter_source, demo_source
from apps.workflows.demo import demo_workflows

DEMO_USER = "admin"
DEMO_PASSWORD = "admin"  # noqa: S105 - the documented demo login


class Command(BaseCommand):
    help = "Create the demo admin (admin / admin) and demo data; safe to run twice."

    def handle(self, *args, **options):
        User = get_user_model()
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "admin@example.com", DEMO_PASSWORD)
            self.stdout.write(f"Created superuser {DEMO_USER} / {DEMO_PASSWORD}")
        source = demo_source()
        events = demo_history()
        # The shop's newsletter box: sign-ups confirm by email first.
        demo_newsletter_source()
        emails = demo_messages()
        demo_templates()
        if demo_campaigns():
            self.stdout.write(
                "Campaigns: November newsletter (demo), sent, with its report; "
                "December newsletter (demo), a draft."
            )
        if demo_workflows():
            self.stdout.write(
                "Active workflows: Cart abandonment (demo), Welcome (demo)."
            )
        self.stdout.write(
            f"Demo source {source.name!r} (key {source.public_key}); "
            f"{events} demo events and {emails} demo emails added. Sent mail: "
            "admin > Email > Messages, and the files in var/mail/."
        )

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.secrets import stored_secret_rotate

from ...steps.webhook import SECRET_NAME, SECRET_PREFIX, webhook_signing_secret


class Command(BaseCommand):
    help = (
        "Print the secret that signs webhook steps' requests (X-Nudge-Signature), "
        "for configuring receivers; --rotate replaces a generated one."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="generate a new secret: requests signed with the old one stop "
            "verifying, so give receivers the new one",
        )

    def handle(self, *args, **options):
        from_environment = bool(settings.NUDGE_WEBHOOK_SECRET)
        if options["rotate"]:
            if from_environment:
                raise CommandError(
                    "NUDGE_WEBHOOK_SECRET is set in the environment: change it there"
                )
            secret = stored_secret_rotate(name=SECRET_NAME, prefix=SECRET_PREFIX)
        else:
            secret = webhook_signing_secret()
        where = "NUDGE_WEBHOOK_SECRET" if from_environment else "stored in the database"
        self.stderr.write(f"webhook signing secret ({where}):")
        self.stdout.write(secret)

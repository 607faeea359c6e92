from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator

from apps.events.models import Source
from apps.events.services import source_create


class Command(BaseCommand):
    help = "Create an event source and print its write key on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--server",
            action="store_true",
            help="a server source with a secret key (default: a browser source)",
        )
        parser.add_argument(
            "--origin",
            action="append",
            default=[],
            metavar="URL",
            help="an origin browsers may send from (repeatable)",
        )

    def handle(self, *args, name: str, server: bool, origin: list[str], **options):
        if Source.objects.filter(name=name).exists():
            raise CommandError(f"a source named {name!r} already exists")
        validate = URLValidator(schemes=["http", "https"])
        origins = []
        for url in origin:
            try:
                validate(url)
            except Exception:
                raise CommandError(
                    f"--origin {url!r} is not an http(s) origin"
                ) from None
            origins.append(url.rstrip("/"))
        kind = Source.Kind.SERVER if server else Source.Kind.BROWSER
        source, key = source_create(name=name, kind=kind, allowed_origins=origins)
        self.stdout.write(
            f"Created {source.get_kind_display()} source {source.name!r}."
        )
        if server:
            self.stdout.write(
                "The key is stored hashed: keep it now, it is not shown again."
            )
        self.stdout.write(key)

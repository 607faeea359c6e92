import json

from django.core.management.base import BaseCommand, CommandError

from apps.workflows.portability import ImportProblem, workflow_import


class Command(BaseCommand):
    help = "Import a workflow exported as JSON; all or nothing, naming what is missing."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="if a workflow of that name exists, save this as its new version",
        )

    def handle(self, *args, file, replace, **options):
        try:
            with open(file, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            workflow = workflow_import(data, replace=replace)
        except ImportProblem as exc:
            raise CommandError(
                "import refused:\n- " + "\n- ".join(exc.errors)
            ) from None
        self.stdout.write(
            f"imported “{workflow.name}” as version {workflow.current_version.number} "
            f"({workflow.status})"
        )

import json

from django.core.management.base import BaseCommand, CommandError

from apps.workflows.models import Workflow
from apps.workflows.portability import workflow_export


class Command(BaseCommand):
    help = "Write a workflow (with its email templates) as JSON, for version control."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the workflow's name")
        parser.add_argument("-o", "--output", help="file to write (default: stdout)")

    def handle(self, *args, name, output=None, **options):
        workflow = (
            Workflow.objects.filter(name=name).select_related("current_version").first()
        )
        if workflow is None or workflow.current_version is None:
            raise CommandError(f"no workflow named {name!r}")
        text = (
            json.dumps(workflow_export(workflow), indent=2, ensure_ascii=False) + "\n"
        )
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
            self.stdout.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")

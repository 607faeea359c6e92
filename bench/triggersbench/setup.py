"""Set-up: the app's environment, Django in this process, and the data (a server
source, the contacts, the schedule-triggered workflow in draft)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from benchcommon.databases import app_env as common_app_env
from benchcommon.databases import django_migrate
from benchcommon.paths import ROOT

from triggersbench.config import WORKFLOW, WORKFLOW_NAME, Config

# Contacts per INSERT while loading them.
LOAD_BATCH = 5_000


def app_env(cfg: Config) -> dict[str, str]:
    """The environment of every app process (server, workers, scheduler)."""
    level = os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING")
    env = common_app_env(cfg, level)
    env.update(
        RQ_LOG_LEVEL=level,
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    )
    return env


def setup_django(cfg: Config) -> None:
    os.environ.update(app_env(cfg))
    os.environ["LOG_LEVEL"] = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    django_migrate()


@dataclass
class Data:
    key: str
    workflow_id: int
    contact_ids: tuple[int, int]  # the first and last


def user_id(i: int) -> str:
    return f"bench-{i}"


def create_data(cfg: Config) -> Data:
    from django.db import connection

    from apps.contacts.models import Contact
    from apps.events.models import Source
    from apps.events.services import source_create
    from apps.workflows.services import workflow_create

    _source, key = source_create(name="bench-triggers", kind=Source.Kind.SERVER)
    workflow = workflow_create(name=WORKFLOW_NAME, definition=WORKFLOW)
    for start in range(0, cfg.contacts, LOAD_BATCH):
        Contact.objects.bulk_create(
            Contact(email=f"{user_id(i)}@bench.example", external_id=user_id(i))
            for i in range(start, min(start + LOAD_BATCH, cfg.contacts))
        )
    with connection.cursor() as cursor:
        # Autovacuum may be off here (DESIGN.md): plans must not guess.
        cursor.execute("ANALYZE")
        cursor.execute("SELECT min(id), max(id) FROM contacts_contact")
        first, last = cursor.fetchone()
    return Data(key=key, workflow_id=workflow.pk, contact_ids=(first, last))

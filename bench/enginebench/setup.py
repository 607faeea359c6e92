"""Set-up: the app's environment, Django in this process, and the data (a source,
the template, the workflows, the contacts)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from benchcommon.databases import app_env as common_app_env
from benchcommon.databases import django_migrate
from benchcommon.paths import ROOT

from enginebench.config import BACKEND, ENGINE_WORKFLOW, PROBE_WORKFLOW, Config


def app_env(cfg: Config, record_path: Path) -> dict[str, str]:
    """The environment of every app process (server, workers, scheduler)."""
    level = os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING")
    env = common_app_env(cfg, level)
    env.update(
        RQ_LOG_LEVEL=level,
        EMAIL_BACKEND=BACKEND,
        BENCH_RECORD_PATH=str(record_path),
        # ``bench._backend`` must be importable by the workers.
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    )
    return env


def setup_django(cfg: Config, record_path: Path) -> None:
    """Django in this process, with the same settings as the app's processes."""
    os.environ.update(app_env(cfg, record_path))
    os.environ["LOG_LEVEL"] = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    django_migrate()


@dataclass
class Data:
    key: str
    probe_workflow_id: int
    engine_workflow_id: int
    floor_workflow_id: int
    probes: int
    warmups: int


def probe_email(i: int) -> str:
    return f"probe-{i}@bench.example"


def warm_email(i: int) -> str:
    return f"warm-{i}@bench.example"


def create_data(cfg: Config, probes: int, warmups: int) -> Data:
    from apps.campaigns.models import EmailTemplate
    from apps.contacts.models import Contact
    from apps.events.models import Source
    from apps.events.services import source_create
    from apps.workflows.services import workflow_activate, workflow_create

    _source, key = source_create(name="bench-engine", kind=Source.Kind.SERVER)
    EmailTemplate.objects.create(
        name="Bench", subject="Hi {{ contact.first_name }}", html_body="<p>Hi</p>"
    )
    ids = {}
    for name, definition in (
        ("bench probe", PROBE_WORKFLOW),
        ("bench engine", ENGINE_WORKFLOW),
        ("bench engine floor", ENGINE_WORKFLOW),
    ):
        workflow = workflow_create(name=name, definition=definition)
        workflow_activate(workflow=workflow)
        ids[name] = workflow.pk

    rng = random.Random(cfg.seed)
    plans = ("free", "pro", "enterprise")
    contacts = []

    def person(kind: str, i: int, email: str) -> Contact:
        return Contact(
            email=email,
            external_id=f"{kind}-{i}",
            first_name=f"{kind.title()}{i}",
            attributes={"plan": rng.choice(plans)},
        )

    contacts += [person("probe", i, probe_email(i)) for i in range(probes)]
    contacts += [person("warm", i, warm_email(i)) for i in range(warmups)]
    contacts += [
        person("load", i, f"load-{i}@bench.example") for i in range(cfg.load_contacts)
    ]
    engine_contacts = max(
        cfg.enrollments, cfg.inprocess_enrollments, cfg.profile_enrollments
    )
    contacts += [
        person("engine", i, f"engine-{i}@bench.example") for i in range(engine_contacts)
    ]
    Contact.objects.bulk_create(contacts, batch_size=2_000)
    return Data(
        key=key,
        probe_workflow_id=ids["bench probe"],
        engine_workflow_id=ids["bench engine"],
        floor_workflow_id=ids["bench engine floor"],
        probes=probes,
        warmups=warmups,
    )

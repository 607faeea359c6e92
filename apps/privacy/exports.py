"""Exporting a person's data (GDPR art. 15 and 20): one ZIP of JSON Lines files.

The sections are found by walking the models: every model with a foreign key to
Contact, and those reached through one of its rows (a run's step runs and
webhooks, a message's ESP events). A model added later is exported without
touching this file. The archive is built in the background, a section at a time
with progress on the export row, streamed row by row (a contact with a million
events does not fill a worker's memory), and kept for NUDGE_EXPORT_HOURS.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import FileResponse

from apps.contacts.models import Contact
from apps.core import clock, jobs

from .models import DataExport

logger = logging.getLogger(__name__)

# Archive files are named FILE_PREFIX<contact id>-<random>.zip.
FILE_PREFIX = "nudge-export-"
# Rows read per query while writing a section: a few MB of events at most.
CHUNK = 2_000
# Models that are not the person's data: the export and erasure records themselves.
NOT_EXPORTED = {"privacy.dataexport", "privacy.erasure"}
# Rows reached through a row of a model that points at the contact:
# (model label, lookup from it to the contact).
THROUGH = [
    ("workflows.steprun", "enrollment__contact"),
    ("workflows.webhookdelivery", "enrollment__contact"),
    ("campaigns.espevent", "message__contact"),
]


@dataclass(frozen=True)
class Section:
    name: str  # the file in the archive, e.g. "events.event.jsonl"
    rows: QuerySet


def export_dir() -> Path:
    return Path(settings.NUDGE_EXPORT_DIR)


def export_path(file_name: str) -> Path:
    # file_name is ours (a random token), never from a request.
    return export_dir() / Path(file_name).name


def export_files_of(contact_id: int) -> list[Path]:
    """Every archive file of this contact's, ready or being written."""
    folder = export_dir()
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{FILE_PREFIX}{contact_id}-*.zip"))


class ExportUnavailable(Exception):
    """The export cannot be downloaded: its message says why."""


def export_archive(export: DataExport) -> FileResponse:
    """The ready export's archive as a download; ExportUnavailable if it is not
    ready, has expired, or its file is gone."""
    if (
        export.status != DataExport.Status.READY
        or not export.file_name
        or (export.expires_at and export.expires_at <= clock.now())
    ):
        raise ExportUnavailable(f"export {export.pk} is {export.status}, not ready")
    try:
        handle = export_path(export.file_name).open("rb")
    except FileNotFoundError as exc:
        raise ExportUnavailable(f"export {export.pk}'s file is gone") from exc
    return FileResponse(
        handle, as_attachment=True, filename=f"nudge-contact-{export.contact_id}.zip"
    )


def export_request(*, contact: Contact, requested_by: str) -> DataExport:
    """Queue an export of everything Nudge holds on ``contact``."""
    export = DataExport.objects.create(
        contact=contact,
        requested_by=requested_by[:200],
        requested_at=clock.now(),
        sections_total=len(sections(contact)),
    )
    _enqueue(export.pk)
    logger.info(
        "export requested", extra={"export_id": export.pk, "contact_id": contact.pk}
    )
    return export


def _enqueue(export_id: int) -> None:
    from .tasks import export_build_job

    jobs.enqueue(export_build_job, export_id, job_id=f"export-{export_id}")


def sections(contact: Contact) -> list[Section]:
    """Every table's rows about ``contact``, the contact row first."""
    found = [Section("contacts.contact.jsonl", Contact.objects.filter(pk=contact.pk))]
    for model in apps.get_models():
        label = model._meta.label_lower
        if label in NOT_EXPORTED:
            continue
        for field in model._meta.concrete_fields:
            if isinstance(field, models.ForeignKey) and field.related_model is Contact:
                rows = model._default_manager.filter(**{field.name: contact})
                found.append(Section(_file_name(label, field, model), rows))
    for label, lookup in THROUGH:
        model = apps.get_model(label)
        found.append(
            Section(
                f"{label}.jsonl", model._default_manager.filter(**{lookup: contact})
            )
        )
    return found


def _file_name(label: str, field: models.Field, model) -> str:
    pointing = [
        f
        for f in model._meta.concrete_fields
        if isinstance(f, models.ForeignKey) and f.related_model is Contact
    ]
    return f"{label}.jsonl" if len(pointing) == 1 else f"{label}.{field.name}.jsonl"


def export_build(*, export_id: int) -> str:
    """Build the archive (again from the start, if a worker died building it);
    returns the export's status."""
    with transaction.atomic():
        export = DataExport.objects.select_for_update().filter(pk=export_id).first()
        if export is None:
            return DataExport.Status.EXPIRED  # erased or deleted since it was asked
        if export.status not in (DataExport.Status.QUEUED, DataExport.Status.BUILDING):
            return export.status
        export.status = DataExport.Status.BUILDING
        export.sections_done = export.rows = 0
        export.save(update_fields=["status", "sections_done", "rows"])
    contact = export.contact
    file_name = f"{FILE_PREFIX}{contact.pk}-{secrets.token_urlsafe(16)}.zip"
    path = export_path(file_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        size = _write(export, contact, path)
    except Exception as exc:
        path.unlink(missing_ok=True)
        DataExport.objects.filter(pk=export_id).update(
            status=DataExport.Status.FAILED, error=repr(exc)[:2000]
        )
        logger.exception("export failed", extra={"export_id": export_id})
        return DataExport.Status.FAILED
    now = clock.now()
    hours = settings.NUDGE_EXPORT_HOURS
    ready = DataExport.objects.filter(
        pk=export_id, status=DataExport.Status.BUILDING
    ).update(
        status=DataExport.Status.READY,
        file_name=file_name,
        size_bytes=size,
        finished_at=now,
        expires_at=now + dt.timedelta(hours=hours),
    )
    if not ready:
        # Erased (or deleted) while it was written: what it holds must not stay.
        path.unlink(missing_ok=True)
        return DataExport.Status.EXPIRED
    logger.info("export ready", extra={"export_id": export_id, "bytes": size})
    return DataExport.Status.READY


def _write(export: DataExport, contact: Contact, path: Path) -> int:
    found = sections(contact)
    DataExport.objects.filter(pk=export.pk).update(sections_total=len(found))
    rows = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("README.txt", "w") as readme:
            readme.write(_readme(contact, found).encode())
        for done, section in enumerate(found, start=1):
            with archive.open(section.name, "w") as out:
                for row in _rows(section.rows):
                    out.write(json.dumps(row, cls=DjangoJSONEncoder).encode() + b"\n")
                    rows += 1
            DataExport.objects.filter(pk=export.pk).update(
                sections_done=done, rows=rows
            )
    return path.stat().st_size


def _rows(queryset: QuerySet) -> Iterator[dict[str, Any]]:
    """Every concrete field of each row, in primary-key order, a chunk at a time."""
    names = [f.attname for f in queryset.model._meta.concrete_fields]
    last = None
    while True:
        chunk = queryset.order_by("pk")
        if last is not None:
            chunk = chunk.filter(pk__gt=last)
        page = list(chunk.values(*names)[:CHUNK])
        yield from page
        if len(page) < CHUNK:
            return
        last = page[-1]["id"]


def _readme(contact: Contact, found: list[Section]) -> str:
    lines = [
        f"Everything Nudge held on contact #{contact.pk} on "
        f"{clock.now():%Y-%m-%d %H:%M} UTC.",
        "Each .jsonl file is one table: one JSON object a line, every column.",
        "Ids (segment_id, topic_id, workflow_id, ...) refer to the site's own setup.",
        "",
        *[f"- {s.name}" for s in found],
    ]
    return "\n".join(lines) + "\n"


def exports_tick(*, now: dt.datetime) -> int:
    """Tick task: build again what a dead worker left, and expire old archives."""
    done = 0
    for export_id in DataExport.objects.filter(
        status__in=[DataExport.Status.QUEUED, DataExport.Status.BUILDING]
    ).values_list("pk", flat=True):
        _enqueue(export_id)
        done += 1
    for export in DataExport.objects.filter(
        status=DataExport.Status.READY, expires_at__lte=now
    ):
        if export.file_name:
            export_path(export.file_name).unlink(missing_ok=True)
        DataExport.objects.filter(pk=export.pk).update(
            status=DataExport.Status.EXPIRED, file_name=""
        )
        done += 1
    return done + _orphans_delete()


def _orphans_delete() -> int:
    """Archive files no export row keeps: their contact was merged away, purged
    or deleted (the row went with it, the file did not)."""
    folder = export_dir()
    if not folder.is_dir():
        return 0
    kept = set(
        DataExport.objects.filter(status=DataExport.Status.READY).values_list(
            "file_name", flat=True
        )
    )
    building = {
        str(pk)
        for pk in DataExport.objects.filter(
            status__in=[DataExport.Status.QUEUED, DataExport.Status.BUILDING]
        ).values_list("contact_id", flat=True)
    }
    deleted = 0
    for path in folder.glob(f"{FILE_PREFIX}*.zip"):
        contact_id = path.name[len(FILE_PREFIX) :].split("-", 1)[0]
        if path.name not in kept and contact_id not in building:
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted

"""A person's export and erasure over the API: only the secret keys of server
sources allowed privacy requests (Source.privacy_requests)."""

from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from apps.campaigns.api import ContactKeys, contact_named
from apps.events.problems import ERROR_RESPONSES
from apps.events.schemas import Problem
from apps.segments.api import ServerKey, authenticate_server_key

from .erasure import ErasureRefused, erasure_request
from .exports import ExportUnavailable, export_archive, export_request
from .models import DataExport, Erasure

router = Router(tags=["privacy"])


def authenticate_privacy_key(request: HttpRequest):
    source = authenticate_server_key(request)
    if not source.privacy_requests:
        raise HttpError(
            403,
            "this key may not export or erase personal data: an admin ticks "
            "'privacy requests' on its source",
        )
    return source


class PrivacyKey(ServerKey):
    description = (
        "The secret write key of a server source with 'privacy requests' ticked, "
        "as the user name, with an empty password (any other key gets 403)."
    )


privacy_key = PrivacyKey(authenticate_privacy_key)


class ExportOut(Schema):
    id: int
    contact_id: int
    status: str = Field(description="queued, building, ready, failed or expired")
    sections_done: int
    sections_total: int
    rows: int
    size_bytes: int
    expires_at: str | None = Field(description="when a ready archive is deleted")
    archive_url: str | None = Field(
        description="GET it (the same privacy key) when ready"
    )


class EraseIn(ContactKeys):
    reason: str = Field(
        default="",
        max_length=300,
        description="who asked and how (kept; no personal data)",
    )


class ErasureOut(Schema):
    id: int
    contact_id: int
    status: str = Field(
        description="done, or waiting: nothing more is sent and it finishes once "
        "the email being handed to the ESP is out"
    )
    removed: dict


@router.post(
    "/privacy/exports",
    auth=privacy_key,
    response={202: ExportOut, **ERROR_RESPONSES, 404: Problem},
    summary="Export everything held on a person (built in the background)",
)
def create_export(request: HttpRequest, payload: ContactKeys):
    contact = contact_named(payload)
    if contact.erased_at:
        raise HttpError(404, "that contact was erased")
    export = export_request(
        contact=contact, requested_by=f"API key of {request.auth.name}"
    )
    return Status(202, _export_out(request, export))


@router.get(
    "/privacy/exports/{export_id}",
    auth=privacy_key,
    response={200: ExportOut, **ERROR_RESPONSES, 404: Problem},
    summary="An export's progress, and its archive's address once ready",
)
def get_export(request: HttpRequest, export_id: int):
    return _export_out(request, _export(export_id))


@router.get(
    "/privacy/exports/{export_id}/archive",
    auth=privacy_key,
    response={200: None, **ERROR_RESPONSES, 404: Problem},
    summary="Download a ready export (a ZIP of JSON Lines files)",
)
def get_archive(request: HttpRequest, export_id: int):
    try:
        return export_archive(_export(export_id))
    except ExportUnavailable as exc:
        raise HttpError(404, str(exc)) from exc


@router.post(
    "/privacy/erasures",
    auth=privacy_key,
    response={
        200: ErasureOut,
        202: ErasureOut,
        **ERROR_RESPONSES,
        404: Problem,
        409: Problem,
    },
    summary="Erase a person's personal data everywhere (cannot be undone)",
)
def create_erasure(request: HttpRequest, payload: EraseIn):
    contact = contact_named(payload)
    try:
        erasure = erasure_request(
            contact=contact,
            requested_by=f"API key of {request.auth.name}",
            reason=payload.reason,
        )
    except ErasureRefused as exc:
        raise HttpError(409, str(exc)) from exc
    status = 200 if erasure.status == Erasure.Status.DONE else 202
    return Status(status, _erasure_out(erasure))


@router.get(
    "/privacy/erasures/{erasure_id}",
    auth=privacy_key,
    response={200: ErasureOut, **ERROR_RESPONSES, 404: Problem},
    summary="Whether an erasure is done",
)
def get_erasure(request: HttpRequest, erasure_id: int):
    erasure = Erasure.objects.filter(pk=erasure_id).first()
    if erasure is None:
        raise HttpError(404, f"no erasure {erasure_id}")
    return _erasure_out(erasure)


def _export(export_id: int) -> DataExport:
    export = DataExport.objects.filter(pk=export_id).first()
    if export is None:
        raise HttpError(404, f"no export {export_id}")
    return export


def _export_out(request: HttpRequest, export: DataExport) -> dict:
    ready = export.status == DataExport.Status.READY
    return {
        "id": export.pk,
        "contact_id": export.contact_id,
        "status": export.status,
        "sections_done": export.sections_done,
        "sections_total": export.sections_total,
        "rows": export.rows,
        "size_bytes": export.size_bytes,
        "expires_at": export.expires_at.isoformat() if export.expires_at else None,
        "archive_url": request.build_absolute_uri(
            f"/api/v1/privacy/exports/{export.pk}/archive"
        )
        if ready
        else None,
    }


def _erasure_out(erasure: Erasure) -> dict:
    return {
        "id": erasure.pk,
        "contact_id": erasure.contact_id,
        "status": erasure.status,
        "removed": erasure.removed,
    }

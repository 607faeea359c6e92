"""Manual / API enrolment (server keys only)."""

from django.http import HttpRequest
from ninja import Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from apps.contacts.models import Contact
from apps.events.problems import ERROR_RESPONSES
from apps.events.schemas import Problem
from apps.segments.api import server_key
from apps.segments.services import contacts_by_keys

from .models import Workflow
from .services import enroll_manually

router = Router(tags=["workflows"])


class EnrollIn(Schema):
    contacts: list[str] = Field(
        min_length=1, max_length=1000, description="emails or user ids"
    )


class EnrollOut(Schema):
    enrolled: list[int]
    skipped: dict[str, str]
    unmatched: list[str]


@router.post(
    "/workflows/{workflow_id}/enroll",
    auth=server_key,
    response={
        200: EnrollOut,
        **ERROR_RESPONSES,
        404: Problem,  # no such workflow
        409: Problem,  # the workflow is not active
    },
    summary="Enroll contacts (by email or user id) in a workflow",
)
def enroll(request: HttpRequest, workflow_id: int, payload: EnrollIn):
    workflow = (
        Workflow.objects.filter(pk=workflow_id)
        .select_related("current_version")
        .first()
    )
    if workflow is None:
        raise HttpError(404, f"no workflow {workflow_id}")
    if workflow.status != Workflow.Status.ACTIVE:
        raise HttpError(409, f"the workflow is {workflow.status}, not active")
    found = contacts_by_keys(payload.contacts)
    contacts = list(Contact.objects.filter(pk__in=set(found.values())))
    result = enroll_manually(workflow=workflow, contacts=contacts)
    unmatched = [k for k in payload.contacts if k.strip() not in found]
    return {**result, "unmatched": unmatched}

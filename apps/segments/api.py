"""Static list membership over the API (server keys only)."""

from django.http import HttpRequest
from ninja import Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from apps.events.api import KeyAuth
from apps.events.auth import authenticate_write_key
from apps.events.problems import ERROR_RESPONSES
from apps.events.schemas import Problem

from .models import Segment
from .services import contacts_by_keys, segment_add_contacts, segment_remove_contacts

router = Router(tags=["segments"])

# One call changes at most this many contacts: 1,000 keys is ~40 KB of JSON.
MAX_KEYS = 1000


def authenticate_server_key(request: HttpRequest):
    source = authenticate_write_key(request)
    if not source.is_server:
        raise HttpError(403, "this call needs a server (secret) key")
    return source


class ServerKey(KeyAuth):
    description = "A server source's secret write key as the user name (a browser's public key gets 403), with an empty password."


server_key = ServerKey(authenticate_server_key)


class MembersIn(Schema):
    add: list[str] = Field(default_factory=list, max_length=MAX_KEYS)
    remove: list[str] = Field(default_factory=list, max_length=MAX_KEYS)


class MembersOut(Schema):
    added: int
    removed: int
    unmatched: list[str]
    members: int


@router.post(
    "/segments/{segment_id}/members",
    auth=server_key,
    response={
        200: MembersOut,
        **ERROR_RESPONSES,
        404: Problem,  # no such segment
        409: Problem,  # a dynamic segment: its condition decides its members
    },
    summary="Add or remove contacts (by email or user id) in a static list",
)
def change_members(request: HttpRequest, segment_id: int, payload: MembersIn):
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        raise HttpError(404, f"no segment {segment_id}")
    if segment.is_dynamic:
        raise HttpError(
            409, "this segment is dynamic: its members follow its condition"
        )
    add = contacts_by_keys(payload.add)
    remove = contacts_by_keys(payload.remove)
    added = segment_add_contacts(segment=segment, contact_ids=add.values())
    removed = segment_remove_contacts(segment=segment, contact_ids=remove.values())
    unmatched = [
        k
        for k in [*payload.add, *payload.remove]
        if k.strip() and k.strip() not in add and k.strip() not in remove
    ]
    segment.refresh_from_db(fields=["member_count"])
    return {
        "added": added,
        "removed": removed,
        "unmatched": unmatched,
        "members": segment.member_count,
    }

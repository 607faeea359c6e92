"""A contact's topic subscriptions over the API (server keys only)."""

from django.http import HttpRequest
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import Field, StrictBool

from apps.contacts.consent import api_proof
from apps.contacts.identity import normalize_email
from apps.contacts.models import Contact, Identity
from apps.events.problems import ERROR_RESPONSES
from apps.events.schemas import Problem
from apps.segments.api import server_key

from .models import Topic
from .topics import TopicChoicesError, topic_set_many, topic_states

router = Router(tags=["topics"])

# One call sets at most this many topics: more than a site has.
MAX_TOPICS = 100
KEY_FIELDS = ("userId", "email", "anonymousId")


class ContactKeys(Schema):
    userId: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=254)
    anonymousId: str | None = Field(default=None, max_length=255)


class ConsentGiven(Schema):
    form: str | None = Field(
        default=None, max_length=500, description="the form's id or URL"
    )
    wording: str | None = Field(
        default=None,
        max_length=2000,
        description="what the person was shown and agreed to, word for word",
    )


class PageSeen(Schema):
    url: str | None = Field(default=None, max_length=500)


class ProofContext(Schema):
    """Where the person made the choice, as a Segment call's context says it:
    recorded with the change as proof of consent (docs/privacy.md)."""

    ip: str | None = Field(
        default=None, max_length=45, description="the person's IP address"
    )
    page: PageSeen | None = None
    consent: ConsentGiven | None = None


class SubscriptionsIn(ContactKeys):
    topics: dict[str, StrictBool] = Field(
        min_length=1,
        max_length=MAX_TOPICS,
        description="topic slug -> true (subscribe) or false (unsubscribe)",
    )
    context: ProofContext | None = None


class SubscriptionsOut(Schema):
    contact_id: int
    topics: dict[str, bool] = Field(
        description="every topic's slug -> whether the contact is subscribed "
        "(their choice, else the topic's default)"
    )
    changed: list[str] = Field(
        default_factory=list, description="the slugs this call changed"
    )


@router.get(
    "/topics/subscriptions",
    auth=server_key,
    response={200: SubscriptionsOut, **ERROR_RESPONSES, 404: Problem},
    summary="A contact's topic subscriptions (by userId, email or anonymousId)",
)
def get_subscriptions(request: HttpRequest, who: Query[ContactKeys]):
    contact = contact_named(who)
    return {"contact_id": contact.pk, "topics": _states(contact), "changed": []}


@router.post(
    "/topics/subscriptions",
    auth=server_key,
    response={200: SubscriptionsOut, **ERROR_RESPONSES, 404: Problem},
    summary="Subscribe a contact to topics or unsubscribe them, all or nothing",
)
def set_subscriptions(request: HttpRequest, payload: SubscriptionsIn):
    contact = contact_named(payload)
    try:
        changed = topic_set_many(
            contact=contact,
            choices=payload.topics,
            proof=api_proof(
                payload.context.model_dump(exclude_none=True)
                if payload.context
                else {},
                who=request.auth.name,
                server=True,
            ),
        )
    except TopicChoicesError as exc:
        raise HttpError(400, str(exc)) from exc
    return {"contact_id": contact.pk, "topics": _states(contact), "changed": changed}


def contact_named(keys: ContactKeys) -> Contact:
    """The one contact the keys name; 400 without a key or with keys naming
    different contacts, 404 if none is known."""
    given = {f: getattr(keys, f) for f in KEY_FIELDS if getattr(keys, f)}
    if not given:
        raise HttpError(400, "name the contact: userId, email or anonymousId")
    if any("\x00" in value for value in given.values()):
        raise HttpError(400, "a key contains a NUL character (\\u0000)")
    found: dict[str, int | None] = {}
    if "userId" in given:
        found["userId"] = _first(Contact.objects.filter(external_id=given["userId"]))
    if "email" in given:
        email = normalize_email(given["email"])
        found["email"] = _first(Contact.objects.filter(email__iexact=email))
    if "anonymousId" in given:
        found["anonymousId"] = (
            Identity.objects.filter(anonymous_id=given["anonymousId"])
            .values_list("contact_id", flat=True)
            .first()
        )
    ids = {pk for pk in found.values() if pk is not None}
    if len(ids) > 1:
        raise HttpError(400, f"{' and '.join(given)} name different contacts")
    if not ids:
        raise HttpError(404, f"no contact with that {' or '.join(given)}")
    return Contact.objects.get(pk=ids.pop())


def _first(contacts) -> int | None:
    return contacts.order_by("pk").values_list("pk", flat=True).first()


def _states(contact: Contact) -> dict[str, bool]:
    topics = list(Topic.objects.order_by("slug"))
    states = topic_states(contact, topics)
    return {t.slug: states[t.pk] for t in topics}

"""Traits and sightings: what a message says about its sender, and how traits land
on a contact."""

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models.expressions import RawSQL

from ..consent import ConsentProof, Source, consent_record, contact_consent_change
from ..models import ConsentStatus, Contact, consent_may_change
from ..suppression import address_follow_consent

# Segment trait names (and their snake_case spellings) that land on Contact fields.
TRAIT_FIELDS = {
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "phone": "phone",
    "timezone": "timezone",
    "locale": "locale",
}
# Traits only a server key may set: a public key must not opt anyone in or out.
CONSENT_TRAIT = "email_consent"
# {slug: true/false}: topic choices, applied by apps.campaigns from the stored
# identify event (its EVENTS_INGESTED hook, topic_traits.py), where a browser key
# may only unsubscribe; never an attribute.
TOPICS_TRAIT = "topics"

# Protected traits (issue 13, item 5): a browser key is public, so anyone can send
# them for anyone. They say where messages go (addresses), who is told about a
# person (owner), or what the person agreed to (consent, subscriptions): only a
# server key may set them. From a browser key they are kept in the event, not
# applied, and logged (refusals.py). Matched on the name folded to lower case
# without "_" or "-" (ownerEmail is owner_email): these names, and names starting
# with PROTECTED_PREFIXES or ending with PROTECTED_SUFFIXES (owner_id, work_email,
# mobile_phone, sms_consent, newsletter_subscribed...). The email itself is the
# resolver's: a browser may give a first email to a visitor it identifies only.
PROTECTED_TRAITS = frozenset(
    {
        "email",
        "phone",
        "emailconsent",
        "consent",
        "subscribed",
        "subscriptions",
        "subscriptionstatus",
        "topics",
        "externalid",
        "userid",
    }
)
PROTECTED_PREFIXES = ("owner", "unsubscri", "optin", "optout", "doubleoptin")
PROTECTED_SUFFIXES = ("email", "phone", "consent", "subscribed", "optin", "optout")


def is_protected_trait(name: str) -> bool:
    """Whether only a server key may set this trait (see PROTECTED_TRAITS)."""
    folded = name.lower().replace("_", "").replace("-", "")
    return (
        folded in PROTECTED_TRAITS
        or folded.startswith(PROTECTED_PREFIXES)
        or folded.endswith(PROTECTED_SUFFIXES)
    )


@dataclass
class Sighting:
    """What one incoming message says about who sent it."""

    anonymous_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    traits: dict[str, Any] | None = None
    # alias: the id the person was known by before ``user_id``
    previous_id: str | None = None
    timestamp: dt.datetime | None = None
    context_timezone: str | None = None
    context_locale: str | None = None
    # Where a consent trait came from (the key, the form, the IP): set by ingestion
    # for a message that carries one, recorded if the consent changes.
    consent_proof: ConsentProof | None = None

    # A message's context fills a contact's blank timezone or locale; it never
    # overwrites one (traits do that).
    def timezone_for(self, current: str | None) -> str | None:
        """The timezone to give a contact whose timezone is ``current``, if any."""
        if self.context_timezone and not current:
            return self.context_timezone[:64]
        return None

    def locale_for(self, current: str | None) -> str | None:
        """The locale to give a contact whose locale is ``current``, if any."""
        if self.context_locale and not current:
            return self.context_locale[:35]
        return None

    @property
    def anonymous_only(self) -> bool:
        """Names nobody but a visitor's anonymous id (a page view, a track)."""
        return not (self.user_id or self.email or self.traits or self.previous_id)


def normalize_email(email: str | None) -> str | None:
    email = (email or "").strip().lower()
    return email or None


@dataclass(frozen=True)
class TraitChanges:
    """What ``apply_traits`` did, as ``save_traits`` takes it: the names of changed
    fields other than attributes and the attributes set (key -> value); and the
    protected traits it refused (from a browser key), for the log."""

    changed: set[str]
    attributes_set: dict[str, Any]
    refused: list[str]


def apply_traits(
    contact: Contact, traits: dict[str, Any], *, trusted: bool
) -> TraitChanges:
    """Set traits on ``contact`` (unsaved): all of them from a server key, the
    ordinary ones only from a browser key (is_protected_trait)."""
    changed: set[str] = set()
    attributes = dict(contact.attributes or {})
    attributes_set: dict[str, Any] = {}
    refused: list[str] = []
    for key, value in traits.items():
        if key in ("email", TOPICS_TRAIT):
            continue  # identity (the resolver's), topic choices (see TOPICS_TRAIT)
        if not trusted and is_protected_trait(key):
            if _differs(contact, attributes, key, value):
                refused.append(key)
            continue
        if key == CONSENT_TRAIT:
            # A server key may tighten consent, or record the person's own
            # resubscribe; never lift a bounce or a complaint (staff do that, in
            # admin, with a reason).
            # A new contact's consent is recorded even when it is the default
            # (consent_of_new_contact).
            if (
                trusted
                and value in ConsentStatus.values
                and (contact.pk is None or contact.email_consent != value)
                and consent_may_change(contact.email_consent, value)
            ):
                contact.email_consent = value
                changed.add("email_consent")
            continue
        model_field = TRAIT_FIELDS.get(key)
        if model_field:
            text = "" if value is None else str(value)[:150]
            if getattr(contact, model_field) != text:
                setattr(contact, model_field, text)
                changed.add(model_field)
            continue
        if attributes.get(key, _MISSING) != value:
            attributes[key] = value
            attributes_set[key] = value
    if attributes_set:
        contact.attributes = attributes
    return TraitChanges(changed, attributes_set, refused)


_MISSING = object()


def _differs(contact: Contact, attributes: dict, key: str, value: Any) -> bool:
    """Whether a trait would change something: a browser repeating what the contact
    already has is not worth a log line."""
    if key == CONSENT_TRAIT:
        return contact.email_consent != value
    if model_field := TRAIT_FIELDS.get(key):
        return getattr(contact, model_field) != ("" if value is None else str(value))
    return attributes.get(key, _MISSING) != value


# The stored attributes with these keys set (jsonb ||: top-level keys, as
# dict.update) and those removed.
_MERGE_ATTRIBUTES = "(COALESCE(attributes, '{}'::jsonb) || %s::jsonb) - %s::text[]"


def save_traits(
    contact: Contact,
    *,
    fields: set[str],
    attributes: dict[str, Any],
    remove: Iterable[str] = (),
    consent_proof: ConsentProof | None = None,
) -> None:
    """Write trait changes of a stored contact: ``fields`` as they are on
    ``contact``, and of its attributes only the keys set (``attributes``) or
    removed here. A consent change is recorded with ``consent_proof`` (ingestion
    passes the call's; without one it is recorded as the system's).

    Attributes are merged into the stored ones by the database, never written whole
    from this copy: two requests updating one contact's traits at once (under
    different identity locks, or an admin's copy loaded a while ago) must not drop
    each other's keys. ``contact.attributes`` is left as the caller made it.
    """
    values: dict[str, Any] = {name: getattr(contact, name) for name in fields}
    consent = values.pop("email_consent", None)
    remove = sorted(set(remove))
    with transaction.atomic():
        if attributes or remove:
            values["attributes"] = _merged_attributes(contact.pk, attributes, remove)
        if values:
            Contact.objects.filter(pk=contact.pk).update(**values)
        if consent is not None:
            contact_consent_change(
                contact_id=contact.pk,
                status=consent,
                proof=consent_proof or ConsentProof(source=Source.SYSTEM),
            )
            consent_reaches_address_list(contact, consent)


def consent_of_new_contact(
    contact: Contact, proof: ConsentProof | None, *, default: str
) -> None:
    """A contact created with a consent trait: the consent it was given, recorded
    (from nothing, even when it is the ``default``: it was given, not assumed), and
    the address list in step, as for a stored contact, when it is not the default
    (a trait restating it moves no entry of the list, as it never did)."""
    consent_record(
        contact_id=contact.pk,
        previous="",
        value=contact.email_consent,
        proof=proof or ConsentProof(source=Source.SYSTEM),
    )
    if contact.email_consent != default:
        consent_reaches_address_list(contact, contact.email_consent)


def consent_reaches_address_list(contact: Contact, status: str) -> None:
    """The address list follows a consent a trusted trait set (a subscribe lifts
    only an earlier unsubscribe)."""
    address_follow_consent(
        email=contact.email, status=status, detail="server key trait"
    )


def _merged_attributes(
    contact_id: int, attributes: dict[str, Any], remove: list[str]
) -> Any:
    if connection.vendor == "postgresql":
        # In the UPDATE itself: a row another transaction is updating is waited
        # for, then merged into as that one left it.
        # (a fixed statement; the values are parameters)
        return RawSQL(_MERGE_ATTRIBUTES, [json.dumps(attributes), remove])  # noqa: S611
    # SQLite: its IMMEDIATE transactions serialise writers, so the row cannot
    # change between this read and the UPDATE in the same transaction.
    stored = (
        Contact.objects.filter(pk=contact_id)
        .values_list("attributes", flat=True)
        .first()
    )
    merged = {**(stored or {}), **attributes}
    for key in remove:
        merged.pop(key, None)
    return merged

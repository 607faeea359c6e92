"""Who sent this? Resolving anonymous ids, user ids and emails to contacts, in bulk.

A batch of a hundred events may name a handful of people. The resolver loads every
identity and contact the batch mentions in three queries, works out each message's
contact in memory (new contacts are unsaved placeholders until the end, so a visitor
who browses anonymously and then identifies within one batch costs no merge at all),
then writes new contacts, identities and trait changes in a few statements.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Q
from django.db.models.functions import Lower

from .models import ConsentStatus, Contact, Identity

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


def normalize_email(email: str | None) -> str | None:
    email = (email or "").strip().lower()
    return email or None


def apply_traits(
    contact: Contact, traits: dict[str, Any], *, trusted: bool
) -> set[str]:
    """Set traits on ``contact`` (unsaved); returns the names of changed fields."""
    changed: set[str] = set()
    attributes = dict(contact.attributes or {})
    for key, value in traits.items():
        if key == "email":
            continue  # identity, handled by the resolver
        if key == CONSENT_TRAIT:
            if (
                trusted
                and value in ConsentStatus.values
                and contact.email_consent != value
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
    if attributes != (contact.attributes or {}):
        contact.attributes = attributes
        changed.add("attributes")
    return changed


_MISSING = object()


# The advisory-lock class for identity keys ("id" in ASCII).
IDENTITY_LOCK_CLASS = 0x6964


def _lock_identities(keys: set[str]) -> None:
    """Serialise concurrent requests about the same person (PostgreSQL).

    Two batches creating the same new visitor at once would otherwise both insert
    their own contact and one would fail on the identity's unique index. Transaction-
    scoped locks on the keys' hashes, taken in one order, make the second wait and
    then see the first's rows. SQLite writers are serialised already.
    """
    if not keys or connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, h) FROM "
            "(SELECT DISTINCT hashtext(k) AS h FROM unnest(%s::text[]) AS k) hashes "
            "ORDER BY h",
            [IDENTITY_LOCK_CLASS, sorted(keys)],
        )


class _Person:
    """A contact as the resolver sees it: loaded, or a placeholder to be created."""

    __slots__ = ("changed", "contact", "merged_into")

    def __init__(self, contact: Contact) -> None:
        self.contact = contact
        self.merged_into: _Person | None = None
        self.changed: set[str] = set()

    def final(self) -> "_Person":
        person = self
        while person.merged_into is not None:
            person = person.merged_into
        return person

    @property
    def is_new(self) -> bool:
        return self.contact.pk is None

    @property
    def is_known(self) -> bool:
        return self.contact.is_known


@dataclass
class IdentityResolver:
    trusted: bool
    default_consent: str
    by_anonymous_id: dict[str, _Person] = field(default_factory=dict)
    by_user_id: dict[str, _Person] = field(default_factory=dict)
    by_email: dict[str, _Person] = field(default_factory=dict)
    people: dict[int, _Person] = field(default_factory=dict)
    new_people: list[_Person] = field(default_factory=list)
    identity_writes: dict[str, _Person] = field(default_factory=dict)
    existing_identities: set[str] = field(default_factory=set)

    def resolve(
        self,
        sightings: list[Sighting],
        *,
        merge: Callable[..., Any],
    ) -> list[int]:
        self._merge = merge
        self._load(sightings)
        resolved = [self._resolve_one(s) for s in sightings]
        self._write()
        return [person.final().contact.pk for person in resolved]

    # -- loading ----------------------------------------------------------------------

    def _load(self, sightings: list[Sighting]) -> None:
        anonymous_ids = {s.anonymous_id for s in sightings if s.anonymous_id}
        anonymous_ids |= {s.previous_id for s in sightings if s.previous_id}
        user_ids = {s.user_id for s in sightings if s.user_id}
        user_ids |= {s.previous_id for s in sightings if s.previous_id}
        emails = {s.email for s in sightings if s.email}
        _lock_identities(anonymous_ids | user_ids | emails)

        identity_contact = (
            dict(
                Identity.objects.filter(anonymous_id__in=anonymous_ids).values_list(
                    "anonymous_id", "contact_id"
                )
            )
            if anonymous_ids
            else {}
        )
        self.existing_identities = set(identity_contact)
        if identity_contact or user_ids or emails:
            # Lower(email) IN (...) uses the expression index of the unique constraint.
            contacts = Contact.objects.annotate(email_ci=Lower("email")).filter(
                Q(pk__in=set(identity_contact.values()))
                | Q(external_id__in=user_ids)
                | Q(email_ci__in=emails)
            )
            for contact in contacts:
                person = _Person(contact)
                self.people[contact.pk] = person
                if contact.external_id:
                    self.by_user_id[contact.external_id] = person
                if contact.email:
                    self.by_email[contact.email.lower()] = person
        for anonymous_id, contact_id in identity_contact.items():
            self.by_anonymous_id[anonymous_id] = self.people[contact_id]

    # -- deciding ---------------------------------------------------------------------

    def _lookup(self, index: dict[str, _Person], key: str | None) -> _Person | None:
        person = index.get(key) if key else None
        return person.final() if person else None

    def _resolve_one(self, s: Sighting) -> _Person:
        if s.previous_id:
            return self._resolve_alias(s)
        target = self._lookup(self.by_user_id, s.user_id)
        if target is None and s.email and (self.trusted or not s.user_id):
            by_email = self._lookup(self.by_email, s.email)
            # An email already owned by another user id names someone else.
            if by_email and not (s.user_id and by_email.contact.external_id):
                target = by_email
        anonymous = self._lookup(self.by_anonymous_id, s.anonymous_id)

        if target is None and anonymous is not None:
            other_user = (
                s.user_id
                and anonymous.contact.external_id
                and anonymous.contact.external_id != s.user_id
            )
            # A shared device: the cookie's contact is someone else; start a new one.
            target = self._new_person(s) if other_user else anonymous
        if target is None:
            target = self._new_person(s)
        if anonymous is not None and anonymous is not target:
            self._combine(source=anonymous, target=target, reason="identify")

        self._claim_ids(target, s.user_id, s.email)
        if s.anonymous_id:
            self._point(s.anonymous_id, target)
        self._apply(target, s)
        return target

    def _resolve_alias(self, s: Sighting) -> _Person:
        previous = self._lookup(self.by_anonymous_id, s.previous_id) or self._lookup(
            self.by_user_id, s.previous_id
        )
        target = self._lookup(self.by_user_id, s.user_id)
        if target is None:
            if previous is not None and not previous.contact.external_id:
                target = previous
            else:
                target = self._new_person(s)
        if previous is not None and previous is not target:
            self._combine(source=previous, target=target, reason="alias")
        self._claim_ids(target, s.user_id, None)
        if s.previous_id and s.previous_id not in self.by_user_id:
            self._point(s.previous_id, target)
        if s.anonymous_id:
            self._point(s.anonymous_id, target)
        return target

    def _new_person(self, s: Sighting) -> _Person:
        contact = Contact(
            email_consent=self.default_consent,
            first_seen_at=s.timestamp,
            attributes={},
        )
        person = _Person(contact)
        self.new_people.append(person)
        return person

    def _claim_ids(
        self, person: _Person, user_id: str | None, email: str | None
    ) -> None:
        contact = person.contact
        # A browser may name an anonymous visitor, not re-label a known person.
        may_name = self.trusted or person.is_new or not contact.email
        if (
            user_id
            and not contact.external_id
            and user_id not in self.by_user_id
            and may_name
        ):
            contact.external_id = user_id
            person.changed.add("external_id")
            self.by_user_id[user_id] = person
        if email and (contact.email or "").lower() != email:
            owner = self._lookup(self.by_email, email)
            if owner is not None and owner is not person:
                return  # the address belongs to another contact; never steal it
            # Setting a first email is identifying; changing one needs a server key.
            if not contact.email or self.trusted:
                if contact.email:
                    self.by_email.pop(contact.email.lower(), None)
                contact.email = email
                person.changed.add("email")
                self.by_email[email] = person

    def _point(self, anonymous_id: str, person: _Person) -> None:
        current = self._lookup(self.by_anonymous_id, anonymous_id)
        if current is not person:
            self.by_anonymous_id[anonymous_id] = person
            self.identity_writes[anonymous_id] = person

    def _apply(self, person: _Person, s: Sighting) -> None:
        contact = person.contact
        if s.traits:
            person.changed |= apply_traits(contact, s.traits, trusted=self.trusted)
        if s.context_timezone and not contact.timezone:
            contact.timezone = s.context_timezone[:64]
            person.changed.add("timezone")
        if s.context_locale and not contact.locale:
            contact.locale = s.context_locale[:35]
            person.changed.add("locale")

    def _combine(self, *, source: _Person, target: _Person, reason: str) -> None:
        """Fold ``source`` into ``target`` if that is allowed, else leave both."""
        if source.is_known and not self._may_merge_known(source, target):
            return
        if source.is_new:
            # Never written: fold the placeholder's traits in and forget it.
            for name in source.changed:
                if name == "attributes":
                    target.contact.attributes = {
                        **source.contact.attributes,
                        **(target.contact.attributes or {}),
                    }
                elif not getattr(target.contact, name):
                    setattr(target.contact, name, getattr(source.contact, name))
            target.changed |= source.changed
            self.new_people.remove(source)
        else:
            if target.is_new:
                self._save_new(target)
            self._flush_changes(target)
            self._flush_changes(source)
            self._merge(source=source.contact, target=target.contact, reason=reason)
            self.people.pop(source.contact.pk, None)
            target.contact.refresh_from_db()
        source.merged_into = target
        for index in (self.by_user_id, self.by_email, self.by_anonymous_id):
            for key, person in list(index.items()):
                if person is source:
                    index[key] = target
        for key, person in list(self.identity_writes.items()):
            if person is source:
                self.identity_writes[key] = target

    def _may_merge_known(self, source: _Person, target: _Person) -> bool:
        if not self.trusted:
            return False
        a, b = source.contact, target.contact
        conflicting_user = (
            a.external_id and b.external_id and a.external_id != b.external_id
        )
        conflicting_email = a.email and b.email and a.email.lower() != b.email.lower()
        return not (conflicting_user or conflicting_email)

    # -- writing ----------------------------------------------------------------------

    def _save_new(self, person: _Person) -> None:
        person.contact.save()
        self.new_people.remove(person)
        self.people[person.contact.pk] = person
        person.changed.clear()

    def _flush_changes(self, person: _Person) -> None:
        if person.changed and not person.is_new:
            person.contact.save(update_fields=sorted(person.changed))
            person.changed.clear()

    def _write(self) -> None:
        if self.new_people:
            Contact.objects.bulk_create([p.contact for p in self.new_people])
            for person in self.new_people:
                person.changed.clear()
                self.people[person.contact.pk] = person
            self.new_people.clear()
        for person in self.people.values():
            if person.merged_into is None:
                self._flush_changes(person)
        creates = [
            Identity(anonymous_id=anonymous_id, contact_id=person.final().contact.pk)
            for anonymous_id, person in self.identity_writes.items()
            if anonymous_id not in self.existing_identities
        ]
        if creates:
            Identity.objects.bulk_create(creates)
        for anonymous_id, person in self.identity_writes.items():
            if anonymous_id in self.existing_identities:
                Identity.objects.filter(anonymous_id=anonymous_id).update(
                    contact_id=person.final().contact.pk
                )

"""Who sent this? Resolving anonymous ids, user ids and emails to contacts, in bulk.

A batch of a hundred events may name a handful of people. The resolver loads every
identity and contact the call mentions in one query, works out each message's contact
in memory (new contacts are unsaved placeholders until the end, so a visitor who
browses anonymously and then identifies within one batch costs no merge at all), then
writes new contacts, identities and trait changes in a few statements.

The common call (people seen before, nothing about them changes) writes nothing and
takes no lock: one query (a call naming nobody but visitors reads only their contact
ids, timezones and locales, see ``lookup_identities``). Only a call that must write
locks its keys, reads them again and, if another request changed them meanwhile,
decides again (see ``resolve_identities``).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from apps.core.db import insert_rows

from ..models import Contact, Identity
from .refusals import Refusal, email_refusal
from .rows import Keys, contacts_from_rows, load_rows, load_visitors, lock_identities
from .traits import (
    CONSENT_TRAIT,
    Sighting,
    apply_traits,
    consent_of_new_contact,
    save_traits,
)


class _WriteNeeded(Exception):
    """A dry pass reached a merge: lock, look again and decide for real."""


class _Person:
    """A contact as the resolver sees it: loaded, or a placeholder to be created."""

    __slots__ = ("attributes_set", "changed", "consent_proof", "contact", "merged_into")

    def __init__(self, contact: Contact) -> None:
        self.contact = contact
        self.merged_into: _Person | None = None
        # What to write of a stored contact (see save_traits): changed fields other
        # than attributes, and the attribute keys set.
        self.changed: set[str] = set()
        self.attributes_set: dict[str, Any] = {}
        # Where the consent in ``changed`` came from (the sighting that set it).
        self.consent_proof = None

    @property
    def has_changes(self) -> bool:
        return bool(self.changed or self.attributes_set)

    def forget_changes(self) -> None:
        self.changed.clear()
        self.attributes_set.clear()
        self.consent_proof = None

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


@dataclass(frozen=True)
class Resolution:
    contact_ids: list[int]
    # False when the call changed nothing: every key was known and nothing about the
    # people it names is new. Ingestion relies on it to skip work for duplicates.
    wrote: bool
    # What a browser key asked for and did not get (contacts_resolve logs them).
    refusals: tuple[Refusal, ...] = ()


@dataclass(frozen=True)
class Lookup:
    """A first pass over a call's sightings: read without a lock, decided without
    writing. Needs no transaction."""

    keys: Keys
    rows: set[tuple]
    # None when the pass stopped at a merge of two stored contacts, or was settled
    # by known visitors (then ``known`` is set).
    resolver: "IdentityResolver | None"
    # Set instead of rows and resolver when known visitors settled it (_visitors).
    known: list[int] | None = None

    @property
    def contact_ids(self) -> list[int] | None:
        """Everyone's contact, if that takes no write at all; else None."""
        if self.known is not None:
            return self.known
        if self.resolver is None or self.resolver.has_writes():
            return None
        return self.resolver.final_ids()


def lookup_identities(
    sightings: list[Sighting],
    *,
    trusted: bool,
    default_consent: str,
    merge: Callable[..., Any],
) -> Lookup:
    keys = Keys.of(sightings)
    rows: set[tuple] | None = None
    if connection.vendor == "postgresql" and all(s.anonymous_only for s in sightings):
        visitors = load_visitors(keys.anonymous_ids)
        known = _visitors(sightings, visitors)
        if known is not None:
            return Lookup(keys, set(), None, known)
        if not visitors:
            rows = set()  # nobody here is known: load_rows would find nothing either
        # Else some are new, or a blank is to be filled: the resolver decides from
        # the whole rows, one more read (a call mixing new and known visitors).
    if rows is None:
        rows = load_rows(keys)
    resolver: IdentityResolver | None = IdentityResolver(
        trusted=trusted, default_consent=default_consent, merge=merge
    )
    try:
        resolver.decide(sightings, rows, dry=True)
    except _WriteNeeded:
        resolver = None
    return Lookup(keys, rows, resolver)


def _visitors(
    sightings: list[Sighting], visitors: dict[str, tuple[int, str, str]]
) -> list[int] | None:
    """The contacts of sightings that name nobody but visitors (page views, tracks),
    from load_visitors: when every visitor is known and no contact's timezone or
    locale is to be filled in from the call's context, as the resolver would
    decide, with nothing to write. Else None: the resolver decides."""
    contact_ids = []
    for s in sightings:
        found = visitors.get(s.anonymous_id)  # type: ignore[arg-type]
        if found is None:
            return None
        contact_id, timezone, locale = found
        if s.timezone_for(timezone) or s.locale_for(locale):
            return None
        contact_ids.append(contact_id)
    return contact_ids


def resolve_identities(
    sightings: list[Sighting],
    *,
    trusted: bool,
    default_consent: str,
    merge: Callable[..., Any],
    lookup: Lookup | None = None,
) -> Resolution:
    """The contact behind each sighting, creating, updating and merging as needed.
    Call inside a transaction.

    On PostgreSQL the first pass (``lookup``, made here if not given) is optimistic.
    If it needs no write, that is the answer. Otherwise the call locks its keys (two
    requests creating the same new visitor must not both insert it), reads them
    again and, if another request changed them since the first pass, decides again
    from the fresh rows before writing.
    """

    def resolver() -> IdentityResolver:
        return IdentityResolver(
            trusted=trusted, default_consent=default_consent, merge=merge
        )

    if connection.vendor != "postgresql":  # SQLite serialises writers already
        return resolver().run(sightings, load_rows(Keys.of(sightings)))
    if lookup is None:
        lookup = lookup_identities(
            sightings, trusted=trusted, default_consent=default_consent, merge=merge
        )
    if lookup.contact_ids is not None:
        refusals = lookup.resolver.refusals if lookup.resolver is not None else []
        return Resolution(lookup.contact_ids, wrote=False, refusals=tuple(refusals))
    lock_identities(lookup.keys.all)
    fresh = load_rows(lookup.keys)
    if lookup.resolver is not None and fresh == lookup.rows:
        lookup.resolver.write()
        return Resolution(
            lookup.resolver.final_ids(),
            wrote=True,
            refusals=tuple(lookup.resolver.refusals),
        )
    return resolver().run(sightings, fresh)


@dataclass
class IdentityResolver:
    trusted: bool
    default_consent: str
    merge: Callable[..., Any]
    by_anonymous_id: dict[str, _Person] = field(default_factory=dict)
    by_user_id: dict[str, _Person] = field(default_factory=dict)
    by_email: dict[str, _Person] = field(default_factory=dict)
    people: dict[int, _Person] = field(default_factory=dict)
    new_people: list[_Person] = field(default_factory=list)
    identity_writes: dict[str, _Person] = field(default_factory=dict)
    existing_identities: set[str] = field(default_factory=set)
    resolved: list[_Person] = field(default_factory=list)
    # What a browser key asked for and did not get, as decided (see refusals.py).
    refusals: list[Refusal] = field(default_factory=list)
    # A dry pass decides without writing; it stops (_WriteNeeded) at a merge.
    dry: bool = False

    # Set when a merge of two stored contacts ran (it writes at once).
    merged: bool = False

    def run(self, sightings: list[Sighting], rows: set[tuple]) -> Resolution:
        self.decide(sightings, rows, dry=False)
        wrote = self.merged or self.has_writes()
        self.write()
        return Resolution(self.final_ids(), wrote=wrote, refusals=tuple(self.refusals))

    def decide(self, sightings: list[Sighting], rows: set[tuple], *, dry: bool) -> None:
        """Work out each sighting's person (``resolved``, in order)."""
        self.dry = dry
        self.refusals = []
        self._load(rows)
        if not all(s.anonymous_only for s in sightings):
            self.resolved = [self._resolve_one(s) for s in sightings]
            return
        # Nothing in such a call can point a visitor's id at another contact, so a
        # sighting like an earlier one (same visitor, same timezone and locale)
        # changes nothing more: a batch of page views by ten visitors is decided
        # ten times, not a hundred.
        done: dict[tuple, _Person] = {}
        self.resolved = []
        for s in sightings:
            key = (s.anonymous_id, s.context_timezone, s.context_locale)
            person = done.get(key)
            if person is None:
                person = done[key] = self._resolve_one(s)
            self.resolved.append(person)

    def final_ids(self) -> list[int]:
        return [person.final().contact.pk for person in self.resolved]

    def has_writes(self) -> bool:
        return bool(
            self.new_people
            or self.identity_writes
            or any(person.has_changes for person in self.people.values())
        )

    # -- loading ----------------------------------------------------------------------

    def _load(self, rows: set[tuple]) -> None:
        for contact_id, contact in contacts_from_rows(rows).items():
            person = self.people[contact_id] = _Person(contact)
            if contact.external_id:
                self.by_user_id[contact.external_id] = person
            if contact.email:
                self.by_email[contact.email.lower()] = person
        for anonymous_id, contact_id, *_ in rows:
            if anonymous_id is not None:
                self.by_anonymous_id[anonymous_id] = self.people[contact_id]
                self.existing_identities.add(anonymous_id)

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
            refused = email_refusal(
                trusted=self.trusted,
                is_new=person.is_new,
                contact=contact,
                changed=person.changed,
            )
            if refused:
                self.refusals.append(Refusal(contact, "email", refused))
                return
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
            changes = apply_traits(contact, s.traits, trusted=self.trusted)
            person.changed |= changes.changed
            person.attributes_set.update(changes.attributes_set)
            if CONSENT_TRAIT in changes.changed:
                person.consent_proof = s.consent_proof
            self.refusals.extend(
                Refusal(contact, name, "a protected trait needs a server key")
                for name in changes.refused
            )
        if timezone := s.timezone_for(contact.timezone):
            contact.timezone = timezone
            person.changed.add("timezone")
        if locale := s.locale_for(contact.locale):
            contact.locale = locale
            person.changed.add("locale")

    def _combine(self, *, source: _Person, target: _Person, reason: str) -> None:
        """Fold ``source`` into ``target`` if that is allowed, else leave both."""
        if source.is_known and not self._may_merge_known(source, target):
            return
        if source.is_new:
            # Never written: fold the placeholder's traits in and forget it.
            for name in source.changed:
                if not getattr(target.contact, name):
                    setattr(target.contact, name, getattr(source.contact, name))
            target.changed |= source.changed
            target.consent_proof = target.consent_proof or source.consent_proof
            # Its attributes (all set by this call) where the target has none.
            stored = target.contact.attributes or {}
            added = {k: v for k, v in source.attributes_set.items() if k not in stored}
            target.contact.attributes = {**stored, **added}
            target.attributes_set.update(added)
            self.new_people.remove(source)
        else:
            if self.dry:
                raise _WriteNeeded
            if target.is_new:
                self._save_new(target)
            self._flush_changes(target)
            self._flush_changes(source)
            self.merge(source=source.contact, target=target.contact, reason=reason)
            self.merged = True
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
        self._consent_of_new(person)
        self.new_people.remove(person)
        self.people[person.contact.pk] = person
        person.forget_changes()

    def _consent_of_new(self, person: _Person) -> None:
        if CONSENT_TRAIT in person.changed:
            consent_of_new_contact(
                person.contact, person.consent_proof, default=self.default_consent
            )

    def _flush_changes(self, person: _Person) -> None:
        if person.has_changes and not person.is_new:
            save_traits(
                person.contact,
                fields=person.changed,
                attributes=person.attributes_set,
                consent_proof=person.consent_proof,
            )
            person.forget_changes()

    def write(self) -> None:
        if self.new_people:
            insert_rows(Contact, [p.contact for p in self.new_people])
            for person in self.new_people:
                self._consent_of_new(person)
                person.forget_changes()
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
            insert_rows(Identity, creates)
        for anonymous_id, person in self.identity_writes.items():
            if anonymous_id in self.existing_identities:
                Identity.objects.filter(anonymous_id=anonymous_id).update(
                    contact_id=person.final().contact.pk
                )
